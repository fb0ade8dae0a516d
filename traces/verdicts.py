"""The judge's verdict on an episode (eval harness, GRPO reward): written next to the episode's other fields."""

from __future__ import annotations

import time

from sqlalchemy import update

from traces.errors import NotFoundError
from traces.models import episodes
from traces.store import TraceStore


def set_verdict(
    store: TraceStore, episode_id: str, correct: bool | None, *, judge: str = "", score: float | None = None
) -> None:
    """Record the judge's verdict on an episode (None: no verdict)."""
    with store.write() as conn:
        done = conn.execute(
            update(episodes)
            .where(episodes.c.uid == episode_id)
            .values(correct=correct, judge=judge or None, judge_score=score, updated_at=time.time())
        )
        if done.rowcount == 0:
            raise NotFoundError(f"no episode {episode_id!r}")
