"""`python -m agent eval` end to end on the real FVQA sample: a scripted model endpoint, a local SearXNG-format
search server, the rule judge or a scripted judge endpoint, and the trace store the report is computed from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.__main__ import main
from tests.conftest import REPO
from tests.servers.chat_completions import scripted_chat_server
from tests.servers.search_providers import fake_web
from tests.traces.conftest import fvqa_sample
from traces import open_store
from traces.cli import main as traces_main
from traces.models import episodes, runs

# The scripted model answers two of the five sample questions right; the rule judge must find exactly those.
RIGHT = {
    "What is the country of origin of this food?": "the Kingdom of Spain",  # an alias from candidate_answers
    "What is this building dedicated to?": "Gautama Buddha",
}
SAMPLE_QUESTIONS = 5


def question_of(body: dict) -> str:
    content = body["messages"][1]["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def model(body: dict) -> str:
    """One text search, then an answer: the gold answer where the script knows it, a wrong one otherwise."""
    question = question_of(body)
    if not any(m["role"] == "assistant" for m in body["messages"]):
        return "<reason>I should search.</reason><text_search>what is shown in this picture</text_search>"
    answer = next((a for q, a in RIGHT.items() if q in question), "Atlantis")
    return f"<reason>The results say so.</reason><answer>{answer}</answer>"


@contextmanager
def servers(token_delay_s: float = 0.0, judge=None):
    with ExitStack() as stack:
        chat = stack.enter_context(scripted_chat_server(model, token_delay_s=token_delay_s))
        web = stack.enter_context(fake_web())
        judge_server = stack.enter_context(scripted_chat_server(judge, model="judge-model")) if judge else None
        yield chat, web, judge_server


def eval_args(chat, web, db: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--data",
        str(fvqa_sample()),
        "--db",
        str(db),
        "--backend",
        "openai",
        "--model",
        "scripted-model",
        "--base-url",
        chat.base_url,
        "--text-search",
        "searxng",
        "--searxng-base-url",
        web.base_url,
        "--allow-private-fetch",
        "--image-search",
        "off",
        "--grounding-model",
        "off",
        "--summariser",
        "none",
        "--tool-cache",
        "",
        "--no-progress",
        *extra,
    ]


def stored(db: Path):
    with open_store(db) as store, store.read() as conn:
        return conn.execute(
            select(episodes.c.question, episodes.c.status, episodes.c.verdict, episodes.c.judge, episodes.c.item_key,
                   episodes.c.gold_answers, episodes.c.judge_reason, episodes.c.run_id)
            .order_by(episodes.c.id)
        ).all()  # fmt: skip


def expected_correct(rows) -> int:
    return sum(1 for r in rows if any(q in r.question for q in RIGHT))


def test_eval_with_the_rule_judge_reports_what_the_script_answered_and_resumes(tmp_path, capsys):
    db, report_path = tmp_path / "traces.db", tmp_path / "out" / "report.json"
    with servers() as (chat, web, _):
        assert main(eval_args(chat, web, db, "--judge", "rule", "--report", str(report_path))) == 0
        first_requests = len(chat.requests)
        printed = capsys.readouterr().out
        # Resume: the same command again runs nothing and reports the same figures.
        assert main(eval_args(chat, web, db, "--judge", "rule")) == 0
        assert len(chat.requests) == first_requests
    rows = stored(db)
    assert len(rows) == SAMPLE_QUESTIONS and len({r.item_key for r in rows}) == SAMPLE_QUESTIONS
    correct = expected_correct(rows)
    assert correct == len(RIGHT)
    assert {r.verdict for r in rows if any(q in r.question for q in RIGHT)} == {"correct"}
    assert {r.verdict for r in rows if not any(q in r.question for q in RIGHT)} == {"incorrect"}
    assert {r.judge for r in rows} == {"rule"} and all(r.judge_reason for r in rows)
    spain = next(r for r in rows if r.question == "What is the country of origin of this food?")
    assert spain.gold_answers[0] == "Spain" and "Kingdom of Spain" in spain.gold_answers

    report = json.loads(report_path.read_text())
    assert report["accuracy"] == correct / SAMPLE_QUESTIONS
    assert (report["n"], report["judged"], report["unknown"], report["errors"]) == (SAMPLE_QUESTIONS, 5, 0, 0)
    assert report["ci95"][0] <= report["accuracy"] <= report["ci95"][1]
    assert report["judge"]["kind"] == "rule" and report["judge"]["names"] == {"rule": 5}
    assert report["by_source"]["mmsearch_r1/infoseek_train_split"]["n"] == SAMPLE_QUESTIONS
    assert report["tool_usage"]["text_search_only"] == 1.0 and report["tool_usage"]["answered_directly"] == 0.0
    assert report["mean_turns"] == 2.0 and report["mean_tool_calls"] == 1.0 and report["mean_latency_s"] > 0
    assert "40.0%" in printed and "text search only" in printed

    # `python -m traces stats` shows the same figures from the store.
    assert traces_main(["stats", "--db", str(db), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.splitlines()[-1])["stats"]
    assert {k: stats[k] for k in ("accuracy", "n", "judged", "unknown", "ci95", "tool_usage")} == {
        k: report[k] for k in ("accuracy", "n", "judged", "unknown", "ci95", "tool_usage")
    }


def test_a_limited_run_then_the_full_one_runs_only_the_rest(tmp_path):
    db = tmp_path / "traces.db"
    with servers() as (chat, web, _):
        assert main(eval_args(chat, web, db, "--judge", "rule", "--limit", "2", "--run-name", "r")) == 0
        assert len(chat.requests) == 2 * 2
        assert main(eval_args(chat, web, db, "--judge", "rule", "--run-name", "r")) == 0
        assert len(chat.requests) == 2 * SAMPLE_QUESTIONS
    rows = stored(db)
    assert len(rows) == SAMPLE_QUESTIONS and len({r.item_key for r in rows}) == SAMPLE_QUESTIONS


def llm_judge(body: dict) -> str:
    """A judge endpoint in the eval prompt's format: correct exactly when the answer is not Atlantis."""
    user = body["messages"][-1]["content"]
    return "Different place. [INCORRECT]" if "Model's answer: Atlantis" in user else "Same thing. [CORRECT]"


def test_eval_with_an_llm_judge_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_API_KEY", "judge-secret")
    db, report_path = tmp_path / "traces.db", tmp_path / "r.json"
    with servers(judge=llm_judge) as (chat, web, judge):
        args = eval_args(chat, web, db, "--judge-base-url", judge.base_url, "--judge-model", "judge-model")
        assert main([*args, "--judge-cache", str(tmp_path / "jc.db"), "--report", str(report_path)]) == 0
    assert len(judge.requests) == SAMPLE_QUESTIONS
    assert judge.requests[0]["temperature"] == 0.0 and "[CORRECT]" in judge.requests[0]["messages"][-1]["content"]
    report = json.loads(report_path.read_text())
    assert report["accuracy"] == len(RIGHT) / SAMPLE_QUESTIONS
    assert report["judge"]["kind"] == "llm" and report["judge"]["model"] == "judge-model"
    assert report["judge"]["prompt_version"] == "eval-v1"
    assert report["judge"]["names"] == {"llm:judge-model@eval-v1": 5}
    assert "judge-secret" not in db.read_bytes().decode("latin-1") and "judge-secret" not in report_path.read_text()


def test_a_garbage_judge_gives_unknowns_that_rejudge_fixes(tmp_path, capsys):
    db, report_path = tmp_path / "traces.db", tmp_path / "r.json"
    with servers(judge=lambda body: "Sure! Happy to help with that.") as (chat, web, judge):
        llm = ["--judge-base-url", judge.base_url, "--judge-model", "judge-model", "--judge-cache", ""]
        assert main([*eval_args(chat, web, db, *llm), "--run-name", "run", "--report", str(report_path)]) == 0
        report = json.loads(report_path.read_text())
        assert (report["unknown"], report["judged"], report["accuracy"]) == (5, 0, None)
        assert "no verdict" in stored(db)[0].judge_reason
        requests = len(chat.requests)
        # The same answers, judged again by the rule judge: no episode runs again.
        assert main([*eval_args(chat, web, db), "--rejudge", "--judge", "rule", "--run-name", "run",
                     "--report", str(report_path)]) == 0  # fmt: skip
        assert len(chat.requests) == requests
    assert "re-judged 5 answers" in capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert (report["unknown"], report["judged"], report["accuracy"]) == (0, 5, len(RIGHT) / SAMPLE_QUESTIONS)
    assert report["judge"]["kind"] == "rule"


def test_rejudge_needs_an_existing_run(tmp_path, capsys):
    assert main(["eval", "--rejudge", "--judge", "rule", "--db", str(tmp_path / "t.db")]) == 2
    assert "--rejudge needs --run-name" in capsys.readouterr().err
    assert main(["eval", "--rejudge", "--judge", "rule", "--run-name", "nope", "--db", str(tmp_path / "t.db")]) == 2
    assert "no eval run named 'nope'" in capsys.readouterr().err


def test_a_dataset_with_missing_columns_runs_nothing(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["Q?"], "answer": ["A"]}), bad)
    db = tmp_path / "traces.db"
    with servers() as (chat, web, _):
        args = eval_args(chat, web, db, "--judge", "rule")
        args[args.index("--data") + 1] = str(bad)
        assert main(args) == 2
        assert chat.requests == []
    err = capsys.readouterr().err
    assert "missing columns ['prompt', 'images', 'reward_model']" in err and "Nothing was run" in err
    with open_store(db) as store, store.read() as conn:
        assert conn.execute(select(runs.c.id)).all() == []


def test_unreadable_images_are_recorded_as_errors_and_the_eval_goes_on(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    good = tmp_path / "good.jpg"
    good.write_bytes(_first_sample_image())
    data = tmp_path / "set.jsonl"
    lines = [
        {"question": "What is the country of origin of this food?", "image": "good.jpg", "answers": ["Spain"]},
        {"question": "What is this?", "image": "broken.jpg", "answers": ["x"]},
        {"question": "And this?", "image": "missing.jpg", "answers": ["y"]},
    ]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    db, report_path = tmp_path / "traces.db", tmp_path / "r.json"
    with servers() as (chat, web, _):
        args = eval_args(chat, web, db, "--judge", "rule", "--report", str(report_path))
        args[args.index("--data") + 1] = str(data)
        assert main(args) == 0
    by_question = {r.question: r for r in stored(db)}
    assert by_question["What is the country of origin of this food?"].verdict == "correct"
    for question in ("What is this?", "And this?"):
        assert by_question[question].status == "error" and by_question[question].verdict is None
    with open_store(db) as store, store.read() as conn:
        reasons = conn.execute(select(episodes.c.reason).where(episodes.c.status == "error")).scalars().all()
    assert all(r.startswith("image unreadable") for r in reasons) and any("no such file" in r for r in reasons)
    report = json.loads(report_path.read_text())
    assert (report["n"], report["errors"], report["judged"], report["accuracy"]) == (3, 2, 1, 1.0)


def _first_sample_image() -> bytes:
    import pyarrow.parquet as pq

    return pq.read_table(fvqa_sample()).column("images")[0].as_py()[0]["bytes"]


def test_the_model_endpoint_down_stops_with_a_clear_error(tmp_path, capsys):
    db = tmp_path / "traces.db"
    with servers() as (chat, web, _):
        args = eval_args(chat, web, db, "--judge", "rule", "--max-consecutive-failures", "2", "--concurrency", "1")
    args[args.index("--base-url") + 1] = "http://127.0.0.1:9/v1"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "failed 2 episodes in a row" in err and "run the same command to resume" in err
    rows = stored(db)
    assert [r.status for r in rows] == ["error", "error"]


def test_compare_two_runs_from_the_command_line(tmp_path, capsys):
    db = tmp_path / "traces.db"
    with servers() as (chat, web, _):
        assert main(eval_args(chat, web, db, "--judge", "rule", "--run-name", "A")) == 0
        assert main(eval_args(chat, web, db, "--judge", "rule", "--run-name", "B", "--limit", "3")) == 0
    capsys.readouterr()
    assert main(["eval", "compare", "A", "B", "--db", str(db), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert (comparison["shared"], comparison["only_a"], comparison["only_b"]) == (3, 2, 0)
    assert comparison["p_value"] == 1.0 and comparison["flips"] == [] and comparison["difference"] == 0.0
    assert main(["eval", "compare", "A", "nope", "--db", str(db)]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_keeps_finished_episodes_and_the_next_run_completes(tmp_path):
    db = tmp_path / "traces.db"
    with servers(token_delay_s=0.15) as (chat, web, _):
        args = eval_args(chat, web, db, "--judge", "rule", "--concurrency", "2")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _judged(db):
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.2)
            assert _judged(db), "no episode finished in time"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert "interrupted: finished episodes are kept" in err
        rows = stored(db)
        assert {r.status for r in rows} <= {"answered", "cancelled"} and len(rows) < SAMPLE_QUESTIONS + 2
        finished = [r for r in rows if r.status == "answered"]
        assert finished and all(r.verdict in ("correct", "incorrect") for r in finished)
        # Run again: the cancelled questions run, the finished ones do not.
        requests = len(chat.requests)
        assert main([*args, "--concurrency", "4"]) == 0
        assert len(chat.requests) - requests == 2 * (SAMPLE_QUESTIONS - len(finished))
    rows = stored(db)
    assert len(rows) == SAMPLE_QUESTIONS and {r.status for r in rows} == {"answered"}
    assert len({r.item_key for r in rows}) == SAMPLE_QUESTIONS


def _judged(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        return any(r.verdict for r in stored(db))
    except Exception:  # the schema may still be being created by the other process
        return False


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--concurrency", "-1"), ("--concurrency", "0"), ("--concurrency", "2000"), ("--limit", "-1"), ("--limit", "0")],
)
def test_bad_numbers_are_refused(tmp_path, capsys, flag, value):
    assert main(["eval", "--data", "x.parquet", flag, value, "--db", str(tmp_path / "t.db")]) == 2
    assert f"error: {flag} must be at" in capsys.readouterr().err
