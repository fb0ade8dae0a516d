"""Training and eval jobs: what was launched, with which config and command, and where it got to.

A job is a row (`jobs`) plus an append-only history of the metrics it logged (`job_metrics`, one row per log
step: the Train tab's charts and `python -m training jobs`). The process running the job keeps both current;
whoever looks at a job whose process has died marks it `interrupted` (`mark_interrupted`), so a crashed machine
never leaves a job `running` forever.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, insert, select, update

from traces.errors import NotFoundError
from traces.models import job_metrics, jobs
from traces.records import JobMetricRecord, JobRecord

if TYPE_CHECKING:
    from traces.store import TraceStore

# `cancelling`: a cancel was asked for and the process has not reported its ending yet. It is what tells a job
# that was cancelled (and died before it could say so) from one that was interrupted.
JOB_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled", "interrupted")
FINAL_STATUSES = ("succeeded", "failed", "cancelled", "interrupted")
_UPDATABLE = {
    "status",
    "config",
    "run_id",
    "metrics",
    "log_path",
    "error",
    "started_at",
    "finished_at",
    "name",
    "command",
    "pid",
    "host",
    "launched_by",
    "step",
    "max_steps",
}


def _record(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        kind=row.kind,
        name=row.name,
        status=row.status,
        config=row.config or {},
        run_id=row.run_id,
        metrics=row.metrics or {},
        log_path=row.log_path,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
        command=list(row.command) if row.command is not None else None,
        pid=row.pid,
        host=row.host,
        launched_by=row.launched_by,
        step=row.step,
        max_steps=row.max_steps,
    )


def create_job(
    store: TraceStore,
    kind: str,
    name: str,
    config: dict[str, Any],
    run_id: int | None = None,
    *,
    command: list[str] | None = None,
    launched_by: str | None = None,
    log_path: str | None = None,
) -> int:
    now = time.time()
    with store.write() as conn:
        return int(
            conn.execute(
                insert(jobs)
                .values(
                    kind=kind,
                    name=name,
                    status="queued",
                    config=config,
                    run_id=run_id,
                    command=command,
                    launched_by=launched_by,
                    log_path=log_path,
                    metrics={},
                    created_at=now,
                    updated_at=now,
                )
                .returning(jobs.c.id)
            ).scalar_one()
        )


def _stamped(fields: dict[str, Any], now: float) -> dict[str, Any]:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"cannot update job fields {sorted(unknown)}; updatable: {sorted(_UPDATABLE)}")
    status = fields.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"job status must be one of {', '.join(JOB_STATUSES)}, not {status!r}")
    if status == "running":
        fields.setdefault("started_at", now)
    if status in FINAL_STATUSES:
        fields.setdefault("finished_at", now)
    return fields


def update_job(store: TraceStore, job_id: int, **fields: Any) -> JobRecord:
    """Change a job's status/progress/etc. Moving to running or a final status stamps started/finished times.

    `running` never replaces `cancelling` or a final status: a process that reports it started after someone
    cancelled it keeps the cancel on its row."""
    now = time.time()
    fields = _stamped(fields, now)
    if fields.get("status") == "running":
        keep = jobs.c.status.in_(("cancelling", *FINAL_STATUSES))
        fields["status"] = case((keep, jobs.c.status), else_="running")
    with store.write() as conn:
        done = conn.execute(update(jobs).where(jobs.c.id == job_id).values(updated_at=now, **fields))
        if done.rowcount == 0:
            raise NotFoundError(f"no job {job_id}")
        return _record(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())


def finish_job(store: TraceStore, job_id: int, status: str, *, error: str | None = None) -> bool:
    """Give a job its final status unless it already has one (a job marked interrupted or cancelled by someone
    else keeps that). Returns whether the row changed."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"a final status is one of {', '.join(FINAL_STATUSES)}, not {status!r}")
    now = time.time()
    with store.write() as conn:
        done = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.not_in(FINAL_STATUSES))
            .values(status=status, error=error, finished_at=now, updated_at=now)
        )
        return done.rowcount > 0


def request_cancel(store: TraceStore, job_id: int) -> bool:
    """Record that a cancel was asked for (`cancelling`), unless the job already ended. Returns whether it changed."""
    now = time.time()
    with store.write() as conn:
        done = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.not_in(FINAL_STATUSES))
            .values(status="cancelling", updated_at=now)
        )
        return done.rowcount > 0


def mark_interrupted(store: TraceStore, job_id: int, reason: str) -> bool:
    """A job whose process is gone without reporting: `interrupted`, with why. No-op on a finished job."""
    return finish_job(store, job_id, "interrupted", error=reason)


def get_job(store: TraceStore, job_id: int) -> JobRecord:
    with store.read() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFoundError(f"no job {job_id}")
    return _record(row)


def list_jobs(
    store: TraceStore, *, status: str | None = None, kind: str | None = None, limit: int = 100
) -> list[JobRecord]:
    """Newest first."""
    stmt = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(jobs.c.status == status)
    if kind is not None:
        stmt = stmt.where(jobs.c.kind == kind)
    with store.read() as conn:
        return [_record(r) for r in conn.execute(stmt)]


def append_metrics(store: TraceStore, job_id: int, step: int, values: dict[str, float]) -> None:
    with store.write() as conn:
        conn.execute(insert(job_metrics).values(job_id=job_id, step=step, created_at=time.time(), values=values))


def metric_history(store: TraceStore, job_id: int, *, since_step: int | None = None) -> list[JobMetricRecord]:
    """The job's logged metrics in order (only steps after `since_step` when given: polling for new points)."""
    m = job_metrics.c
    stmt = select(m.step, m.created_at, m["values"]).where(m.job_id == job_id).order_by(m.step, m.id)
    if since_step is not None:
        stmt = stmt.where(m.step > since_step)
    with store.read() as conn:
        return [JobMetricRecord(r.step, r.created_at, dict(r[2] or {})) for r in conn.execute(stmt)]
