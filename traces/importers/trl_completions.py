"""TRL GRPO completion logs -> a run of rollout episodes.

With `GRPOConfig(log_completions=True)` TRL 1.16 writes `OUTPUT_DIR/completions/completions_{step:05d}.parquet`
at each logging step (`GRPOTrainer.log`): a pandas DataFrame of `step`, `prompt`, `completion` (strings, or chat
messages with images stripped to {"type": "image"}), one column per reward function (named after it), one
column per value a reward function logged with `log_extra(column, values)` (text, numbers or None), then
`advantage`. The file does not say which of the middle columns are rewards, so:
- reward columns are those named with `reward_columns` (`--reward-columns`); when none are named, the reward
  names TRL logged in a checkpoint's `trainer_state.json` beside the completions folder (`rewards/<name>/mean`);
  when there is none either, every middle column is kept as an extra and the report says how to name them.
- every other middle column is kept as it is in `extra["extras"]`: a text or missing value never fails a row.
- the episode's reward is the sum of its reward columns (TRL does not log the weights; NaN, which TRL logs where
  a reward function did not apply, is left out); each is kept in `extra["rewards"]`.
- `correct_column` names a column that is a 0/1 accuracy (e.g. your judge reward): above 0.5 is correct.

TRL keeps the last generation batch in a deque and writes all of it at every logging step, so with
`steps_per_generation > 1` (or `num_iterations > 1`) the same completions are written again under later step
numbers. Rows that repeat, value for value apart from `step`, a row of the previous file are stored once (with
every step that logged them in `extra["logged_steps"]`). Give one file or the completions directory.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from traces.importers.common import (
    BadRow,
    ImportFileError,
    ImportReport,
    ParsedEpisode,
    ReadLog,
    content_text,
    json_value,
    outcome,
    split_transcript,
    turns_from_messages,
    write_import,
)
from traces.importers.mmsearch_r1 import question_from_prompt

if TYPE_CHECKING:
    from traces.store import TraceStore

REQUIRED = ("step", "prompt", "completion")
NOT_LOGGED_VALUES = {"step", "prompt", "completion", "advantage"}
_STEP = re.compile(r"(\d+)")
_REWARD_METRIC = re.compile(r"^(?:eval_)?rewards/(.+)/mean$")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = list(path.glob("completions_*.parquet")) or list(path.glob("*.parquet"))
        if not files:
            raise ImportFileError(f"{path}: no completions_*.parquet files; nothing was imported")
        # By step number: past step 99999 the zero-padded names no longer sort as text.
        return sorted(files, key=lambda f: (int(m.group(1)) if (m := _STEP.search(f.stem)) else -1, f.name))
    if not path.exists():
        raise ImportFileError(f"{path}: no such file; nothing was imported")
    return [path]


def logged_reward_names(path: Path) -> tuple[list[str], Path | None]:
    """Reward function names from the newest `checkpoint-*/trainer_state.json` of the run the logs belong to.

    TRL logs each reward function's mean as `rewards/<name>/mean`; the checkpoints sit beside `completions/`.
    """
    output_dir = (path if path.is_dir() else path.parent).parent
    states = sorted(
        output_dir.glob("checkpoint-*/trainer_state.json"),
        key=lambda p: int(m.group(1)) if (m := _STEP.search(p.parent.name)) else -1,
    )
    for state in reversed(states):
        try:
            history = json.loads(state.read_text(encoding="utf-8")).get("log_history") or []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        names: list[str] = []
        for entry in history:
            for key in entry if isinstance(entry, dict) else ():
                if (m := _REWARD_METRIC.match(key)) and m.group(1) not in names:
                    names.append(m.group(1))
        if names:
            return names, state
    return [], None


def _messages(value: Any) -> list[dict[str, Any]] | None:
    if value is None or isinstance(value, str):
        return None
    return [m for m in value if isinstance(m, dict)]


def _question(prompt: Any) -> str:
    messages = _messages(prompt)
    if messages is None:
        return question_from_prompt(prompt or "")
    users = [m for m in messages if m.get("role") == "user"]
    return question_from_prompt(content_text(users[0].get("content"))) if users else ""


def _number(value: Any) -> float | None:
    """A logged value as a number, or None when it is missing, NaN or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def parse_row(
    row: dict[str, Any], number: int, dialect: str, reward_columns: Sequence[str], correct_column: str | None
) -> ParsedEpisode:
    question = _question(row.get("prompt"))
    if not question:
        raise ValueError("no user question in `prompt`")
    completion = row.get("completion")
    messages = _messages(completion)
    if messages is None:
        if not isinstance(completion, str):
            raise ValueError("`completion` is neither text nor chat messages")
        segments = split_transcript(completion)
    else:
        segments = [(str(m.get("role")), content_text(m.get("content"))) for m in messages]
    turns = turns_from_messages(segments, dialect)
    status, answer, fmt = outcome(turns)
    rewards = {}
    for c in reward_columns:
        v = row.get(c)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue  # TRL logs NaN where a reward function did not apply
        if _number(v) is None:
            raise ValueError(f"reward column {c!r} holds {v!r}, not a number")
        rewards[c] = float(v)
    extras = {c: json_value(v) for c, v in row.items() if c not in NOT_LOGGED_VALUES and c not in reward_columns}
    accuracy = _number(row.get(correct_column)) if correct_column is not None else None
    correct = None if accuracy is None else accuracy > 0.5
    return ParsedEpisode(
        question=question,
        source_row=number,
        status=status,
        final_answer=answer,
        correct=correct,
        judge=correct_column if correct is not None else None,
        reward=sum(rewards.values()) if rewards else None,
        format_ok=fmt,
        extra={
            "step": row.get("step"),
            "logged_steps": [row.get("step")],
            "rewards": rewards,
            "extras": extras,
            "advantage": _number(row.get("advantage")),
        },
        turns=turns,
    )


def _row_key(row: dict[str, Any]) -> str:
    """Everything TRL logged for a completion except the step it was logged at."""
    return json.dumps({k: v for k, v in row.items() if k != "step"}, sort_keys=True, default=str)


def import_trl_completions(
    store: TraceStore,
    path: str | os.PathLike[str],
    *,
    run_name: str | None = None,
    model: str | None = None,
    dialect: str = "deepmmsearch",
    reward_columns: Sequence[str] | None = None,
    correct_column: str | None = None,
    again: bool = False,
    progress: bool = False,
    **_: Any,
) -> ImportReport:
    import pyarrow.parquet as pq

    path = Path(path)
    files = _files(path)
    tables = []
    for file in files:
        try:
            table = pq.read_table(file)
        except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
            raise ImportFileError(f"{file}: cannot read as parquet ({exc}); nothing was imported") from None
        missing = [c for c in REQUIRED if c not in table.column_names]
        if missing:
            raise ImportFileError(
                f"{file}: missing columns {missing} (found {table.column_names}); nothing was imported"
            )
        tables.append((file, table))
    logged = list(dict.fromkeys(c for _, t in tables for c in t.column_names if c not in NOT_LOGGED_VALUES))
    log = ReadLog()
    if reward_columns:
        unknown = [c for c in reward_columns if c not in logged]
        if unknown:
            raise ImportFileError(f"{path}: no columns {unknown} (logged values: {logged}); nothing was imported")
        rewards = list(reward_columns)
        log.notes.append(f"reward columns: {', '.join(rewards)}")
    else:
        names, state = logged_reward_names(path)
        rewards = [c for c in names if c in logged]
        if rewards:
            log.notes.append(f"reward columns: {', '.join(rewards)} (the reward functions logged in {state})")
    extras = [c for c in logged if c not in rewards]
    if extras:
        log.notes.append(f"kept as extras: {', '.join(extras)}")
    if not rewards and extras:
        log.notes.append(
            "TRL's file does not say which columns are rewards: no episode has a reward; "
            "name them with --reward-columns to set it"
        )
    if correct_column is not None and correct_column not in logged:
        raise ImportFileError(f"{path}: no column {correct_column!r} (logged values: {logged}); nothing was imported")

    parsed: list[ParsedEpisode] = []
    # The previous file's rows, which TRL may have logged again: the episode each became, by content and in order
    # (None for a bad row, reported once). A repeat takes the first one left.
    previous: dict[str, list[ParsedEpisode | None]] = {}
    repeats = 0
    for file, table in tables:
        rows: dict[str, list[ParsedEpisode | None]] = {}
        for row in tqdm(table.to_pylist(), desc=f"importing {file.name}", unit="row", disable=not progress):
            log.rows += 1
            key = _row_key(row)
            episode: ParsedEpisode | None
            if previous.get(key):  # the same completion, logged again at a later step
                episode = previous[key].pop(0)
                if episode is not None:
                    episode.extra["logged_steps"].append(row.get("step"))
                repeats += 1
            else:
                try:
                    episode = parse_row(row, log.rows, dialect, rewards, correct_column)
                    episode.extra["file"] = file.name
                    parsed.append(episode)
                except (ValueError, TypeError, AttributeError) as exc:
                    log.bad_rows.append(BadRow(log.rows, f"{file.name}: {exc}"))
                    episode = None
            rows.setdefault(key, []).append(episode)
        previous = rows
    if repeats:
        log.notes.append(
            f"{repeats} rows were completions logged again at a later step (steps_per_generation or "
            "num_iterations > 1): each is stored once"
        )
    return write_import(
        store,
        iter(parsed),
        log,
        importer="trl",
        files=files,
        again=again,
        run_name=run_name or f"trl {path.name}",
        run_kind="rollout",
        source=str(path),
        model=model,
        dialect=dialect,
        config={"reward_columns": rewards},
    )
