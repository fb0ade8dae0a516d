"""The judge's verdict on an episode (eval harness, GRPO reward): written next to the episode's other fields."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update

from traces.errors import NotFoundError
from traces.models import episodes
from traces.store import TraceStore


def _update_episode(store: TraceStore, episode_id: str, **values: Any) -> None:
    with store.write() as conn:
        done = conn.execute(
            update(episodes).where(episodes.c.uid == episode_id).values(updated_at=time.time(), **values)
        )
        if done.rowcount == 0:
            raise NotFoundError(f"no episode {episode_id!r}")


def set_judgement(store: TraceStore, episode_id: str, verdict: str, reason: str, judge: str) -> None:
    """Record an agent.judge Judgement's fields: `verdict` (correct | incorrect | unknown), the judge's reason and
    name. `correct` and `judge_score` follow the verdict (None for unknown), so filters on either agree."""
    if verdict not in ("correct", "incorrect", "unknown"):
        raise ValueError(f"verdict must be correct, incorrect or unknown, not {verdict!r}")
    correct = {"correct": True, "incorrect": False}.get(verdict)
    _update_episode(
        store,
        episode_id,
        verdict=verdict,
        judge_reason=reason,
        judge=judge or None,
        correct=correct,
        judge_score=None if correct is None else float(correct),
    )


def set_reward(store: TraceStore, episode_id: str, reward: float | None, *, train_step: int | None = None) -> None:
    """A GRPO rollout's reward (the weighted judge and format scores TRL trains on, before the group mean; None
    when the judge could not decide) and the training step that produced the episode."""
    _update_episode(store, episode_id, reward=reward, train_step=train_step)
