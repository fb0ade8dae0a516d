"""The Train tab's jobs list and job details. Pure functions: job records in, table rows and text out.

Progress is the job's step against its max steps; elapsed runs from the job's start to its end (or now); the ETA
assumes the remaining steps take as long as the ones done so far.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from traces.jobs import FINAL_STATUSES
from traces.records import JobRecord
from ui.review import run_choice
from ui.safe import md_code, md_text, truncate

JOB_COLUMNS = ["id", "kind", "name", "status", "progress", "started", "elapsed", "ETA", "launched by"]
STATUS_MARKS = {
    "queued": "⏳ queued",
    "running": "▶ running",
    "cancelling": "■ cancelling…",
    "succeeded": "✓ succeeded",
    "failed": "✗ failed",
    "cancelled": "■ cancelled",
    "interrupted": "⚠ interrupted",
}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def elapsed_s(job: JobRecord, now: float) -> float | None:
    if job.started_at is None:
        return None
    return (job.finished_at or now) - job.started_at


def eta_s(job: JobRecord, now: float) -> float | None:
    """Time left at the pace so far; None when it cannot be told (not running, no step done, no max steps)."""
    if job.status != "running" or not job.step or not job.max_steps or job.max_steps <= 0:
        return None
    spent = elapsed_s(job, now)
    if spent is None or job.step >= job.max_steps:
        return None
    return spent / job.step * (job.max_steps - job.step)


def progress(job: JobRecord) -> str:
    if job.max_steps and job.max_steps > 0:
        step = job.step or 0
        return f"{step}/{job.max_steps} ({100 * step / job.max_steps:.0f}%)"
    return str(job.step) if job.step else "-"


def _started(job: JobRecord, now: float) -> str:
    ts = job.started_at or job.created_at
    if now - ts < 86400:
        return time.strftime("%H:%M:%S", time.localtime(ts))
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def jobs_table(jobs: Sequence[JobRecord], *, now: float | None = None) -> list[list[str | int]]:
    now = time.time() if now is None else now
    return [
        [
            job.id,
            job.kind,
            truncate(job.name, 40),
            STATUS_MARKS.get(job.status, job.status),
            progress(job),
            _started(job, now),
            duration(elapsed_s(job, now)),
            duration(eta_s(job, now)),  # "-" when it cannot be told
            job.launched_by or "-",
        ]
        for job in jobs
    ]


def jobs_caption(shown: int, limit: int) -> str:
    if shown == 0:
        return "No jobs yet: launch one with the form above, or `python -m training sft|grpo …`."
    if shown >= limit:
        return f"The newest {limit} jobs (`python -m training jobs --limit N` lists more)."
    return f"{shown} job{'s' if shown != 1 else ''}."


def job_markdown(job: JobRecord, *, now: float | None = None) -> str:
    """The selected job's header: status, progress, timing, who, the error when it failed, its checkpoint."""
    now = time.time() if now is None else now
    eta = eta_s(job, now)
    lines = [
        f"**Job {job.id}** · {md_text(job.kind)} · {md_text(job.name)}",
        f"Status **{md_text(job.status)}** · progress {md_text(progress(job))} · elapsed "
        f"{duration(elapsed_s(job, now))}"
        + (f" · ETA {duration(eta)}" if eta is not None else "")
        + f" · launched by {md_text(job.launched_by or '-')}"
        + (f" · pid {job.pid} on {md_text(job.host or '-')}" if job.pid else ""),
    ]
    if job.error:
        lines.append(f"**{'Error' if job.status == 'failed' else 'Note'}:** {md_text(job.error)}")
    checkpoint = job.metrics.get("checkpoint") if isinstance(job.metrics, dict) else None
    if checkpoint:
        lines.append(f"Newest checkpoint: {md_code(checkpoint)}")
    if job.log_path:
        lines.append(f"Log: {md_code(job.log_path)}")
    return "\n\n".join(lines)


def cancellable(job: JobRecord | None) -> bool:
    return job is not None and job.status not in FINAL_STATUSES


def rollout_run_choice(job: JobRecord | None, run_name: str | None) -> str | None:
    """The Traces tab's run filter value ("id · name") for a GRPO job's rollout run, or None."""
    if job is None or job.kind != "grpo" or job.run_id is None:
        return None
    return run_choice(job.run_id, run_name or "").rstrip()


def log_excerpt(text: str, *, lines: int = 60) -> str:
    """The last lines of a log (the runner already read only its end)."""
    if not text:
        return "(no log yet)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail)
