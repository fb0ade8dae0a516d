"""veRL rollout dumps -> a run of rollout episodes.

With `trainer.rollout_data_dir=DIR` (and `validation_data_dir` for eval) veRL's `_dump_generations` writes
`DIR/{step}.jsonl`: one JSON object per line with `input` (decoded prompt), `output` (decoded response, all turns),
`score` (the reward), `step`, optionally `gts` (ground truth), plus one key per reward extra info (e.g. `acc`).
An `acc` key, when present, is the correctness verdict; the score is kept as the reward either way.
Give one file or a directory (all `*.jsonl` in it, in step order). Bad lines are reported as `file:line`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from traces.importers.common import (
    BadRow,
    ImportFileError,
    ImportReport,
    ParsedEpisode,
    ReadLog,
    gold_list,
    outcome,
    split_transcript,
    turns_from_messages,
    write_import,
)
from traces.importers.mmsearch_r1 import question_from_prompt

if TYPE_CHECKING:
    from traces.store import TraceStore

KNOWN = {"input", "output", "score", "step", "gts"}


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            path.glob("*.jsonl"), key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.name)
        )
        if not files:
            raise ImportFileError(f"{path}: no *.jsonl files (veRL writes {{step}}.jsonl); nothing was imported")
        return files
    if not path.exists():
        raise ImportFileError(f"{path}: no such file; nothing was imported")
    return [path]


def parse_line(obj: Any, number: int, dialect: str) -> ParsedEpisode:
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("input", "output") if k not in obj]
    if missing:
        raise ValueError(f"missing keys {missing}")
    if not isinstance(obj["input"], str) or not isinstance(obj["output"], str):
        raise ValueError("input and output must be strings")
    question = question_from_prompt(obj["input"])
    turns = turns_from_messages(split_transcript(obj["output"]), dialect)
    status, answer, fmt = outcome(turns)
    score = obj.get("score")
    if score is not None and not isinstance(score, int | float):
        raise ValueError(f"score {score!r} is not a number")
    acc = obj.get("acc")
    extras = {k: v for k, v in obj.items() if k not in KNOWN}
    return ParsedEpisode(
        question=question,
        source_row=number,
        gold_answers=gold_list(obj.get("gts")),
        status=status,
        final_answer=answer,
        correct=None if acc is None else bool(float(acc) > 0.5),
        judge=None if acc is None else "verl acc",
        reward=None if score is None else float(score),
        format_ok=fmt,
        extra={"prompt_text": obj["input"], "step": obj.get("step"), "reward_extra": extras},
        turns=turns,
    )


def import_verl_rollouts(
    store: TraceStore,
    path: str | os.PathLike[str],
    *,
    run_name: str | None = None,
    model: str | None = None,
    dialect: str = "deepmmsearch",
    again: bool = False,
    progress: bool = False,
    **_: Any,
) -> ImportReport:
    path = Path(path)
    files = _files(path)
    log = ReadLog()

    def parsed() -> Iterator[ParsedEpisode]:
        for file in files:
            try:
                with file.open(encoding="utf-8") as f:
                    for number, line in enumerate(
                        tqdm(f, desc=f"importing {file.name}", unit="line", disable=not progress), start=1
                    ):
                        if not line.strip():
                            continue
                        log.rows += 1
                        try:
                            episode = parse_line(json.loads(line), number, dialect)
                        except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
                            log.bad_rows.append(
                                BadRow(number, f"{file.name}:{number}: {exc}" if len(files) > 1 else str(exc))
                            )
                            continue
                        episode.extra["file"] = file.name
                        yield episode
            except (OSError, UnicodeDecodeError) as exc:  # the transaction rolls back: nothing was written
                raise ImportFileError(f"{file}: cannot read ({exc}); nothing was imported") from None

    return write_import(
        store,
        parsed(),
        log,
        importer="verl",
        files=files,
        again=again,
        run_name=run_name or f"verl {path.name}",
        run_kind="rollout",
        source=str(path),
        model=model,
        dialect=dialect,
    )
