"""Question sets for `python -m agent eval`: FVQA/veRL parquet, JSONL, a question set in the store, a hub dataset.

    questions = load_question_set("path/to/fvqa_mini.parquet", limit=100)
    run_eval(questions.items, ...)

- A parquet in the veRL layout (`lmms-lab/FVQA`, MMSearch-R1's data) is streamed by the FVQA importer's own
  parser (`read_questions`): question, image bytes, gold answers (ground truth first, then `candidate_answers`).
- JSONL: one `{"question": ..., "image": ..., "answers": [...]}` per line; `image` is a path (relative to the
  file), an http(s) URL, or null for a text-only question; `answers` a list or one string.
- A run in the trace store, by name (a question set imported with `python -m traces import fvqa`, or any run).
- A Hugging Face dataset id, loaded with `datasets.load_dataset` (needs hub access). The rows go through the
  same parser as the parquet; tests run this path offline with the `parquet` builder on a local file.

Missing columns are a `QuestionSetError` that names them, raised before anything runs. An image that is broken,
or a JSONL path or URL that cannot be read, still makes an item: the eval records it as an error episode and goes
on. Rows the FVQA parser refuses (no question, no image bytes, no ground truth) are skipped and listed in
`skipped`. Items are keyed by content (agent.eval.item_key), so the same question is the same item whichever
file, format or order it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agent.eval import EvalItem, ImageSource, keyed
from traces.importers.common import BadRow, ImportFileError, JsonLinesError, gold_list, json_objects
from traces.importers.fvqa import REQUIRED as FVQA_COLUMNS
from traces.importers.fvqa import QuestionRow, parse_question_row, read_questions
from traces.models import episodes, images, runs
from traces.store import TraceStore

JSONL_KEYS = ("question", "image", "answers")
Row = tuple[str, ImageSource, tuple[str, ...], str | None, int | None]


class QuestionSetError(ValueError):
    """The question set cannot be used as a whole (missing columns, unreadable file). Nothing was run."""


@dataclass(frozen=True)
class QuestionSet:
    name: str  # for the default run name and the report
    source: str  # what was read (a path, a run, a hub id)
    items: tuple[EvalItem, ...]
    skipped: tuple[str, ...] = ()  # "row N: why"


def load_question_set(
    spec: str,
    *,
    store: TraceStore | None = None,
    split: str = "test",
    limit: int | None = None,
    data_sources: Sequence[str] = (),
) -> QuestionSet:
    """Read `spec` (a .parquet or .jsonl path, a run name in `store`, or a hub dataset id); filter and limit."""
    if not spec:
        raise QuestionSetError("no question set: give --data PATH.parquet|PATH.jsonl|RUN_NAME|HF_DATASET_ID")
    path = Path(spec)
    if path.suffix in (".parquet", ".pq"):
        if not path.exists():
            raise QuestionSetError(f"{spec}: no such file")
        rows, skipped = _parquet_rows(path)
        return _finish(path.stem, str(path), rows, skipped, limit, data_sources)
    if path.suffix in (".jsonl", ".json"):
        if not path.exists():
            raise QuestionSetError(f"{spec}: no such file")
        rows, skipped = _jsonl_rows(path)
        return _finish(path.stem, str(path), rows, skipped, limit, data_sources)
    if store is not None:
        run_id = _run_by_name(store, spec)
        if run_id is not None:
            rows, skipped = _store_rows(store, run_id)
            return _finish(spec, f"run {run_id} ({spec})", rows, skipped, limit, data_sources, keep_keys=True)
    if path.exists():
        raise QuestionSetError(f"{spec}: not a question set this reads (.parquet, .jsonl, a run name or a hub id)")
    rows, skipped = hub_rows(spec, split=split)
    return _finish(spec.replace("/", "_") + f"_{split}", f"{spec} [{split}]", rows, skipped, limit, data_sources)


def _finish(
    name: str,
    source: str,
    rows: Iterable[Row | EvalItem],
    skipped: list[str],
    limit: int | None,
    data_sources: Sequence[str],
    *,
    keep_keys: bool = False,
) -> QuestionSet:
    wanted = set(data_sources)
    kept: list[Any] = []
    for row in rows:
        source_of = row.data_source if isinstance(row, EvalItem) else row[3]
        if wanted and source_of not in wanted:
            continue
        if limit is not None and len(kept) >= limit:
            break
        kept.append(row)
    items = kept if keep_keys else keyed(kept)
    return QuestionSet(name, source, tuple(items), tuple(skipped))


# ---- veRL / FVQA rows (parquet and hub): the FVQA importer's parser ----------------------------------------


def _rows_of(parsed: Iterable[QuestionRow | BadRow], skipped: list[str]) -> Iterator[Row]:
    for row in parsed:
        if isinstance(row, BadRow):
            skipped.append(str(row))
            continue
        yield row.question, row.image_bytes, row.gold_answers, row.data_source, row.row


def _nothing_run(exc: ImportFileError) -> QuestionSetError:
    return QuestionSetError(str(exc).replace("othing was imported", "othing was run"))


def _parquet_rows(path: Path) -> tuple[Iterator[Row], list[str]]:
    skipped: list[str] = []
    try:
        parsed = read_questions(path)  # checks the file and its columns now; streams rows in small batches
    except ImportFileError as exc:
        raise _nothing_run(exc) from None
    return _rows_of(parsed, skipped), skipped


def hub_rows(
    dataset_id: str, *, split: str = "test", data_files: str | Sequence[str] | None = None
) -> tuple[Iterator[Row], list[str]]:
    """Rows of `datasets.load_dataset(dataset_id, split=...)` through the FVQA parser; images kept as bytes."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split, data_files=data_files)
    except Exception as exc:  # the hub, the network and the builders raise many unrelated types
        raise QuestionSetError(
            f"cannot load dataset {dataset_id!r} split {split!r} with datasets.load_dataset "
            f"({type(exc).__name__}: {str(exc)[:300]}); check the id, the split and your hub access. Nothing was run."
        ) from None
    missing = [c for c in FVQA_COLUMNS if c not in ds.column_names]
    if missing:
        raise QuestionSetError(
            f"dataset {dataset_id} [{split}]: missing columns {missing} (found {ds.column_names}); a FVQA/veRL "
            f"question set needs {list(FVQA_COLUMNS)}. Nothing was run."
        )
    inner = getattr(ds.features["images"], "feature", None)
    if isinstance(inner, datasets.Image) and inner.decode:
        # Undecoded images keep their original bytes: the same content key as the parquet path, and no PIL work.
        ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))

    def parsed() -> Iterator[QuestionRow | BadRow]:
        for number, record in enumerate(ds, start=1):
            try:
                yield parse_question_row(record, number)
            except (ValueError, TypeError, AttributeError) as exc:
                yield BadRow(number, str(exc))

    skipped: list[str] = []
    return _rows_of(parsed(), skipped), skipped


# ---- JSONL ------------------------------------------------------------------------------------------------


def _jsonl_rows(path: Path) -> tuple[Iterator[Row], list[str]]:
    rows: list[Row] = []
    skipped: list[str] = []
    missing: dict[str, list[int]] = {}
    try:
        records = json_objects(path)
    except JsonLinesError as exc:
        raise QuestionSetError(f"{exc}; nothing was run") from None
    for number, record in records:
        absent = [k for k in JSONL_KEYS if k not in record]
        for key in absent:
            missing.setdefault(key, []).append(number)
        if absent:
            continue
        question = str(record["question"] or "").strip()
        if not question:
            skipped.append(f"line {number}: empty question")
            continue
        image = record["image"]
        if isinstance(image, str) and image and not image.startswith(("http://", "https://")):
            image_path = Path(image)
            image = str(image_path if image_path.is_absolute() else path.parent / image_path)
        answers = record["answers"]
        golds = tuple(gold_list(answers))
        source = record.get("data_source")
        rows.append((question, image or None, golds, str(source) if source else None, number))
    if missing:
        named = ", ".join(f"{k!r} (lines {_lines(v)})" for k, v in missing.items())
        raise QuestionSetError(f"{path}: missing keys {named}; every line needs {list(JSONL_KEYS)}. Nothing was run.")
    return iter(rows), skipped


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


# ---- a question set in the store --------------------------------------------------------------------------


def _run_by_name(store: TraceStore, name: str) -> int | None:
    with store.read() as conn:
        row = conn.execute(select(runs.c.id).where(runs.c.name == name).order_by(runs.c.id.desc()).limit(1)).first()
    return int(row.id) if row else None


def _store_rows(store: TraceStore, run_id: int) -> tuple[list[EvalItem], list[str]]:
    """The run's questions with their images and gold answers; keyed by their item_key, or by content."""
    e = episodes.c
    with store.read() as conn:
        rows = conn.execute(
            select(e.question, images.c.data, e.gold_answers, e.dataset, e.item_key, e.source_row)
            .outerjoin(images, images.c.sha256 == e.image_sha256)
            .where(e.run_id == run_id)
            .order_by(e.id)
        ).all()
    plain: list[Row] = []
    keys: list[str | None] = []
    for number, r in enumerate(rows, start=1):
        image = bytes(r.data) if r.data is not None else None
        plain.append((r.question, image, tuple(r.gold_answers or ()), r.dataset, r.source_row or number))
        keys.append(r.item_key)
    return [item if key is None else replace(item, key=key) for item, key in zip(keyed(plain), keys, strict=True)], []
