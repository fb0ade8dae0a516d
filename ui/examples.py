"""Example questions for the Ask tab: questions with their image and gold answers.

By default they come from the question sets in the trace store (`python -m traces import fvqa FILE.parquet`
makes one: a run of kind "questions"), newest set first. `--examples` names one instead: a question set in the
store by its run name, or a FVQA/veRL parquet read with the FVQA importer's own parser
(`traces.importers.fvqa.read_questions`). Gradio examples reference files, so each image is written once to a
cache folder, named by its content. With none, the Ask tab shows `no_examples_hint()`.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from PIL import Image

from traces.errors import NotFoundError
from traces.importers.common import BadRow, ImportFileError
from traces.importers.fvqa import read_questions
from traces.queries import EpisodeFilter, list_episodes, list_runs, load_episode
from traces.records import RunRecord
from traces.store import TraceStore

log = logging.getLogger(__name__)

QUESTION_SET_KIND = "questions"  # the run kind importers give a question set (traces.importers.fvqa)
NO_EXAMPLES = ("", "none", "off")


@dataclass(frozen=True)
class Example:
    question: str
    image_path: str
    gold_answers: tuple[str, ...]
    source: str = ""


def no_examples_hint() -> str:
    """The one line the Ask tab shows when there are no examples."""
    return (
        "No example questions yet: import a question set with `python -m traces import fvqa FILE.parquet` "
        "(a FVQA/veRL parquet, e.g. from lmms-lab/FVQA) into this app's trace store, then restart the app."
    )


def load_examples(spec: str | None, store: TraceStore, cache_dir: str | Path, *, limit: int = 20) -> list[Example]:
    """Up to `limit` examples: from `spec` (a parquet path, or a question set's name in the store), or, when
    `spec` is None, from the store's question sets. [] (with a logged reason) when there are none."""
    if spec is not None and spec.strip().lower() in NO_EXAMPLES:
        return []
    cache = Path(cache_dir)
    if spec is None:
        runs = [run for run in list_runs(store) if run.kind == QUESTION_SET_KIND]
        runs.sort(key=lambda run: run.created_at, reverse=True)
        return _from_runs(store, runs, cache, limit)
    if Path(spec).is_file():
        return _from_parquet(Path(spec), cache, limit)
    named = [run for run in list_runs(store) if run.name == spec]
    if not named:
        log.warning("examples: %s is neither a file nor a question set in the store; starting without examples", spec)
        return []
    return _from_runs(store, named, cache, limit)


def _from_runs(store: TraceStore, runs: Iterable[RunRecord], cache: Path, limit: int) -> list[Example]:
    examples: list[Example] = []
    for run in runs:
        if len(examples) >= limit:
            break
        page = list_episodes(store, EpisodeFilter(run_ids=(run.id,)), limit=limit - len(examples), newest_first=False)
        for summary in page.items:
            try:
                detail = load_episode(store, summary.id)
            except NotFoundError:  # deleted meanwhile
                continue
            image = _cached(detail.image_bytes, cache) if detail.image_bytes else ""
            examples.append(Example(detail.summary.question, image, tuple(detail.gold_answers), run.name))
    return examples


def _from_parquet(path: Path, cache: Path, limit: int) -> list[Example]:
    try:
        rows = list(islice(read_questions(path), limit))
    except (ImportFileError, OSError) as exc:  # a foreign file must not stop the app from starting
        log.warning("examples: cannot read %s (%s); starting without examples", path, exc)
        return []
    examples = []
    for row in rows:
        if isinstance(row, BadRow):
            log.warning("examples: %s %s skipped", path, row)
            continue
        examples.append(
            Example(row.question, _cached(row.image_bytes, cache), row.gold_answers, row.data_source or path.stem)
        )
    return examples


def _cached(data: bytes, cache: Path) -> str:
    """The image's file in the cache; its suffix says its format, so the page is served the right type."""
    cache.mkdir(parents=True, exist_ok=True)
    try:
        suffix = (Image.open(io.BytesIO(data)).format or "img").lower()  # reads the header only
    except (OSError, ValueError):
        suffix = "img"  # not an image: the Ask tab says so when the example is asked
    image_path = cache / f"{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
    if not image_path.exists():
        image_path.write_bytes(data)
    return str(image_path)
