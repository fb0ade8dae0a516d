"""FVQA / veRL-layout parquet (lmms-lab/FVQA, MMSearch-R1's mini_data.pq) -> a question set of pending episodes.

Columns (the veRL RL-dataset layout): `prompt` (chat messages; the user message holds the question, possibly
with an `<image>` placeholder), `images` (list of {"bytes": ...}), `reward_model` ({"ground_truth", and
"candidate_answers" as a JSON list in a string}), optional `data_source` and `image_urls`. Rows become episodes
with status "pending": questions with image and gold answers, waiting to be run (the app's examples, eval sets).

`read_questions` is the one parser of this layout: the importer and the eval loader both read rows through it.
It streams the file in small record batches, so a 10,000-row file never sits in memory as Python objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
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
    gold_list,
    write_import,
)

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from traces.store import TraceStore

REQUIRED = ("prompt", "images", "reward_model")
OPTIONAL = ("data_source", "image_urls")
BATCH_ROWS = 64  # rows decoded at a time: bounds memory by 64 images, not by the file


@dataclass(frozen=True)
class QuestionRow:
    """One question of a FVQA/veRL question set, as the file has it (the image bytes are not decoded here)."""

    row: int  # 1-based row number in the file
    question: str
    image_bytes: bytes
    gold_answers: tuple[str, ...]  # ground truth first, then the candidate answers (aliases)
    data_source: str | None
    image_url: str | None


def question_from_messages(prompt: Any) -> str:
    """The question of a veRL-layout `prompt`: the last user message's text without `<image>` placeholders."""
    if isinstance(prompt, str):
        text = prompt
    else:
        users = [m for m in (prompt or []) if isinstance(m, dict) and m.get("role") == "user"]
        text = content_text(users[-1].get("content")) if users else ""
    return text.replace("<image>", "").strip()


def parse_question_row(row: dict[str, Any], number: int) -> QuestionRow:
    """One record of the file -> a QuestionRow, or ValueError/TypeError saying what is missing."""
    question = question_from_messages(row.get("prompt"))
    if not question:
        raise ValueError("no user question in `prompt`")
    images = row.get("images") or []
    first = images[0] if len(images) else None
    data = first.get("bytes") if isinstance(first, dict) else first if isinstance(first, bytes) else None
    if not data:
        raise ValueError("no image bytes in `images`")
    reward = row.get("reward_model") or {}
    if not isinstance(reward, dict) or reward.get("ground_truth") in (None, ""):
        raise ValueError("`reward_model` has no ground_truth")
    urls = row.get("image_urls")
    url = urls[0] if isinstance(urls, list) and urls else urls if isinstance(urls, str) else None
    return QuestionRow(
        row=number,
        question=question,
        image_bytes=bytes(data),
        gold_answers=tuple(gold_list(reward.get("ground_truth"), reward.get("candidate_answers"))),
        data_source=row.get("data_source"),
        image_url=url or None,
    )


def _open(path: Path) -> pq.ParquetFile:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise ImportFileError(f"{path}: cannot read as parquet ({exc}); nothing was imported") from None
    names = file.schema_arrow.names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ImportFileError(
            f"{path}: missing columns {missing} (found {names}); an FVQA/veRL question set needs "
            f"{list(REQUIRED)}. Nothing was imported."
        )
    return file


def read_questions(path: str | os.PathLike[str], *, progress: bool = False) -> Iterator[QuestionRow | BadRow]:
    """Stream a FVQA/veRL question set: a QuestionRow per usable row, a BadRow (number, reason) per other row.

    The file and its columns are checked now (ImportFileError); rows are read as the iterator is consumed.
    """
    path = Path(path)
    file = _open(path)
    columns = [c for c in (*REQUIRED, *OPTIONAL) if c in file.schema_arrow.names]

    def rows() -> Iterator[QuestionRow | BadRow]:
        number = 0
        with tqdm(total=file.metadata.num_rows, desc=f"reading {path.name}", unit="row", disable=not progress) as bar:
            for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                for record in batch.to_pylist():
                    number += 1
                    try:
                        yield parse_question_row(record, number)
                    except (ValueError, TypeError, AttributeError) as exc:
                        yield BadRow(number, str(exc))
                bar.update(batch.num_rows)

    return rows()


def import_fvqa(
    store: TraceStore,
    path: str | os.PathLike[str],
    *,
    run_name: str | None = None,
    again: bool = False,
    progress: bool = False,
    **_: Any,
) -> ImportReport:
    path = Path(path)
    # Checks the file now: one that is not a question set fails before the store is touched.
    questions = read_questions(path, progress=progress)
    log = ReadLog()

    def parsed() -> Iterator[ParsedEpisode]:
        for item in questions:
            log.rows += 1
            if isinstance(item, BadRow):
                log.bad_rows.append(item)
                continue
            yield ParsedEpisode(
                question=item.question,
                source_row=item.row,
                image_bytes=item.image_bytes,  # a broken image becomes a bad row in the write
                gold_answers=list(item.gold_answers),
                dataset=item.data_source,
                status="pending",
                extra={"image_url": item.image_url} if item.image_url else {},
            )

    return write_import(
        store,
        parsed(),
        log,
        importer="fvqa",
        files=[path],
        again=again,
        run_name=run_name or path.stem,
        run_kind="questions",
        source=str(path),
    )
