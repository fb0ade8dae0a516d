"""The jobs list and a job's details from job records: progress, elapsed, ETA, who, errors, rollout links."""

from __future__ import annotations

import dataclasses

from traces.records import JobRecord
from ui.jobs_view import (
    cancellable,
    duration,
    eta_s,
    job_markdown,
    jobs_caption,
    jobs_table,
    log_excerpt,
    progress,
    rollout_run_choice,
)

NOW = 1_000_000.0


def job(**changes) -> JobRecord:
    base = JobRecord(
        id=7,
        kind="sft",
        name="sft vlm -> runs/sft",
        status="running",
        config={},
        run_id=None,
        metrics={},
        log_path="/tmp/job-7.log",
        error=None,
        created_at=NOW - 130,
        started_at=NOW - 120,
        finished_at=None,
        updated_at=NOW,
        pid=123,
        host="box",
        launched_by="alice",
        step=30,
        max_steps=120,
    )
    return dataclasses.replace(base, **changes)


def test_a_running_job_shows_progress_elapsed_and_eta():
    row = jobs_table([job()], now=NOW)[0]
    assert row[:5] == [7, "sft", "sft vlm -> runs/sft", "▶ running", "30/120 (25%)"]
    assert row[6:] == ["2 min 00 s", "6 min 00 s", "alice"]  # 30 steps in 120 s: 90 more take 360 s


def test_finished_queued_and_stepless_jobs_have_no_eta():
    assert eta_s(job(status="succeeded", finished_at=NOW - 10), NOW) is None
    assert eta_s(job(step=0), NOW) is None
    assert eta_s(job(max_steps=None), NOW) is None
    row = jobs_table([job(status="succeeded", finished_at=NOW - 20, step=120)], now=NOW)[0]
    assert row[3] == "✓ succeeded" and row[6] == "1 min 40 s" and row[7] == "-"
    queued = jobs_table([job(status="queued", started_at=None, step=None, max_steps=None, launched_by=None)], now=NOW)
    assert queued[0][4:] == ["-", queued[0][5], "-", "-", "-"]


def test_durations_read_naturally():
    assert (duration(None), duration(5), duration(65), duration(3 * 3600 + 60)) == (
        "-",
        "5 s",
        "1 min 05 s",
        "3 h 01 min",
    )
    assert progress(job(step=None, max_steps=None)) == "-" and progress(job(max_steps=-1, step=4)) == "4"


def test_a_failed_job_shows_its_error_and_a_cancelled_one_cannot_be_cancelled_again():
    failed = job(status="failed", error="GPU out of memory: lower --per-device-train-batch-size", finished_at=NOW)
    text = job_markdown(failed, now=NOW)
    assert "Status **failed**" in text and "**Error:** GPU out of memory" in text and "Log: `/tmp/job-7.log`" in text
    assert not cancellable(failed) and not cancellable(job(status="cancelled")) and not cancellable(None)
    assert cancellable(job()) and cancellable(job(status="queued"))
    assert "Newest checkpoint: `runs/sft/checkpoint-3`" in job_markdown(
        job(metrics={"checkpoint": "runs/sft/checkpoint-3"}), now=NOW
    )


def test_only_grpo_jobs_link_to_their_rollout_run():
    assert rollout_run_choice(job(kind="grpo", run_id=4), "grpo job 7 rollouts") == "4 · grpo job 7 rollouts"
    assert rollout_run_choice(job(kind="grpo", run_id=None), None) is None
    assert rollout_run_choice(job(kind="sft", run_id=4), "x") is None


def test_captions_and_log_tails():
    assert "No jobs yet" in jobs_caption(0, 100)
    assert jobs_caption(1, 100) == "1 job." and "newest 100" in jobs_caption(100, 100)
    assert log_excerpt("") == "(no log yet)"
    assert log_excerpt("\n".join(str(i) for i in range(100)), lines=3) == "97\n98\n99"
