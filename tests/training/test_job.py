"""A job from inside: how each ending is recorded, and what the callback writes and decides."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from traces import jobs
from traces.store import open_store
from training.callbacks import JobCallback
from training.job import EXIT_BAD_INPUT, EXIT_FAILED, JobContext, JobResult, explain, run_job
from training.models import TrainingInputError


@pytest.fixture
def context(tmp_path):
    store = open_store(tmp_path / "traces.db")
    job_id = jobs.create_job(store, "sft", "test", {})
    yield JobContext(store, job_id, threading.Event(), 0)
    store.close()


def test_gpu_out_of_memory_says_what_to_lower(context):
    def work(_):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert run_job(context, work) == EXIT_FAILED
    job = jobs.get_job(context.store, context.job_id)
    assert job.status == "failed"
    assert job.error.startswith("GPU out of memory") and "--per-device-train-batch-size" in job.error


def test_bad_input_is_failed_with_its_own_message(context):
    def work(_):
        raise TrainingInputError("no approved episodes to train on")

    assert run_job(context, work) == EXIT_BAD_INPUT
    assert jobs.get_job(context.store, context.job_id).error == "no approved episodes to train on"


def test_a_run_stopped_early_is_cancelled_and_a_full_one_succeeded(context, tmp_path):
    assert run_job(context, lambda _: JobResult(stopped_early=True)) == 0
    assert jobs.get_job(context.store, context.job_id).status == "cancelled"
    second = JobContext(context.store, jobs.create_job(context.store, "sft", "b", {}), threading.Event(), 0)
    run_job(second, lambda _: JobResult(stopped_early=False))
    assert jobs.get_job(context.store, second.job_id).status == "succeeded"


def test_other_errors_name_their_type():
    assert explain(KeyError("images")) == "KeyError: 'images'"


def test_the_callback_records_progress_and_stops_at_the_end_of_a_step(context, tmp_path):
    callback = JobCallback(context.store, context.job_id, context.stop)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    state.max_steps, state.global_step = 10, 0
    callback.on_train_begin(args, state, control)
    state.global_step = 1
    callback.on_log(args, state, control, logs={"loss": 2.5, "kl": float("nan"), "note": "text"})
    callback.on_step_end(args, state, control)
    assert not control.should_training_stop
    context.stop.set()
    state.global_step = 2
    callback.on_step_end(args, state, control)
    assert control.should_training_stop and control.should_save and callback.stopped_early
    job = jobs.get_job(context.store, context.job_id)
    assert (job.status, job.step, job.max_steps) == ("running", 1, 10)
    assert job.metrics["last"] == {"loss": 2.5}  # NaN and text are not metrics
    history = jobs.metric_history(context.store, context.job_id)
    assert [(h.step, h.values) for h in history] == [(1, {"loss": 2.5})]
