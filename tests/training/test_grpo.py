"""GRPO through the episode loop: the taught tiny model, the local corpus, the rule judge, two steps."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.judge import JudgeConfig
from agent.loop import Budgets
from tests.training.helpers import write_questions
from traces.models import episodes, runs
from traces.store import open_store
from training.config import GRPOSettings
from training.grpo import train_grpo
from training.job import JobContext
from training.models import TrainingInputError
from training.teach import corpus_tools

# The taught model's answers to "who designed / which city" questions; judged against these, some rollouts of a
# group are right and others not, so the advantages are not all zero.
GOLDS = ["1950", "Paris", "Wren"]
BUDGETS = Budgets(max_turn_tokens=48, max_response_tokens=160, max_format_retries=1)


def grpo_settings(taught: Path, data: Path, out: Path, **overrides) -> GRPOSettings:
    values = dict(
        model=str(taught / "vlm"),
        data=str(data),
        output_dir=str(out),
        max_steps=2,
        num_generations=4,
        per_device_train_batch_size=4,
        gradient_checkpointing=False,
        save_steps=1000,
        temperature=1.2,
        learning_rate=1e-4,
        warmup_steps=0,
    )
    return GRPOSettings(**{**values, **overrides})


def test_two_grpo_steps_train_on_judged_episodes_and_record_them(taught_tiny, tmp_path):
    data = write_questions(taught_tiny, tmp_path, GOLDS)
    store = open_store(tmp_path / "traces.db")
    result = train_grpo(
        grpo_settings(taught_tiny, data, tmp_path / "out"),
        BUDGETS,
        corpus_tools(taught_tiny / "corpus.db"),
        JudgeConfig(judge="rule"),
        store=store,
    )
    assert result.steps == 2
    logged = {k for entry in result.log_history for k in entry}
    for metric in ("kl", "reward", "reward_std", "frac_reward_zero_std", "rewards/judge_reward/mean",
                   "rewards/format_reward/mean", "episodes/answered", "episodes/turns"):  # fmt: skip
        assert metric in logged, metric

    # Environment tokens are masked: what the policy sampled has no <information>; what the loop wrote has it.
    tok = result.rollouts.processor.tokenizer
    searched = [r for r in result.rollouts.last_results if r.finished.tool_calls > 0]
    assert searched
    for r in searched:
        t = r.trajectory
        sampled = tok.decode([i for i, m in zip(t.completion_ids, t.env_mask, strict=True) if m])
        written = tok.decode([i for i, m in zip(t.completion_ids, t.env_mask, strict=True) if not m])
        assert "<reason>" in sampled and "<information>" not in sampled and "<information>" in written

    # Every rollout episode is in the store, in a rollout run, with its step, verdict and the reward TRL used.
    with store.read() as conn:
        rows = conn.execute(
            select(episodes.c.train_step, episodes.c.verdict, episodes.c.format_ok, episodes.c.reward, runs.c.kind)
            .join(runs, runs.c.id == episodes.c.run_id)
            .where(episodes.c.run_id == result.run_id)
        ).all()
    assert len(rows) == 2 * 4 and {r.kind for r in rows} == {"rollout"}
    assert sorted({r.train_step for r in rows}) == [0, 1]
    for r in rows:
        assert r.verdict in ("correct", "incorrect")
        assert r.reward == pytest.approx(0.9 * (r.verdict == "correct") + 0.1 * bool(r.format_ok))
    # Advantages: reward minus the group mean (scale_rewards="none"); some group must have had a signal.
    by_group: dict[int, list[float]] = {}
    for r in rows:
        by_group.setdefault(r.train_step, []).append(r.reward)
    advantages = [x - sum(g) / len(g) for g in by_group.values() for x in g]
    assert any(abs(a) > 1e-6 for a in advantages), "every rollout got the same reward: nothing to learn from"
    assert (result.final_dir / "adapter_config.json").is_file()
    store.close()


def test_a_stop_request_ends_rollouts_mid_episode_and_training_after_the_step(taught_tiny, tmp_path):
    data = write_questions(taught_tiny, tmp_path, GOLDS, count=1)
    store = open_store(tmp_path / "traces.db")
    stop = threading.Event()
    stop.set()
    from training.callbacks import JobCallback

    callback = JobCallback(None, None, stop)
    result = train_grpo(
        grpo_settings(taught_tiny, data, tmp_path / "out", max_steps=5),
        BUDGETS,
        corpus_tools(taught_tiny / "corpus.db"),
        JudgeConfig(judge="rule"),
        store=store,
        context=JobContext(store, None, stop, 0),
        callbacks=[callback],
    )
    assert result.steps == 1 and result.stopped_early
    assert {r.finished.status for r in result.rollouts.last_results} == {"cancelled"}
    assert all(r.reward is None for r in result.rollouts.last_results)  # no reward: advantage 0
    assert (Path(result.output_dir) / "checkpoint-1").is_dir()  # the step it stopped at is saved
    store.close()


def test_questions_without_gold_answers_are_refused(taught_tiny, tmp_path):
    data = write_questions(taught_tiny, tmp_path, [])
    store = open_store(tmp_path / "traces.db")
    with pytest.raises(TrainingInputError, match="no question with a gold answer"):
        train_grpo(
            grpo_settings(taught_tiny, data, tmp_path / "out"),
            BUDGETS,
            corpus_tools(taught_tiny / "corpus.db"),
            JudgeConfig(judge="rule"),
            store=store,
        )
    store.close()


def test_a_judge_endpoint_that_is_down_stops_training_before_it_starts(taught_tiny, tmp_path):
    data = write_questions(taught_tiny, tmp_path, GOLDS)
    store = open_store(tmp_path / "traces.db")
    judge = JudgeConfig(
        judge="llm", judge_base_url="http://127.0.0.1:9/v1", judge_model="judge", judge_retries=0, judge_cache=""
    )
    with pytest.raises(TrainingInputError, match="the judge at http://127.0.0.1:9/v1 .*cannot judge"):
        train_grpo(
            grpo_settings(taught_tiny, data, tmp_path / "out"),
            BUDGETS,
            corpus_tools(taught_tiny / "corpus.db"),
            judge,
            store=store,
        )
    store.close()


def test_two_processes_under_torchrun_share_one_job_and_one_rollout_run(taught_tiny, tmp_path):
    """DDP on gloo: each rank rolls out its own prompts, rewards are gathered, both stop together."""
    import socket
    import subprocess
    import sys

    from traces.jobs import list_jobs

    data = write_questions(taught_tiny, tmp_path, GOLDS, count=4)
    db = tmp_path / "traces.db"
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
        "-m", "training", "grpo", "--model", str(taught_tiny / "vlm"), "--data", str(data),
        "--output", str(tmp_path / "out"), "--max-steps", "2", "--judge", "rule", "--text-search", "local",
        "--corpus", str(taught_tiny / "corpus.db"), "--summariser", "none", "--image-search", "off",
        "--grounding-model", "off", "--tool-cache", "", "--num-generations", "2",
        "--per-device-train-batch-size", "2", "--no-gradient-checkpointing", "--max-turn-tokens", "48",
        "--max-response-tokens", "160", "--save-steps", "1000", "--db", str(db),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    store = open_store(db)
    [job] = list_jobs(store)
    assert job.status == "succeeded" and job.step == 2
    with store.read() as conn:
        rows = conn.execute(select(episodes.c.run_id, episodes.c.train_step)).all()
    assert len(rows) == 2 * 2 * 2  # 2 steps x 2 ranks x 2 rollouts, in one run
    assert {r.run_id for r in rows} == {job.run_id}
    store.close()
