"""Training data: SFT conversations (a trace store or an exported SFT file) and GRPO question sets.

SFT rows are `{"messages": [...], "images": [...]}` in the layout TRL's vision-language collator reads: every
message's content a list of parts, `{"type": "image"}` where the image goes. Conversations come from the one
conversation builder (`agent.conversation`): from the store through `traces.export_sft`, which renders recorded
episodes with it, or from a file that export wrote. Images are decoded lazily by `datasets`.

GRPO questions come from the eval harness's loader (`traces.eval_data.load_question_set`: FVQA/veRL parquet,
JSONL, a question-set run in the store, a hub dataset), so eval and training read question sets one way. The
dataset's `prompt` column is the loop's first turn (`training.rollout.dataset_prompt`).

Bad input is a `TrainingInputError` that says what to do: no approved episodes, an empty or malformed file, a
row without an assistant turn, image parts that do not match the images.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from agent.events import image_png_bytes
from agent.protocol import Dialect
from training.models import TrainingInputError
from training.rollout import Question, dataset_prompt

SFT_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".pq")
DATA_URI_PREFIX = "data:"


def is_sft_file(spec: str) -> bool:
    return Path(spec).suffix.lower() in SFT_FILE_SUFFIXES


# ---- SFT ------------------------------------------------------------------------------------------------------


def check_sft_row(row: dict[str, Any], where: str) -> None:
    """A conversation TRL can train on: messages with parts, an assistant turn, one image per image part."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TrainingInputError(f"{where}: no `messages` list")
    image_parts = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise TrainingInputError(f"{where}: message {i} needs a role of system, user or assistant")
        content = message.get("content")
        if not isinstance(content, list):
            raise TrainingInputError(f"{where}: message {i}'s content must be a list of parts (export writes them)")
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
                raise TrainingInputError(f"{where}: message {i} has a part that is neither text nor image")
            image_parts += part["type"] == "image"
    if not any(m["role"] == "assistant" for m in messages):
        raise TrainingInputError(f"{where}: no assistant turn to learn from")
    images = row.get("images") or []
    if len(images) != image_parts:
        raise TrainingInputError(f"{where}: {image_parts} image part(s) but {len(images)} image(s)")


def _image_value(value: Any, base: Path, where: str) -> dict[str, Any]:
    """An image as the `datasets` Image feature stores it: bytes, or a path made absolute."""
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes"):
            return {"bytes": value["bytes"], "path": None}
        value = value.get("path")
    if isinstance(value, bytes):
        return {"bytes": value, "path": None}
    if isinstance(value, PILImage.Image):
        return {"bytes": image_png_bytes(value), "path": None}
    if isinstance(value, str) and value.startswith(DATA_URI_PREFIX):
        try:
            return {"bytes": base64.b64decode(value.split(",", 1)[1]), "path": None}
        except (IndexError, ValueError) as exc:
            raise TrainingInputError(f"{where}: a data: image URI that is not base64 ({exc})") from None
    if isinstance(value, str) and value:
        path = Path(value) if Path(value).is_absolute() else base / value
        if not path.is_file():
            raise TrainingInputError(f"{where}: image {value} not found (looked at {path})")
        return {"bytes": None, "path": str(path)}
    raise TrainingInputError(f"{where}: an image entry that is neither bytes, a path nor a data: URI")


def _normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One part layout for every message (`type`, `text`), so Arrow sees one struct type."""
    return [
        {"role": m["role"], "content": [{"type": p["type"], "text": p.get("text")} for p in m["content"]]}
        for m in messages
    ]


def sft_dataset_from_rows(rows: Sequence[dict[str, Any]], *, base: Path = Path("."), source: str = "data") -> Any:
    """A `datasets.Dataset` of checked conversations; images become the lazily decoded Image feature."""
    from datasets import Dataset, Features, Image, List, Value

    if not rows:
        raise TrainingInputError(f"{source}: no conversations to train on")
    clean = []
    for n, row in enumerate(rows, start=1):
        where = f"{source} row {n}"
        check_sft_row(row, where)
        clean.append(
            {
                "messages": _normalise(row["messages"]),
                "images": [_image_value(v, base, where) for v in row.get("images") or []],
            }
        )
    features = Features(
        {
            "messages": List(
                {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
            ),
            "images": List(Image()),
        }
    )
    return Dataset.from_list(clean, features=features)


def read_sft_file(path: str | Path) -> Any:
    """An exported SFT file (`python -m traces export sft`): JSONL or Parquet, images embedded or alongside."""
    path = Path(path)
    if not path.is_file():
        raise TrainingInputError(f"{path}: no such file")
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not parquet
            raise TrainingInputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
        missing = [c for c in ("messages", "images") if c not in table.column_names]
        if missing:
            raise TrainingInputError(f"{path}: missing columns {missing}; an SFT file has `messages` and `images`")
        rows = table.select(["messages", "images"]).to_pylist()
    else:
        from traces.importers.common import JsonLinesError, json_objects

        try:
            rows = [row for _, row in json_objects(path)]
        except JsonLinesError as exc:
            raise TrainingInputError(str(exc)) from None
    if not rows:
        raise TrainingInputError(f"{path}: the file holds no conversations")
    return sft_dataset_from_rows(rows, base=path.parent, source=str(path))


# ---- GRPO -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionData:
    questions: tuple[Question, ...]
    dataset: Any  # datasets.Dataset with `prompt` (and `image` when the questions have images)
    skipped: tuple[str, ...]
    name: str


def question_dataset(
    questions: Sequence[Question], dialect: Dialect, *, max_tool_calls: int, name: str = "questions"
) -> QuestionData:
    """TRL's train dataset for `questions`. Questions without a gold answer are dropped (nothing to reward), and so
    are questions without an image in a set that has images (TRL takes one layout per dataset); both are listed
    in `skipped`."""
    from datasets import Dataset

    with_golds = [q for q in questions if any(g.strip() for g in q.gold_answers)]
    with_image = [q for q in with_golds if q.image is not None]
    kept = with_image if with_image else with_golds
    judged = {id(q) for q in with_golds}
    skipped = tuple(
        [f"{q.key}: no gold answer to judge against" for q in questions if id(q) not in judged]
        + [f"{q.key}: no image, in a set of image questions" for q in with_golds if with_image and q.image is None]
    )
    if not kept:
        raise TrainingInputError(
            f"{name}: no question with a gold answer to train on ({len(questions)} read), so no reward can be computed"
        )
    rows = [
        {
            "prompt": dataset_prompt(dialect, q.question, q.image is not None, max_tool_calls=max_tool_calls),
            **({"image": q.image} if with_image else {}),
            "item_key": q.key,
        }
        for q in kept
    ]
    return QuestionData(tuple(kept), Dataset.from_list(rows), skipped, name)


def load_questions(spec: str, *, store: Any | None, limit: int | None) -> tuple[list[Question], list[str], str]:
    """(questions, skipped, name) from any question set the eval harness reads; images decoded here."""
    from agent.eval import read_image
    from agent.images import ImageError
    from traces.eval_data import QuestionSetError, load_question_set

    try:
        qset = load_question_set(spec, store=store, limit=limit)
    except QuestionSetError as exc:
        raise TrainingInputError(str(exc)) from None
    questions: list[Question] = []
    skipped = list(qset.skipped)
    for item in qset.items:
        try:
            image = read_image(item.image)
        except ImageError as exc:
            skipped.append(f"{item.key}: image unreadable ({exc})")
            continue
        questions.append(Question(item.key, item.question, image, tuple(item.gold_answers), item.data_source))
    if not questions:
        raise TrainingInputError(f"{spec}: no usable questions ({len(skipped)} skipped: {'; '.join(skipped[:3])})")
    return questions, skipped, qset.name
