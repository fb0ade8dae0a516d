"""Eval jobs through the job runner (the Train tab's Launch): `python -m agent eval --job-id N` in its own process
against a scripted endpoint keeps its row current (run, progress, accuracy so far) and stops on cancel."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image

from agent.config import ModelConfig
from agent.eval import EvalConfig
from agent.judge import JudgeConfig
from agent.loop import Budgets
from agent.tools.config import ToolConfig
from tests.servers.chat_completions import scripted_chat_server
from traces.queries import get_run
from traces.store import open_store
from training import runner
from training.config import LaunchSettings

QUESTIONS = 6


def question_set(directory: Path) -> Path:
    Image.new("RGB", (32, 24), "red").save(directory / "red.png")
    path = directory / "questions.jsonl"
    with path.open("w") as f:
        for n in range(QUESTIONS):
            f.write(
                json.dumps({"question": f"What colour is thing {n}?", "image": "red.png", "answers": ["red"]}) + "\n"
            )
    return path


def answers(body: dict) -> str:
    """Right ("red") on even-numbered questions, wrong on odd ones."""
    content = body["messages"][1]["content"]
    text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    n = int(text.split("thing ", 1)[1].split("?", 1)[0])
    return "<reason>I can see it.</reason><answer>" + ("red" if n % 2 == 0 else "blue") + "</answer>"


def configs(data: Path, db: Path, base_url: str, *, concurrency: int = 2) -> list[object]:
    return [
        EvalConfig(data=str(data), db=str(db), progress=False, concurrency=concurrency, run_name="job eval"),
        ModelConfig(backend="openai", model="scripted-model", base_url=base_url),
        Budgets(),
        ToolConfig(text_search="off", image_search="off", summariser="none", grounding_model="off", cache_path=""),
        JudgeConfig(judge="rule"),
    ]


def wait_final(store, job_id: int, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = runner.get_job(store, job_id)
        if job.status in ("succeeded", "failed", "cancelled", "interrupted"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status}: {runner.log_tail(job)[-2000:]}")


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "traces.db") as s:
        yield s


def test_an_eval_job_records_its_run_progress_and_accuracy_so_far(store, tmp_path):
    data = question_set(tmp_path)
    with scripted_chat_server(answers) as chat:
        launch = LaunchSettings(db=str(tmp_path / "traces.db"), log_dir=str(tmp_path / "logs"))
        command = runner.preview_command("eval", configs(data, tmp_path / "traces.db", chat.base_url), launch)
        assert command.startswith("python -m agent eval --data ") and "--judge rule" in command
        job_id = runner.launch(
            "eval", configs(data, tmp_path / "traces.db", chat.base_url), launch, store=store, launched_by="alice"
        )
        job = wait_final(store, job_id)
    assert job.status == "succeeded", runner.log_tail(job)
    assert (job.kind, job.launched_by, job.step, job.max_steps) == ("eval", "alice", QUESTIONS, QUESTIONS)
    assert job.name == "eval scripted-model on questions.jsonl"
    assert get_run(store, job.run_id).name == "job eval" and get_run(store, job.run_id).episodes == QUESTIONS
    history = runner.metric_history(store, job_id)
    assert history[-1].step == QUESTIONS and history[-1].values["accuracy"] == pytest.approx(0.5)
    assert history[-1].values["judged"] == QUESTIONS


def test_cancelling_an_eval_job_stops_it_and_keeps_finished_episodes(store, tmp_path):
    data = question_set(tmp_path)
    slow = "<reason>" + " ".join(f"w{i}" for i in range(150)) + "</reason><answer>red</answer>"
    with scripted_chat_server([slow], token_delay_s=0.02) as chat:  # 3 s per episode
        launch = LaunchSettings(db=str(tmp_path / "traces.db"), log_dir=str(tmp_path / "logs"))
        job_id = runner.launch(
            "eval", configs(data, tmp_path / "traces.db", chat.base_url, concurrency=1), launch, store=store
        )
        deadline = time.monotonic() + 60
        while runner.get_job(store, job_id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        start = time.monotonic()
        job = runner.cancel(store, job_id, grace_s=20)
    assert job.status == "cancelled" and "stopped by request" in (job.error or ""), runner.log_tail(job)
    assert time.monotonic() - start < 15
    assert "interrupted" in runner.log_tail(job)
    assert (job.step or 0) < QUESTIONS
