"""The Compare tab's logic without a server: choices, defaults, pairing, tables, notes and the CSV, over eval runs
recorded by the real eval harness."""

from __future__ import annotations

import csv
import io

import pytest

from traces.queries import list_runs
from traces.store import open_store
from ui.compare_view import (
    CSV_COLUMNS,
    Comparison,
    RunSlice,
    default_selection,
    flip_episodes,
    keep_selection,
    list_choices,
    load_comparison,
    pair_markdown,
    parse_choice,
    per_question_csv,
    pick_pair,
    render_comparison,
    run_choices,
    step_slices,
    summary_notes,
)


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "traces.db") as s:
        yield s


@pytest.fixture
def two_runs(store):
    from tests.ui.eval_fixtures import record_eval_run

    a = record_eval_run(store, "eval direct", "direct", 8)
    b = record_eval_run(store, "eval searcher", "searcher", 8)
    return a, b


def test_choices_parse_back_to_runs_and_rollout_slices():
    assert parse_choice("12 · eval x (eval, 500 episodes)") == RunSlice(12)
    assert parse_choice("9 · grpo job 3 rollouts · steps 0-24") == RunSlice(9, (0, 24))
    assert parse_choice("9 steps 7-3") == RunSlice(9, (3, 7))  # typed by hand, reversed
    with pytest.raises(ValueError, match="pick one from the list"):
        parse_choice("latest")


def test_step_slices_cover_the_steps_without_overlap():
    assert step_slices(0, 99) == [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert step_slices(5, 7) == [(5, 5), (6, 6), (7, 7)]
    assert step_slices(4, 4) == []


def test_default_is_the_two_most_recent_eval_runs_older_first(store, two_runs):
    a, b = two_runs
    newer = store.create_run("a demo run", "demo")
    runs = list_runs(store)
    choices = run_choices(runs, {})
    assert parse_choice(choices[0]).run_id == newer  # newest first
    assert [parse_choice(c).run_id for c in default_selection(runs, choices)] == [a, b]
    assert [parse_choice(c).run_id for c in list_choices(store)[1]] == [a, b]


def test_rollout_runs_offer_slices_of_their_steps(store):
    rollout = store.create_run("grpo rollouts", "rollout")
    runs = list_runs(store)
    choices = run_choices(runs, {rollout: (0, 7)})
    assert choices[0].startswith(f"{rollout} · grpo rollouts (rollout")
    assert choices[1:] == [
        f"{rollout} · grpo rollouts · steps {lo}-{hi}" for lo, hi in ((0, 1), (2, 3), (4, 5), (6, 7))
    ]


def test_a_reloaded_list_keeps_the_users_picks(store, two_runs):
    a, b = two_runs
    choices, default = list_choices(store)
    old_label = f"{b} · eval searcher (eval, 3 episodes)"  # the count changed since
    kept = keep_selection([old_label], choices, default)
    assert [parse_choice(c).run_id for c in kept] == [b] and kept[0] in choices
    assert keep_selection([], choices, default) == default
    assert keep_selection(["999 · gone"], choices, default) == default


def test_comparison_pairs_the_runs_and_lists_flips_both_ways(store, two_runs):
    a, b = two_runs
    comparison = load_comparison(store, [RunSlice(a), RunSlice(b)], pick_pair([RunSlice(a), RunSlice(b)], None, None))
    pair = comparison.pair
    # direct: right on 0, 2, 4, 6; searcher: right on 0, 3, 6
    assert (pair.shared, pair.paired, pair.accuracy_a, pair.accuracy_b) == (8, 8, 0.5, 3 / 8)
    assert (pair.a_only_correct, pair.b_only_correct, pair.flips_total) == (2, 1, 3)
    view = render_comparison(comparison)
    assert [row[0] for row in view.flips] == ["B gains", "B loses", "B loses"]
    assert "number 3" in view.flips[0][1] and view.flips[0][3] == "Gustave Eiffel"
    assert "B − A **-12.5 points**" in view.pair and "McNemar p = **1**" in view.pair
    assert flip_episodes(comparison, 0) == (pair.flips[0].episode_a, pair.flips[0].episode_b)
    assert flip_episodes(comparison, 3) is None
    rows = {row[0].split(" ", 1)[0]: row for row in view.summary}
    assert rows[f"#{b}"][8] == "100.0%" and rows[f"#{a}"][8] == "0.0%"  # crop rate
    assert rows[f"#{b}"][9] == "1.00" and rows[f"#{a}"][5].startswith("50.0% [")


def test_runs_over_different_questions_compare_only_the_shared_ones(store):
    from tests.ui.eval_fixtures import record_eval_run

    a = record_eval_run(store, "first half", "direct", 6)
    b = record_eval_run(store, "second half", "searcher", 6, start=3)
    comparison = load_comparison(store, [RunSlice(a), RunSlice(b)], (RunSlice(a), RunSlice(b)))
    assert (comparison.pair.shared, comparison.pair.only_a, comparison.pair.only_b) == (3, 3, 3)
    text = pair_markdown(comparison)
    assert "**3 shared** (A only 3, B only 3); only the shared ones are compared" in text


def test_runs_without_verdicts_are_said_plainly(store):
    demo = store.create_run("demo", "demo")
    empty = store.create_run("never ran", "eval")
    from tests.traces.helpers import synthetic_episode
    from traces.recorder import Recorder

    recorder = Recorder(store, run_kind="demo", run_id=demo)
    for event in synthetic_episode():
        recorder(event)
    recorder.close()
    comparison = load_comparison(store, [RunSlice(demo), RunSlice(empty)], (RunSlice(demo), RunSlice(empty)))
    notes = summary_notes(comparison.reports)
    assert "has no judged episodes, so it has no accuracy (1 completed" in notes and "has no episodes" in notes
    assert "share no completed question" in pair_markdown(comparison)
    assert "No judged episodes" in render_comparison(comparison).accuracy.layout.annotations[0].text


def test_unjudged_eval_runs_are_told_how_to_judge_them(store, two_runs):
    from sqlalchemy import update

    from traces.models import episodes

    a, b = two_runs
    with store.write() as conn:
        conn.execute(update(episodes).where(episodes.c.run_id == a).values(verdict=None, correct=None))
    comparison = load_comparison(store, [RunSlice(a), RunSlice(b)], (RunSlice(a), RunSlice(b)))
    assert "--run-name eval direct --rejudge --judge rule" in summary_notes(comparison.reports).replace("\\", "")
    assert "No shared question was judged in both runs" in pair_markdown(comparison)


def test_pairs_that_cannot_be_paired_say_why(store, two_runs):
    a, b = two_runs
    same = load_comparison(store, [RunSlice(a)], (RunSlice(a), RunSlice(a)))
    assert same.pair is None and "same run" in same.pair_problem
    sliced = load_comparison(store, [RunSlice(a)], (RunSlice(a), RunSlice(b, (0, 3))))
    assert sliced.pair is None and "rollout" in sliced.pair_problem
    assert load_comparison(store, [RunSlice(a)], pick_pair([RunSlice(a)], None, None)).pair_problem.startswith(
        "Pick two"
    )
    assert pick_pair([RunSlice(a), RunSlice(b)], f"{b} · x", f"{a} · y") == (RunSlice(b), RunSlice(a))
    assert pair_markdown(Comparison((), None, "why")) == "*why*"


def test_per_question_csv_has_every_shared_question(store, two_runs):
    a, b = two_runs
    comparison = load_comparison(store, [RunSlice(a), RunSlice(b)], (RunSlice(a), RunSlice(b)))
    rows = list(csv.reader(io.StringIO(per_question_csv(store, comparison.pair))))
    assert rows[0] == CSV_COLUMNS and len(rows) == 9
    flipped = [r for r in rows[1:] if r[7] == "yes"]
    assert len(flipped) == 3 and {r[4] for r in rows[1:]} == {"correct", "incorrect"}
