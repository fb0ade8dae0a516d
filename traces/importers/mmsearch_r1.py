"""MMSearch-R1 evaluation output -> a run of finished episodes.

MMSearch-R1's trainer in val-only mode (`trainer.val_only=True`, `trainer.val_only_save_dir=DIR`) writes
`DIR/val_result_{N}.json`: pandas `to_json(orient="records")` of its validation table, one record per sample
with `step`, `input_text` (the decoded prompt), `output_text` (the decoded multi-turn response: assistant turns
and the user turns carrying search results), `score` (the reward), and, when ground truth logging is on,
`reward_model` ({"ground_truth", "candidate_answers"}) and `image_url`.

Texts are `tokenizer.decode(ids, skip_special_tokens=True)`, so the chat markers are bare role lines. The prompt
is `system\n...\nuser\n<round-1 instructions>...Here is the image and the question:\n <question>\nassistant\n`
(the `<image>` before the question decodes to nothing). In the output, a search turn ends with its tag and the
results turn follows with no newline (`...</search>user\nSearched results: <information>...`), because the
rollout appends `<|im_start|>user\n...` straight after the model's `<|im_end|>`; `split_transcript` knows both.

The score is MMSearch-R1's reward (accuracy weighted 0.9 or more, format and search penalties the rest), so a
sample counts as correct when score > 0.5; the raw score is kept as the episode's reward.
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

if TYPE_CHECKING:
    from traces.store import TraceStore

CORRECT_ABOVE = 0.5


# Where the question starts in a user prompt: MMSearch-R1's round-1 prompt ends with the first marker (its
# rollout reads the question back the same way); our dialects' prompts end with "Question: ...".
QUESTION_MARKERS = ("Here is the image and the question:", "Question:")


def question_from_prompt(prompt_text: str) -> str:
    """The question inside a decoded prompt: the last user message's text after a question marker, else all of it."""
    segments = split_transcript(prompt_text, first_role="system")
    users = [content for role, content in segments if role == "user"] or [prompt_text]
    text = users[-1].replace("<image>", "").strip()
    for marker in QUESTION_MARKERS:
        head, found, question = text.rpartition(marker)
        if found and question.strip():
            return question.strip()
    return text


def parse_record(record: Any, number: int, dialect: str) -> ParsedEpisode:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    prompt, output = record.get("input_text"), record.get("output_text")
    if not isinstance(prompt, str) or not isinstance(output, str):
        raise ValueError("input_text and output_text must both be strings")
    question = question_from_prompt(prompt)
    if not question:
        raise ValueError("no question in input_text")
    turns = turns_from_messages(split_transcript(output), dialect)
    status, answer, fmt = outcome(turns)
    score = record.get("score")
    if score is not None and not isinstance(score, int | float):
        raise ValueError(f"score {score!r} is not a number")
    reward_model = record.get("reward_model") or {}
    gold = (
        gold_list(reward_model.get("ground_truth"), reward_model.get("candidate_answers"))
        if isinstance(reward_model, dict)
        else []
    )
    extra = {"prompt_text": prompt, "step": record.get("step")}
    if record.get("image_url"):
        extra["image_url"] = record["image_url"]
    return ParsedEpisode(
        question=question,
        source_row=number,
        gold_answers=gold,
        status=status,
        final_answer=answer,
        correct=None if score is None else float(score) > CORRECT_ABOVE,
        judge=None if score is None else "mmsearch-r1 score",
        reward=None if score is None else float(score),
        format_ok=fmt,
        extra=extra,
        turns=turns,
    )


def import_mmsearch_r1(
    store: TraceStore,
    path: str | os.PathLike[str],
    *,
    run_name: str | None = None,
    model: str | None = "lmms-lab/MMSearch-R1-7B",
    dialect: str = "mmsearch-r1",
    again: bool = False,
    progress: bool = False,
    **_: Any,
) -> ImportReport:
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot read as JSON ({exc}); nothing was imported") from None
    if not isinstance(records, list):
        raise ImportFileError(
            f"{path}: expected a JSON list of records (MMSearch-R1 val_result_*.json); nothing was imported"
        )
    log = ReadLog(rows=len(records))

    def parsed() -> Iterator[ParsedEpisode]:
        for number, record in enumerate(
            tqdm(records, desc=f"importing {path.name}", unit="row", disable=not progress), start=1
        ):
            try:
                yield parse_record(record, number, dialect)
            except (ValueError, TypeError, AttributeError) as exc:
                log.bad_rows.append(BadRow(number, str(exc)))

    return write_import(
        store,
        parsed(),
        log,
        importer="mmsearch-r1",
        files=[path],
        again=again,
        run_name=run_name or path.stem,
        run_kind="eval",
        source=str(path),
        model=model,
        dialect=dialect,
    )
