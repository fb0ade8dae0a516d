"""Eval runs in the store: create and resume, judgements written, stored answers judged again, 32 at once."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from agent.eval import keyed, run_eval
from agent.events import ToolFinished
from agent.judge import Judge, Judgement, RuleJudge
from agent.models.openai_backend import OpenAIBackend
from agent.tools.base import Toolbox
from tests.agent.conftest import RecordingTextSearch
from tests.agent.test_eval import model_turns, png
from tests.servers.chat_completions import scripted_chat_server
from tests.traces.test_stats import add, episode_row
from traces import Recorder
from traces.eval_runs import default_run_name, open_eval_run, record_outcome, rejudge_run
from traces.models import episodes
from traces.stats import run_report


def _open(store, name="eval m on set", model="m"):
    return open_eval_run(
        store, name, model=model, backend="openai", dialect="deepmmsearch", dataset="set", config={"judge": {}}
    )


def test_default_run_name_uses_the_model_folder_name():
    assert default_run_name("/tmp/tiny/vlm/", "fvqa_mini") == "eval vlm on fvqa_mini"
    assert default_run_name("Qwen/Qwen2.5-VL-7B-Instruct", "x") == "eval Qwen2.5-VL-7B-Instruct on x"


def test_resuming_keeps_completed_episodes_and_discards_failed_attempts(store):
    first = _open(store)
    assert not first.resumed and first.done_keys == frozenset()
    add(
        store,
        [
            episode_row(first.run_id, "k1"),
            episode_row(first.run_id, "k2", verdict="incorrect", status="format_error"),
            episode_row(first.run_id, "k3", verdict=None, status="error"),
            episode_row(first.run_id, "k4", verdict=None, status="cancelled"),
            episode_row(first.run_id, "k5", verdict=None, status="interrupted"),
        ],
    )
    again = _open(store)
    assert again.resumed and again.run_id == first.run_id
    assert again.done_keys == {"k1", "k2"} and again.discarded == 3
    with store.read() as conn:
        left = conn.execute(select(func.count()).where(episodes.c.run_id == first.run_id)).scalar_one()
    assert left == 2


def test_resuming_with_another_model_is_refused(store):
    _open(store)
    with pytest.raises(ValueError, match="choose another --run-name"):
        _open(store, model="other")


class ScriptedJudge(Judge):
    def __init__(self, name, verdicts):
        self.name = name
        self.verdicts = verdicts
        self.asked = []

    def describe(self):
        return {"kind": "llm", "model": self.name, "prompt_version": "v", "name": self.name}

    async def _judge(self, question, prediction, golds):
        self.asked.append(question)
        return Judgement(self.verdicts.get(question, "unknown"), "scripted", self.name)


def test_rejudge_judges_missing_unknown_and_other_judges_answers(store):
    run = _open(store).run_id
    add(
        store,
        [
            episode_row(run, "k1", judge="llm:x@v"),  # decided by this judge already: left alone
            episode_row(run, "k2", verdict="unknown", judge="llm:x@v"),
            episode_row(run, "k3", verdict=None),  # finished but never judged
            episode_row(run, "k4", judge="rule"),  # another judge
            episode_row(run, "k5", verdict=None, status="error"),  # not completed: never judged
        ],
    )
    judge = ScriptedJudge(
        "llm:x@v", {"question k2?": "correct", "question k3?": "incorrect", "question k4?": "incorrect"}
    )
    only_needed = rejudge_run(store, run, judge, other_judges=False)
    assert sorted(judge.asked) == ["question k2?", "question k3?"]
    assert (only_needed.judged, only_needed.changed, only_needed.unknown) == (2, 0, 0)
    summary = rejudge_run(store, run, judge)
    assert judge.asked[-1] == "question k4?" and (summary.judged, summary.changed) == (1, 1)
    report = run_report(store, run)
    assert (report.judged, report.correct, report.unknown) == (4, 2, 0)
    assert report.judge["name"] == "llm:x@v" and report.judge["names"] == {"llm:x@v": 4}


def test_thirty_two_episodes_at_once_none_lost_none_duplicated(sqlite_store):
    store = sqlite_store
    todo = keyed([(f"What colour is thing {n}?", png(), ("red",), f"src{n % 2}", n) for n in range(32)])
    run = _open(store, model="scripted-model")
    recorder = Recorder(store, run_kind="eval", run_id=run.run_id)
    with scripted_chat_server(model_turns, token_delay_s=0.01) as server:
        result = run_eval(
            todo,
            backend=OpenAIBackend("scripted-model", server.base_url),
            toolbox=Toolbox(text_search=RecordingTextSearch()),
            judge=RuleJudge(),
            concurrency=32,
            on_event=recorder,
            on_outcome=lambda o: record_outcome(store, o),
        )
    recorder.close()
    assert result.stopped is None and result.progress.done == 32
    e = episodes.c
    with store.read() as conn:
        rows = conn.execute(
            select(e.item_key, e.status, e.verdict, e.dataset, e.gold_answers).where(e.run_id == run.run_id)
        ).all()
    assert sorted(r.item_key for r in rows) == sorted(i.key for i in todo)  # each once
    assert {(r.status, r.verdict) for r in rows} == {("answered", "correct")}
    assert {r.dataset for r in rows} == {"src0", "src1"} and all(r.gold_answers == ["red"] for r in rows)
    report = run_report(store, run.run_id)
    assert (report.n, report.judged, report.accuracy) == (32, 32, 1.0)
    assert report.by_source["src0"].n == report.by_source["src1"].n == 16


def _episode_count(store) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(episodes)).scalar_one()


def test_whole_episodes_are_written_in_one_transaction_when_they_finish(store, monkeypatch):
    from tests.traces.helpers import synthetic_episode
    from traces.eval_runs import WholeEpisodes
    from traces.queries import load_episode

    run = _open(store).run_id
    sink = WholeEpisodes(Recorder(store, run_kind="eval", run_id=run))
    events = synthetic_episode("whole-1")
    writes = []
    real_write = store.write
    monkeypatch.setattr(store, "write", lambda: writes.append(1) or real_write())
    for event in events[:-1]:
        sink(event)
    assert _episode_count(store) == 0 and writes == [] and sink.unfinished() == 1
    sink(events[-1])
    assert writes == [1] and sink.unfinished() == 0
    detail = load_episode(store, "whole-1")
    assert detail.summary.status == "answered" and len(detail.turns) == 3
    assert sum(len(t.tool_calls) for t in detail.turns) == 2


def test_a_failed_write_in_a_transaction_keeps_nothing_of_the_episode(store, monkeypatch):
    from tests.traces.helpers import synthetic_episode
    from traces.eval_runs import WholeEpisodes

    run = _open(store).run_id
    recorder = Recorder(store, run_kind="eval", run_id=run)
    sink = WholeEpisodes(recorder)

    def disk_full(event):
        raise OSError("disk full")

    monkeypatch.setitem(recorder._handlers, ToolFinished, disk_full)  # a write in the middle of the block fails
    with pytest.raises(RuntimeError, match="recording ToolFinished of episode whole-2 failed: disk full"):
        for event in synthetic_episode("whole-2"):
            sink(event)
    assert _episode_count(store) == 0


def test_transaction_needs_a_strict_recorder_with_a_run(store):
    with pytest.raises(ValueError, match="strict recorder with a run_id"):
        with Recorder(store, run_kind="eval").transaction():
            pass
    with pytest.raises(ValueError, match="strict recorder with a run_id"):
        with Recorder(store, run_kind="eval", run_id=1, strict=False).transaction():
            pass


def test_an_eval_job_row_gets_progress_at_most_once_a_second_and_its_ending(store):
    from traces import jobs
    from traces.eval_runs import EvalJob

    job_id = jobs.create_job(store, "eval", "eval m on q", {})
    run = store.create_run("eval m on q", "eval")
    job = EvalJob(store, job_id, min_interval_s=60.0)
    job.start(run, total=3, done=0)
    job.progress(1, judged=1, correct=1, unknown=0, errors=0)
    job.progress(2, judged=2, correct=1, unknown=0, errors=0)  # within the interval: not written
    job.progress(3, judged=2, correct=1, unknown=1, errors=0)  # the last question always is
    job.finish("succeeded")
    job.finish("failed", "too late")  # the first ending stays
    row = jobs.get_job(store, job_id)
    assert (row.status, row.run_id, row.step, row.max_steps, row.error) == ("succeeded", run, 3, 3, None)
    history = jobs.metric_history(store, job_id)
    assert [h.step for h in history] == [1, 3] and history[-1].values["accuracy"] == 0.5
    assert history[-1].values["unknown"] == 1.0
