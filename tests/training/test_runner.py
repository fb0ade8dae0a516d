"""The job runner: launch a real training process, watch its progress, cancel it, and notice failures and deaths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.flags import config_from_args
from agent.judge import JudgeConfig
from agent.loop import Budgets
from agent.tools.config import ToolConfig
from tests.conftest import REPO
from tests.training.helpers import write_sft_file
from traces import jobs as job_rows
from traces.store import open_store
from training import runner
from training.__main__ import build_parser, main
from training.config import GRPOSettings, LaunchSettings, SFTSettings


def long_sft(model: Path, data: Path, out: Path, **overrides) -> SFTSettings:
    values = dict(
        model=str(model),
        data=str(data),
        output_dir=str(out),
        max_steps=400,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        gradient_checkpointing=False,
        max_length=2048,
        save_steps=1000,
    )
    return SFTSettings(**{**values, **overrides})


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def jobs_env(tmp_path):
    db = tmp_path / "traces.db"
    store = open_store(db)
    yield store, LaunchSettings(db=str(db), log_dir=str(tmp_path / "logs"))
    for job in runner.list_jobs(store):  # never leave a training process behind
        if job.status in ("queued", "running", "cancelling"):
            runner.cancel(store, job.id, grace_s=5)
    store.close()


def test_a_launched_job_reports_progress_and_stops_within_seconds_of_cancel(tiny_vlm_dir, tmp_path, jobs_env):
    store, launch = jobs_env
    settings = long_sft(tiny_vlm_dir, write_sft_file(tmp_path), tmp_path / "out")
    job_id = runner.launch("sft", [settings], launch, store=store)
    job = runner.get_job(store, job_id)
    assert job.pid and job.log_path and job.command[-2:] == ["--db", launch.db]
    assert job.config["SFTSettings"]["max_steps"] == 400

    job = wait_for(
        lambda: (j := runner.get_job(store, job_id)).status == "running" and (j.step or 0) >= 2 and j, 180, "steps"
    )
    assert job.max_steps == 400
    history = runner.metric_history(store, job_id)
    assert len(history) >= 2 and "loss" in history[0].values and history[0].step == 1

    started = time.monotonic()
    job = runner.cancel(store, job_id, grace_s=60)
    assert time.monotonic() - started < 30
    assert job.status == "cancelled" and job.error is None  # it stopped by itself at the end of a step
    assert list((tmp_path / "out").glob("checkpoint-*")), "a cancelled job keeps the step it stopped at"
    assert "job" in runner.log_tail(job) and "cancelled" in runner.log_tail(job)


def test_a_job_that_fails_is_recorded_as_failed_with_its_reason(tiny_vlm_dir, tmp_path, jobs_env):
    store, launch = jobs_env
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    job_id = runner.launch("sft", [long_sft(tiny_vlm_dir, bad, tmp_path / "out")], launch, store=store)
    job = wait_for(
        lambda: (j := runner.get_job(store, job_id)).status not in ("queued", "running") and j, 120, "failure"
    )
    assert job.status == "failed"
    assert "line 1: not JSON" in job.error
    assert "line 1: not JSON" in runner.log_tail(job)


def test_a_job_whose_process_died_is_found_interrupted(tiny_vlm_dir, tmp_path, jobs_env):
    store, launch = jobs_env
    job_id = runner.launch(
        "sft", [long_sft(tiny_vlm_dir, write_sft_file(tmp_path), tmp_path / "out")], launch, store=store
    )
    pid = runner.get_job(store, job_id).pid
    os.killpg(pid, signal.SIGKILL)  # the OOM killer, a reboot: nothing gets to report
    wait_for(lambda: not runner.process_alive(pid), 30, "the process to die")
    job = runner.list_jobs(store)[0]
    assert job.id == job_id and job.status == "interrupted"
    assert "exited without reporting" in job.error


def test_a_job_cancelled_while_it_starts_is_cancelled_not_interrupted(tiny_vlm_dir, tmp_path, jobs_env):
    store, launch = jobs_env
    job_id = runner.launch(
        "sft", [long_sft(tiny_vlm_dir, write_sft_file(tmp_path), tmp_path / "out")], launch, store=store
    )
    # At once: the child is still importing, before its SIGTERM handler exists, so SIGTERM simply ends it.
    job = runner.cancel(store, job_id, grace_s=30, wait=False)
    assert job.status == "cancelling"
    pid = job.pid
    wait_for(lambda: not runner.process_alive(pid), 60, "the process to end")
    job = runner.list_jobs(store)[0]  # a watcher (the Train tab) may see the dead process first
    assert job.id == job_id and job.status == "cancelled"


def test_a_process_reporting_it_runs_after_a_cancel_keeps_the_cancel(jobs_env):
    store, _ = jobs_env
    job_id = job_rows.create_job(store, "sft", "demo", {})
    assert job_rows.request_cancel(store, job_id)
    assert job_rows.update_job(store, job_id, status="running", step=1).status == "cancelling"
    job_rows.finish_job(store, job_id, "cancelled")
    assert job_rows.update_job(store, job_id, status="running").status == "cancelled"
    assert not job_rows.request_cancel(store, job_id)


def test_the_launch_command_rebuilds_the_same_settings(tmp_path):
    sft = SFTSettings(model="m", data="d.db", output_dir="o", runs=(3, 4), use_peft=False, learning_rate=2e-4)
    grpo = GRPOSettings(model="m", data="q.jsonl", output_dir="o", beta=0.0, vllm_server="http://h:8000")
    budgets, tools = Budgets(max_tool_calls=4), ToolConfig(text_search="local", corpus_path="c.db")
    judge = JudgeConfig(judge="rule", judge_prompt="reward")
    parser = build_parser()
    for kind, configs in (("sft", [sft]), ("grpo", [grpo, budgets, tools, judge])):
        argv = runner._training_argv(kind, configs, LaunchSettings(db=str(tmp_path / "t.db")))
        args = parser.parse_args(argv[argv.index("training") + 1 :])
        for config in configs:
            assert config_from_args(type(config), args, environ={}) == config
    preview = runner.preview_command("grpo", [grpo], LaunchSettings(num_processes=8, accelerate_config="zero3"))
    assert preview.startswith("accelerate launch --num_processes 8 --config_file ")
    assert "zero3.yaml -m training grpo" in preview and "--beta 0.0" in preview


def test_every_accelerate_config_is_there():
    for name in ("ddp", "zero2", "zero3", "fsdp"):
        assert LaunchSettings(accelerate_config=name).accelerate_config_path().is_file()


def test_the_cli_trains_lists_and_reports(tiny_vlm_dir, tmp_path, capsys):
    data = write_sft_file(tmp_path)
    db = tmp_path / "traces.db"
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        code = main(
            [
                "sft",
                "--model",
                str(tiny_vlm_dir),
                "--data",
                str(data),
                "--output",
                str(tmp_path / "out"),
                "--max-steps",
                "3",
                "--no-gradient-checkpointing",
                "--per-device-train-batch-size",
                "2",
                "--gradient-accumulation-steps",
                "1",
                "--max-length",
                "2048",
                "--db",
                str(db),
            ]  # fmt: skip
        )
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert code == 0
    assert "job 1: succeeded" in capsys.readouterr().out
    assert main(["jobs", "--db", str(db), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["status"] == "succeeded" and lines[0]["step"] == 3 and lines[0]["kind"] == "sft"
    assert main(["cancel", str(lines[0]["id"]), "--db", str(db)]) == 0  # a finished job stays as it was
    assert "succeeded" in capsys.readouterr().out


def test_bad_flags_are_one_line_errors(capsys):
    assert main(["sft", "--data", "x.jsonl", "--output", "o"]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_an_out_of_range_value_on_the_command_line_is_a_one_line_error():
    argv = ["sft", "--model", "m", "--data", "d.jsonl", "--output", "o", "--learning-rate", "-1"]
    done = subprocess.run([sys.executable, "-m", "training", *argv], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["error: --learning-rate must be above 0, not -1"]


def test_flags_use_trl_names():
    parser = build_parser()
    grpo = parser.parse_args(["grpo", "--max-steps", "2", "--num-generations", "4", "--learning-rate", "1e-6",
                              "--beta", "0.01", "--per-device-train-batch-size", "8"])  # fmt: skip
    assert (grpo.max_steps, grpo.num_generations, grpo.learning_rate, grpo.beta) == (2, 4, 1e-6, 0.01)
