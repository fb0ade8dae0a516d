"""An eval run in the trace store: create or resume it, write judgements, judge stored answers again.

`python -m agent eval` wires agent/eval.py (which knows no store) to these functions:
- `WholeEpisodes` records each episode in one transaction when it finishes.
- `open_eval_run` finds the eval run of that name or creates it. Resuming keeps every completed episode
  (answered, budget_exhausted, format_error) and deletes the run's failed attempts (error, cancelled,
  interrupted), whose questions then run again, so a run holds one episode per question.
- `record_outcome` writes an episode's judgement (verdict, reason, judge) when the eval reports it.
- `rejudge_run` judges stored answers without running episodes: the ones never judged (a process that died
  between the answer and the verdict), those judged `unknown`, and with `other_judges` every one a different
  judge decided. The run's recorded judge becomes the one that judged last.
- `EvalJob` keeps the job row of an eval the job runner started (`--job-id`, the Train tab) current: running
  with its run and size, progress and accuracy so far as metrics, and how it ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from agent.eval import EpisodeOutcome
from agent.events import COMPLETED_STATUSES, EpisodeFinished, Event
from agent.judge import Judge
from traces import jobs
from traces.models import episodes, runs
from traces.queries import get_run
from traces.recorder import Recorder
from traces.records import RunRecord
from traces.store import TraceStore
from traces.verdicts import set_judgement

FAILED_STATUSES = ("error", "cancelled", "interrupted")


class WholeEpisodes:
    """An event sink that records each episode in one transaction once it finishes (eval's recorder).

    An eval episode is worth keeping only whole: resuming discards unfinished ones and runs their questions again.
    So its events are held in memory and written, when EpisodeFinished arrives, through `Recorder.transaction()`:
    two commits per episode (its events, then the judgement) instead of one per event, which is what lets 64
    episodes at once keep up with a store that fsyncs each commit. What a crash loses is the episodes in flight,
    which the next run reruns. Episodes appear in the store when they finish, not while they stream; turns carry
    the time they were written as their start time. Thread-safe: events of many episodes, from many threads.
    """

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self._held: dict[str, list[Event]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._held.setdefault(event.episode_id, []).append(event)
            if not isinstance(event, EpisodeFinished):
                return
            held = self._held.pop(event.episode_id)
        with self.recorder.transaction():
            for e in held:
                self.recorder(e)

    def unfinished(self) -> int:
        """Episodes started and not finished: never written (their questions run again on resume)."""
        with self._lock:
            return len(self._held)


@dataclass(frozen=True)
class EvalRun:
    run_id: int
    name: str
    resumed: bool
    done_keys: frozenset[str]  # item keys with a completed episode: skipped on this run
    discarded: int  # failed attempts deleted so that their questions run again
    judge: dict[str, Any]  # the judge recorded with the run before this command


def default_run_name(model: str, data_name: str) -> str:
    return f"eval {PurePath(model.rstrip('/')).name or model} on {data_name}"


def find_eval_run(store: TraceStore, name: str) -> RunRecord | None:
    """The newest eval run called `name`, or None."""
    with store.read() as conn:
        row = conn.execute(
            select(runs.c.id).where(runs.c.name == name, runs.c.kind == "eval").order_by(runs.c.id.desc()).limit(1)
        ).first()
    return get_run(store, int(row.id)) if row else None


def open_eval_run(
    store: TraceStore,
    name: str,
    *,
    model: str,
    backend: str,
    dialect: str,
    dataset: str | None,
    config: dict[str, Any],
) -> EvalRun:
    """The eval run called `name`, resumed if it exists (same model, backend and dialect), else a new one."""
    run = find_eval_run(store, name)
    if run is None:
        run_id = store.create_run(
            name, "eval", model=model, backend=backend, dialect=dialect, dataset=dataset, config=config
        )
        return EvalRun(run_id, name, False, frozenset(), 0, {})
    recorded = (run.model, run.backend, run.dialect)
    if recorded != (model, backend, dialect):
        raise ValueError(
            f"eval run {name!r} (run {run.id}) was recorded with {'/'.join(map(str, recorded))}, not "
            f"{model}/{backend}/{dialect}: choose another --run-name to evaluate this model"
        )
    e = episodes.c
    with store.write() as conn:
        discarded = conn.execute(delete(episodes).where(e.run_id == run.id, e.status.in_(FAILED_STATUSES))).rowcount
        keys = conn.execute(
            select(e.item_key).where(e.run_id == run.id, e.status.in_(COMPLETED_STATUSES), e.item_key.is_not(None))
        ).scalars()
        done = frozenset(keys)
    return EvalRun(run.id, name, True, done, int(discarded or 0), dict((run.config or {}).get("judge") or {}))


def resolve_run(store: TraceStore, ref: str) -> int:
    """A run id, or the newest run of that name (an eval run before any other kind)."""
    if ref.isdigit():
        return int(ref)
    with store.read() as conn:
        row = conn.execute(
            select(runs.c.id).where(runs.c.name == ref).order_by((runs.c.kind == "eval").desc(), runs.c.id.desc())
        ).first()
    if row is None:
        raise ValueError(f"no run named {ref!r}")
    return int(row.id)


def set_run_judge(store: TraceStore, run_id: int, description: dict[str, Any]) -> None:
    """Record which judge the run's verdicts come from (the report names it)."""
    with store.write() as conn:
        config = conn.execute(select(runs.c.config).where(runs.c.id == run_id)).scalar_one()
        conn.execute(update(runs).where(runs.c.id == run_id).values(config={**(config or {}), "judge": description}))


def record_outcome(store: TraceStore, outcome: EpisodeOutcome) -> None:
    """Write a finished eval episode's judgement (episodes that were not judged keep verdict NULL)."""
    j = outcome.judgement
    if j is not None:
        set_judgement(store, outcome.episode_id, j.verdict, j.reason, j.judge)


@dataclass(frozen=True)
class RejudgeSummary:
    judged: int
    changed: int  # decided verdicts that differ from the ones stored before
    unknown: int  # still undecided after this judge


def rejudge_run(
    store: TraceStore,
    run_id: int,
    judge: Judge,
    *,
    other_judges: bool = True,
    batch: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
) -> RejudgeSummary:
    """Judge the run's stored answers again (see the module docstring for which); returns what changed."""
    e = episodes.c
    needed = or_(e.correct.is_(None), e.verdict == "unknown")
    if other_judges:
        needed = or_(needed, func.coalesce(e.judge, "") != judge.name)
    with store.read() as conn:
        rows = conn.execute(
            select(e.uid, e.question, e.final_answer, e.gold_answers, e.correct)
            .where(and_(e.run_id == run_id, e.status.in_(COMPLETED_STATUSES), needed))
            .order_by(e.id)
        ).all()
    judged = changed = unknown = 0
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        verdicts = judge.judge_many_sync([(r.question, r.final_answer, tuple(r.gold_answers or ())) for r in chunk])
        for row, j in zip(chunk, verdicts, strict=True):
            set_judgement(store, row.uid, j.verdict, j.reason, j.judge)
            judged += 1
            unknown += j.verdict == "unknown"
            if j.verdict != "unknown" and row.correct is not None and (j.verdict == "correct") != row.correct:
                changed += 1
        if on_progress is not None:
            on_progress(judged, len(rows))
    set_run_judge(store, run_id, {**judge.describe(), "judged_at": time.time()})
    return RejudgeSummary(judged, changed, unknown)


class EvalJob:
    """The job row of an eval launched by the job runner: what the Train tab shows while it runs.

    Progress is written at most once every `min_interval_s` (and always for the last question): a job row and a
    metric point (`done`, `judged`, `correct`, `unknown`, `errors`, `accuracy` so far; step = questions done)."""

    def __init__(self, store: TraceStore, job_id: int, *, min_interval_s: float = 1.0):
        self.store = store
        self.job_id = job_id
        self.min_interval_s = min_interval_s
        self.total = 0
        self._last_write = 0.0

    def start(self, run_id: int, total: int, done: int) -> None:
        self.total = total
        jobs.update_job(self.store, self.job_id, status="running", run_id=run_id, max_steps=total, step=done)

    def progress(self, done: int, judged: int, correct: int, unknown: int, errors: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self._last_write < self.min_interval_s:
            return
        self._last_write = now
        values = {"done": done, "judged": judged, "correct": correct, "unknown": unknown, "errors": errors}
        if judged:
            values["accuracy"] = correct / judged
        jobs.append_metrics(self.store, self.job_id, done, {k: float(v) for k, v in values.items()})
        jobs.update_job(self.store, self.job_id, step=done, metrics={"last": values})

    def finish(self, status: str, error: str | None = None) -> None:
        """The job's final status, unless it already has one (the first ending recorded wins)."""
        jobs.finish_job(self.store, self.job_id, status, error=error)
