"""GRPO rewards: 0.9 x the judge's verdict + 0.1 x the format check (paper), as two TRL reward functions.

The judging itself happens in the rollout (`training.rollout`), as each episode finishes, so that judge calls
overlap the generation of the other episodes. The rollout hands TRL two per-row fields and these functions read
them; TRL weights them with `reward_weights` (`GRPOSettings.judge_weight`, `format_weight`), subtracts the group
mean and logs `rewards/judge_reward/mean`, `rewards/format_reward/mean` and their std.

A row the judge could not decide (endpoint down, unparseable reply) or whose episode failed carries None in
both fields: TRL then treats it as unscorable and gives it advantage 0, instead of a format-only reward that
would teach the model something about a judgement nobody made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def episode_reward(judge_score: float | None, format_score: float | None, weights: tuple[float, float]) -> float | None:
    """The scalar TRL computes for a row (before the group mean): what the trace store records as `reward`."""
    if judge_score is None:
        return None
    return weights[0] * judge_score + weights[1] * (format_score or 0.0)


def judge_reward(
    completions: list[Any],
    judge_score: list[float | None],
    status: list[str] | None = None,
    turns: list[int] | None = None,
    tool_calls: list[int] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **_: Any,
) -> list[float | None]:
    """1 when the judge found the answer matches a gold answer, 0 when not, None when it could not decide.

    Also logs what the batch's episodes did, through TRL's `log_metric`: `episodes/answered` (share that gave an
    answer), `episodes/unjudged` (share without a verdict), `episodes/turns` and `episodes/tool_calls` (means)."""
    if log_metric is not None and judge_score:
        n = len(judge_score)
        log_metric("episodes/unjudged", sum(s is None for s in judge_score) / n)
        if status is not None:
            log_metric("episodes/answered", sum(s == "answered" for s in status) / n)
        if turns is not None:
            log_metric("episodes/turns", sum(turns) / n)
        if tool_calls is not None:
            log_metric("episodes/tool_calls", sum(tool_calls) / n)
    return list(judge_score)


def format_reward(completions: list[Any], format_score: list[float | None], **_: Any) -> list[float | None]:
    """1 when every turn followed the tag schema and the episode answered (s_fmt), else 0."""
    return list(format_score)


REWARD_FUNCS = (judge_reward, format_reward)  # in the order of GRPOSettings.reward_weights
