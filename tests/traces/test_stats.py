"""Run statistics: the report's counts and categories, the bootstrap, McNemar and the paired comparison."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import insert

from traces.models import episodes
from traces.queries import load_episode
from traces.stats import (
    bootstrap_ci,
    compare_runs,
    format_comparison,
    format_report,
    mcnemar_exact,
    report_dict,
    run_report,
)

from .helpers import populate_two_runs


def episode_row(run_id: int, key: str, *, verdict: str | None = "correct", status: str = "answered", **values):
    now = time.time()
    correct = {"correct": True, "incorrect": False}.get(verdict) if verdict else None
    return {
        "uid": uuid.uuid4().hex,
        "run_id": run_id,
        "question": f"question {key}?",
        "gold_answers": ["gold"],
        "config": {},
        "status": status,
        "reason": "",
        "final_answer": values.pop("final_answer", f"answer {key}"),
        "verdict": verdict,
        "correct": correct,
        "judge": values.pop("judge", "rule" if verdict else None),
        "item_key": key,
        "started_at": now,
        "updated_at": now,
        "extra": {},
        "search_text": "",
        # every row names every column: one executemany needs the same keys in each
        "dataset": None,
        "n_turns": 0,
        "n_tool_calls": 0,
        "n_text": 0,
        "n_whole": 0,
        "n_crop": 0,
        "self_corrected": False,
        "response_tokens": 0,
        "elapsed_s": None,
        **values,
    }


def add(store, rows) -> None:
    with store.write() as conn:
        conn.execute(insert(episodes), rows)


def test_report_counts_accuracy_sources_and_tool_usage(store):
    run = store.create_run("eval a", "eval", model="m", config={"judge": {"kind": "rule", "prompt_version": "rule-v1"}})
    add(
        store,
        [
            # answered directly, right
            episode_row(run, "k1", dataset="infoseek", n_turns=1, response_tokens=10, elapsed_s=1.0),
            # one text search, wrong
            episode_row(run, "k2", verdict="incorrect", dataset="infoseek", n_text=1, n_tool_calls=1, n_turns=2,
                        response_tokens=20, elapsed_s=2.0),
            # crop then two text searches with a new query (self-correction), right
            episode_row(run, "k3", dataset="okvqa", n_crop=1, n_text=2, n_tool_calls=3, self_corrected=True,
                        n_turns=4, response_tokens=40, elapsed_s=4.0),
            # whole image only; the judge could not decide
            episode_row(run, "k4", verdict="unknown", dataset="okvqa", n_whole=1, n_tool_calls=1, n_turns=2,
                        response_tokens=30, elapsed_s=3.0),
            # budget exhausted without an answer, judged incorrect
            episode_row(run, "k5", verdict="incorrect", status="budget_exhausted", final_answer=None,
                        dataset="okvqa", n_text=3, n_tool_calls=3, n_turns=5, response_tokens=100, elapsed_s=10.0),
            # the model endpoint failed: not completed, not judged
            episode_row(run, "k6", verdict=None, status="error", dataset="okvqa", elapsed_s=0.5),
        ],
    )  # fmt: skip
    r = run_report(store, run)
    assert (r.n, r.completed, r.judged, r.correct, r.unknown, r.unjudged, r.errors) == (6, 5, 4, 2, 1, 0, 1)
    assert r.accuracy == 0.5
    assert r.status_counts == {"answered": 4, "budget_exhausted": 1, "error": 1}
    assert r.by_source["infoseek"].accuracy == 0.5 and r.by_source["infoseek"].n == 2
    okvqa = r.by_source["okvqa"]
    assert (okvqa.n, okvqa.judged, okvqa.correct, okvqa.unknown) == (4, 2, 1, 1)
    assert r.tool_usage_counts == {
        "answered_directly": 1,
        "text_search_only": 2,
        "whole_image_search": 1,
        "crop_search": 1,
        "image_and_text_search": 1,
        "several_text_searches": 2,
        "self_correction": 1,
    }
    assert r.tool_usage["text_search_only"] == pytest.approx(2 / 5)
    assert r.any_tool_share == pytest.approx(4 / 5)
    assert r.mean_turns == pytest.approx(14 / 5) and r.mean_tool_calls == pytest.approx(8 / 5)
    assert r.mean_response_tokens == pytest.approx(200 / 5) and r.mean_latency_s == pytest.approx(20 / 5)
    assert (r.latency_p50_s, r.latency_p95_s) == (3.0, 10.0)  # nearest rank over 1, 2, 3, 4, 10
    assert r.judge == {"kind": "rule", "prompt_version": "rule-v1", "names": {"rule": 5}}
    low, high = r.ci95
    assert 0.0 <= low < 0.5 < high <= 1.0
    data = report_dict(r)
    assert data["accuracy"] == 0.5 and data["ci95"] == [low, high] and data["n"] == 6
    assert set(data["tool_usage"]) == set(r.tool_usage)
    table = format_report(r)
    assert "50.0%" in table and "crop search" in table and "rule (rule-v1)" in table


def test_a_report_over_recorded_episodes_counts_what_the_recorder_judges_and_annotators_wrote(store):
    populate_two_runs(store)
    run_a = load_episode(store, "direct").summary.run_id
    r = run_report(store, run_a)
    assert (r.n, r.completed, r.status_counts) == (5, 5, {"answered": 5})
    assert (r.judged, r.correct, r.accuracy) == (2, 1, 0.5)  # text1 right, text3 wrong (populate_two_runs)
    assert (r.human_judged, r.human_accuracy) == (1, 1.0)  # "direct", annotated correct
    assert r.any_tool_share == pytest.approx(4 / 5)
    assert r.tool_usage_counts["answered_directly"] == 1 and r.tool_usage_counts["text_search_only"] == 2
    assert r.tool_usage_counts["whole_image_search"] == 1 and r.tool_usage_counts["crop_search"] == 1
    assert r.tool_usage_counts["self_correction"] == 1  # only text3 refines an earlier text query
    assert r.latency_p95_s == pytest.approx(5.0)  # text3's 5 s, nearest rank over five episodes
    running = run_report(store, load_episode(store, "running").summary.run_id)
    assert (running.n, running.completed, running.status_counts) == (1, 0, {"running": 1})


def test_report_of_an_empty_run_has_no_accuracy(store):
    run = store.create_run("empty", "eval")
    r = run_report(store, run)
    assert (r.n, r.judged, r.accuracy, r.ci95, r.mean_latency_s, r.latency_p50_s) == (0, 0, None, None, None, None)
    assert "accuracy     -" in format_report(r)


def test_imported_correctness_without_a_verdict_counts_as_judged(store):
    run = store.create_run("imported", "import")
    row = episode_row(run, "k1", verdict=None)
    row["correct"] = True
    add(store, [row])
    r = run_report(store, run)
    assert (r.judged, r.correct, r.unjudged) == (1, 1, 0)


def test_bootstrap_interval_is_repeatable_and_brackets_the_estimate():
    assert bootstrap_ci(0, 0) is None
    ci = bootstrap_ci(60, 100)
    assert ci == bootstrap_ci(60, 100)
    assert 0.49 < ci[0] < 0.6 < ci[1] < 0.71  # about ±1.96 * sqrt(.24/100) = ±0.096
    assert bootstrap_ci(10, 10) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),
        (0, 5, 2 / 32),  # 2 * C(5,0) / 2^5
        (1, 4, 2 * (1 + 5) / 32),  # 2 * (C(5,0) + C(5,1)) / 2^5 = 0.375
        (8, 2, 2 * (1 + 10 + 45) / 1024),  # 0.109375
        (3, 3, 1.0),  # the doubled tail passes 1
        (0, 10, 2 / 1024),
    ],
)
def test_mcnemar_exact_matches_hand_computed_values(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p)
    assert mcnemar_exact(c, b) == pytest.approx(p)


def test_compare_runs_pairs_by_item_key(store):
    a = store.create_run("A", "eval")
    b = store.create_run("B", "eval")
    add(
        store,
        [
            episode_row(a, "k1"), episode_row(b, "k1"),  # both right
            episode_row(a, "k2", verdict="incorrect"), episode_row(b, "k2"),  # B gains
            episode_row(a, "k3", verdict="incorrect"), episode_row(b, "k3"),  # B gains
            episode_row(a, "k4"), episode_row(b, "k4", verdict="incorrect"),  # B loses
            episode_row(a, "k5", verdict="incorrect"), episode_row(b, "k5", verdict="incorrect"),
            episode_row(a, "k6", verdict="unknown"), episode_row(b, "k6"),  # shared, not paired
            episode_row(a, "k7"),  # A only
            episode_row(b, "k8"), episode_row(b, "k9"),  # B only
            episode_row(a, "k10", verdict=None, status="error"), episode_row(b, "k10"),  # A's attempt failed
        ],
    )  # fmt: skip
    c = compare_runs(store, a, b)
    assert (c.shared, c.only_a, c.only_b, c.paired) == (6, 1, 3, 5)
    assert (c.both_correct, c.both_incorrect, c.a_only_correct, c.b_only_correct) == (1, 1, 1, 2)
    assert c.accuracy_a == pytest.approx(2 / 5) and c.accuracy_b == pytest.approx(3 / 5)
    assert c.difference == pytest.approx(1 / 5)
    assert c.p_value == pytest.approx(1.0)  # b=1, c=2: 2 * (1 + 3) / 8 = 1
    assert c.flips_total == 3
    assert [(f.item_key, f.correct_b) for f in c.flips] == [("k2", True), ("k3", True), ("k4", False)]
    assert c.flips[0].question == "question k2?" and c.flips[0].answer_a == "answer k2"
    text = format_comparison(c)
    assert "B - A +20.0 points" in text and "different questions" in text
    assert len(compare_runs(store, a, b, max_flips=1).flips) == 1


def test_comparing_two_runs_of_ten_thousand_episodes_takes_under_a_second(sqlite_store):
    store = sqlite_store
    a = store.create_run("A", "eval")
    b = store.create_run("B", "eval")
    rows = []
    for i in range(10_000):
        for run, flip in ((a, 0), (b, 1)):
            rows.append(
                episode_row(
                    run,
                    f"k{i}",
                    verdict="correct" if (i + flip * (i % 7 == 0)) % 3 else "incorrect",
                    dataset=f"source{i % 6}",
                    n_text=i % 3,
                    n_crop=i % 5 == 0,
                    n_tool_calls=i % 3 + (i % 5 == 0),
                    elapsed_s=float(i % 100),
                )
            )
    add(store, rows)
    start = time.perf_counter()
    reports = [run_report(store, a), run_report(store, b)]
    comparison = compare_runs(store, a, b, max_flips=200)
    elapsed = time.perf_counter() - start
    assert reports[0].n == reports[1].n == 10_000 and comparison.shared == 10_000
    assert elapsed < 1.0, f"two reports and a comparison took {elapsed:.2f} s"


def test_answered_directly_needs_an_answer(store):
    run = store.create_run("direct", "eval")
    add(store, [episode_row(run, "k1"), episode_row(run, "k2", verdict="incorrect", status="format_error")])
    r = run_report(store, run)
    assert r.tool_usage_counts["answered_directly"] == 1 and r.tool_usage["answered_directly"] == 0.5


def test_a_rollout_runs_steps_are_reported_apart(store):
    run = store.create_run("grpo rollouts", "rollout")
    add(
        store,
        [
            episode_row(run, "k1", verdict="incorrect", train_step=0, n_text=0, elapsed_s=1.0),
            episode_row(run, "k1", verdict="incorrect", train_step=1, n_text=2, n_tool_calls=2, elapsed_s=2.0),
            episode_row(run, "k1", train_step=8, n_crop=1, n_text=1, n_tool_calls=2, elapsed_s=3.0),
            episode_row(run, "k2", train_step=9, n_crop=1, n_text=3, n_tool_calls=4, elapsed_s=4.0),
        ],
    )
    early, late, whole = (
        run_report(store, run, steps=(0, 1)),
        run_report(store, run, steps=(8, 9)),
        run_report(store, run),
    )
    assert (early.n, early.accuracy, early.steps) == (2, 0.0, (0, 1))
    assert (late.n, late.accuracy, late.tool_usage["crop_search"]) == (2, 1.0, 1.0)
    assert early.mean_text_searches == 1.0 and late.mean_text_searches == 2.0 and whole.mean_text_searches == 1.5
    assert (early.latency_p50_s, late.latency_p95_s) == (1.0, 4.0)
    assert whole.n == 4 and whole.steps is None and report_dict(late)["steps"] == [8, 9]


def test_paired_questions_lists_every_shared_question_with_both_verdicts(store):
    from traces.stats import paired_questions

    a, b = store.create_run("A", "eval"), store.create_run("B", "eval")
    add(
        store,
        [
            episode_row(a, "k1", dataset="infoseek"), episode_row(b, "k1", verdict="incorrect"),
            episode_row(a, "k2"), episode_row(b, "k2"),
            episode_row(a, "k3", verdict="unknown"), episode_row(b, "k3"),
            episode_row(a, "k4"),  # A only
            episode_row(a, "k5", verdict=None, status="error"), episode_row(b, "k5"),  # A's attempt failed
        ],
    )  # fmt: skip
    rows = paired_questions(store, a, b)
    assert [(r.item_key, r.correct_a, r.correct_b, r.flipped) for r in rows] == [
        ("k1", True, False, True),
        ("k2", True, True, False),
        ("k3", None, True, False),
    ]
    assert rows[0].data_source == "infoseek" and rows[0].answer_b == "answer k1"
    assert len(rows) == compare_runs(store, a, b).shared


def test_train_step_ranges_are_per_rollout_run(store):
    from traces.stats import train_step_ranges

    rollout, evaluation = store.create_run("rollouts", "rollout"), store.create_run("eval", "eval")
    add(
        store,
        [episode_row(rollout, "k", train_step=s) for s in (3, 0, 7)] + [episode_row(evaluation, "k", train_step=None)],
    )
    assert train_step_ranges(store, [rollout, evaluation]) == {rollout: (0, 7)}
    assert train_step_ranges(store, []) == {}
