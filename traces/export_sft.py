"""Approved episodes -> SFT data in the chat-messages layout TRL's SFTTrainer reads for vision-language models.

The conversation of a recorded episode is rendered by the one builder the loop uses (`agent.conversation`): the
stored turns, tool results (`information` exactly as the model read it, with the budget note the loop appended),
refused calls and format-error notes become steps, and `build_messages` turns them into messages. So every
message before the last is byte for byte what the model was sent when the episode ran (tests/traces/test_export.py
checks it against a recording endpoint); the image part becomes a `{"type": "image"}` placeholder whose image
is the row's one image. Imported episodes are rendered with our dialects' prompts.

The last message is the answer turn the model should learn:
- an answered episode: the model's own answer turn, with its action tag closed when the server stripped the stop
  string (vLLM and OpenAI do), and the answer replaced by the annotators' corrected answer when there is one
  (their current annotations; the newest correction wins). The reasoning before it is the model's.
- an episode that ended without an answer (budget spent, malformed turns, model error, stopped) but carries a
  corrected answer: the recorded steps up to the last message the loop sent, plus the last tool result when the
  episode ended right after a search (turn cap, token budget); a last turn that got no reply (a refused call, a
  malformed turn) is dropped. Then `<reason>I have enough information to answer.</reason><answer>CORRECTED
  </answer>`. That reason claims nothing the trajectory does not show (a specific argument could contradict
  it), and a turn without `<reason>` would teach a malformed turn: the dialect's format check requires one.
Other episodes are skipped, each with its reason (`SFTData.skipped`; the command prints them).

Turns that broke the format, and the note that followed each, are left out by default: training on them would
teach the mistake. `include_failed_turns=True` keeps them (the conversation is then exactly what the model read).

Training on these rows must mask everything but the assistant turns (TRL: `assistant_only_loss=True`): the tool
results come back as user turns inside `<information>`, and learning them would teach the model to write its
own search results.

Files: JSONL or Parquet, the file named. Images "alongside" (one file per image in `<stem>_images/` next to the
data file; rows hold absolute paths, so they load from any working directory) or "embedded" (Parquet: image
bytes inside the file with the `datasets` Image feature, so `load_dataset("parquet", ...)` gives PIL images;
JSONL: `data:image/...;base64,` URIs, which transformers' `load_image` opens).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from tqdm import tqdm

from agent.conversation import BudgetFeedback, FormatFeedback, ModelTurn, Step, ToolFeedback, build_messages
from agent.events import TOOL_KINDS
from agent.loop import Budgets
from agent.models.base import Message, map_image_parts
from agent.protocol import Dialect, get_dialect
from traces.annotations import list_annotations
from traces.queries import EpisodeFilter, iter_episodes, load_episode
from traces.records import EpisodeDetail, TurnRecord

if TYPE_CHECKING:
    from traces.store import TraceStore

Format = Literal["jsonl", "parquet"]
ImageMode = Literal["alongside", "embedded"]
FORMATS: tuple[str, ...] = ("jsonl", "parquet")
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
CORRECTED_REASON = "I have enough information to answer."
TRAINING_NOTE = "train with assistant_only_loss=True: tool results are user turns (<information>) and must be masked"


class NotTrainable(ValueError):
    """An episode that gives no SFT row; the message says why."""


@dataclass(frozen=True)
class SFTRow:
    """One training conversation: `messages` and `images` as TRL's SFTTrainer reads them, and where it came from."""

    episode_id: str
    run_id: int
    question: str
    answer: str
    corrected: bool
    gold_answers: list[str]
    messages: list[Message]  # every content a list of parts: {"type": "text", "text": ...} or {"type": "image"}
    images: tuple[bytes, ...]  # one per image part, encoded as stored (JPEG/PNG); rows sharing an image share it
    image_sha256: str | None  # the image's address in the store


@dataclass(frozen=True)
class Skipped:
    episode_id: str
    reason: str


class SFTData(NamedTuple):
    rows: list[SFTRow]
    skipped: list[Skipped]


@dataclass(frozen=True)
class SFTExportReport:
    path: Path
    rows: int
    corrected: int
    images_dir: Path | None  # where the images were written (images="alongside")
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"wrote {self.rows} SFT rows ({self.corrected} with corrected answers) to {self.path}"]
        if self.images_dir is not None:
            lines.append(f"  images in {self.images_dir} (rows hold absolute paths: move both together, or re-export)")
        lines.append(f"  {TRAINING_NOTE}")
        lines.append(f"  skipped {len(self.skipped)} episodes" + (":" if self.skipped else ""))
        lines += [f"  skipped {s.episode_id}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


# ---- one episode -> one conversation -----------------------------------------------------------------


def corrected_answer(store: TraceStore, episode_id: str) -> str | None:
    current = [a for a in list_annotations(store, episode_id) if a.corrected_answer]
    return max(current, key=lambda a: a.created_at).corrected_answer if current else None


def episode_dialect(detail: EpisodeDetail) -> Dialect:
    try:
        return get_dialect(detail.summary.dialect or "deepmmsearch")
    except ValueError:
        return get_dialect("deepmmsearch")


def episode_steps(turns: Sequence[TurnRecord], *, include_failed_turns: bool = False) -> list[Step]:
    """The recorded turns as the loop's conversation steps, in order.

    A model turn is followed by what the loop sent back: the tool's `information` (with the last-tool-call
    note), the refusal of a call over budget, or the note after a malformed turn. A turn cut off by a stopped
    process ends the list: nothing after it was sent.
    """
    steps: list[Step] = []
    for turn in turns:
        if not turn.complete:
            break
        if not turn.format_ok:
            if include_failed_turns:
                steps += [ModelTurn(turn.raw_text), FormatFeedback(turn.error or "malformed turn")]
            continue
        steps.append(ModelTurn(turn.raw_text))
        notes = [n for n in turn.notes if n.get("type") == "budget_exhausted"]
        finished = [c for c in turn.tool_calls if c.status == "finished"]
        if finished:
            note = next((str(n.get("message", "")) for n in notes if n.get("budget") == "tool_calls"), "")
            steps.append(ToolFeedback(finished[0].kind, finished[0].information, note))  # type: ignore[arg-type]
        elif turn.action in TOOL_KINDS and notes:
            steps.append(BudgetFeedback(str(notes[0].get("message", ""))))
    return steps


def _replace_answer(raw: str, answer: str) -> str:
    matches = list(re.finditer(r"<answer>(.*?)</answer>", raw, re.S))
    if not matches:
        return raw
    last = matches[-1]
    return raw[: last.start(1)] + answer + raw[last.end(1) :]


def _checked_answer_turn(dialect: Dialect, text: str, answer: str) -> str:
    parsed = dialect.parse_turn(text)
    if not parsed.format_ok or parsed.action != "answer" or parsed.argument != answer.strip():
        raise NotTrainable(f"the answer {answer!r} does not make a well-formed answer turn ({parsed.error or 'tags'})")
    return text


def episode_conversation(
    detail: EpisodeDetail, correction: str | None = None, *, include_failed_turns: bool = False
) -> tuple[list[Message], str]:
    """(messages, answer) of one recorded episode, rendered by the loop's builder; NotTrainable says why not.

    The image part's payload is the episode's image address; callers map it (see `sft_rows`).
    """
    status = detail.summary.status
    if status == "pending":
        raise NotTrainable("a question that was never run")
    if status == "running":
        raise NotTrainable("still running")
    dialect = episode_dialect(detail)
    budgets = detail.config.get("budgets")
    budgets = budgets if isinstance(budgets, dict) else {}  # imported episodes ran under their tool's budgets
    max_tool_calls = int(budgets.get("max_tool_calls", Budgets.max_tool_calls))
    complete = [t for t in detail.turns if t.complete]
    answered = bool(complete) and complete[-1].action == "answer" and bool(complete[-1].format_ok)
    if answered:
        steps = episode_steps(complete[:-1], include_failed_turns=include_failed_turns)
        final = dialect.close_unterminated_action(complete[-1].raw_text)
        answer = correction if correction else complete[-1].argument
        if correction:
            final = _checked_answer_turn(dialect, _replace_answer(final, correction), correction)
    elif correction:
        # Up to the last message the loop sent. The last turn got no reply (the episode ended there): its refusal
        # or format note is dropped with it, but a tool's results are kept, being real (the turn cap or the
        # token budget ended the episode after the search that may hold the answer).
        last = detail.turns[-1] if detail.turns else None
        ended_after = last is not None and last.complete
        steps = episode_steps(
            detail.turns[:-1] if ended_after else detail.turns, include_failed_turns=include_failed_turns
        )
        if ended_after:
            tail = episode_steps([last], include_failed_turns=include_failed_turns)
            if tail and isinstance(tail[-1], ToolFeedback):
                steps += tail
        while steps and isinstance(steps[-1], ModelTurn):  # a model turn with no reply (imported transcripts)
            steps.pop()
        answer = correction
        final = _checked_answer_turn(
            dialect, f"<reason>{CORRECTED_REASON}</reason><answer>{correction}</answer>", correction
        )
    else:
        raise NotTrainable(f"ended {status} without an answer, and no annotator gave a corrected answer")
    image = detail.summary.image_sha256 if detail.image_bytes is not None else None
    steps.append(ModelTurn(final))
    return build_messages(dialect, detail.summary.question, image, steps, max_tool_calls=max_tool_calls), answer


def _placeholder(_: object) -> dict[str, Any]:
    return {"type": "image"}


def sft_rows(
    store: TraceStore,
    filters: EpisodeFilter | None = None,
    *,
    include_failed_turns: bool = False,
    progress: bool = False,
) -> SFTData:
    """SFT rows for the episodes `filters` selects (default: approved ones), oldest first, and the skipped ones.

    A trainer's dataset row is `{"messages": row.messages, "images": row.images}` (decode the bytes with
    PIL, or let the `datasets` Image feature do it).
    """
    filters = filters or EpisodeFilter(review="approved")
    rows: list[SFTRow] = []
    skipped: list[Skipped] = []
    images: dict[str, bytes] = {}
    with tqdm(desc="exporting SFT", unit="episode", disable=not progress) as bar:
        for summary in iter_episodes(store, filters, newest_first=False):
            bar.update(1)
            detail = load_episode(store, summary.id)
            fix = corrected_answer(store, summary.id)
            try:
                messages, answer = episode_conversation(detail, fix, include_failed_turns=include_failed_turns)
            except NotTrainable as why:
                skipped.append(Skipped(summary.id, str(why)))
                continue
            sha = summary.image_sha256 if detail.image_bytes is not None else None
            if sha is not None:
                images.setdefault(sha, detail.image_bytes)  # type: ignore[arg-type]
            rows.append(
                SFTRow(
                    episode_id=summary.id,
                    run_id=summary.run_id,
                    question=summary.question,
                    answer=answer,
                    corrected=fix is not None,
                    gold_answers=list(detail.gold_answers),
                    messages=map_image_parts(messages, _placeholder),
                    images=(images[sha],) if sha is not None else (),
                    image_sha256=sha,
                )
            )
    return SFTData(rows, skipped)


# ---- files ----------------------------------------------------------------------------------------------


def output_format(path: Path, fmt: str | None) -> Format:
    """The format named, else the one the file's suffix says; an error says what to do when neither fits."""
    suffix = path.suffix.lower().lstrip(".")
    if fmt is None:
        if suffix not in FORMATS:
            raise ValueError(f"{path}: name a .jsonl or .parquet file (or pass --format)")
        return suffix  # type: ignore[return-value]
    if fmt not in FORMATS:
        raise ValueError(f"format must be jsonl or parquet, not {fmt!r}")
    if suffix in FORMATS and suffix != fmt:
        raise ValueError(f"{path}: a .{suffix} file cannot hold {fmt}; rename it or drop --format")
    return fmt  # type: ignore[return-value]


def images_dir_for(path: Path) -> Path:
    return path.with_name(f"{path.stem}_images")


def _image_value(store: TraceStore, sha: str, images_dir: Path | None, fmt: Format) -> Any:
    data, mime = store.image_bytes(sha)
    if images_dir is None:  # embedded
        if fmt == "parquet":
            return {"bytes": data, "path": f"{sha}.{_EXT.get(mime, 'bin')}"}
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    target = images_dir / f"{sha}.{_EXT.get(mime, 'bin')}"
    if not target.exists():
        target.write_bytes(data)
    return str(target)


def export_sft(
    store: TraceStore,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    images: ImageMode = "alongside",
    filters: EpisodeFilter | None = None,
    include_failed_turns: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> SFTExportReport:
    """Write the SFT rows of the episodes `filters` selects (default: approved ones) to the file `path`."""
    if images not in ("alongside", "embedded"):
        raise ValueError(f"images must be alongside or embedded, not {images!r}")
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        raise ValueError(f"{path} is a directory: name the file to write, e.g. {path / 'train.jsonl'}")
    fmt_ = output_format(path, fmt)
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; choose another name or pass --overwrite")
    if not path.parent.is_dir():
        raise ValueError(f"{path.parent}: no such directory")
    data = sft_rows(store, filters, include_failed_turns=include_failed_turns, progress=progress)
    images_dir = images_dir_for(path) if images == "alongside" else None
    shas = {row.image_sha256 for row in data.rows if row.image_sha256}
    if images_dir is not None and shas:
        images_dir.mkdir(exist_ok=True)
    # Each image read, written or encoded once: rows that share an image share its value.
    image_values = {sha: _image_value(store, sha, images_dir, fmt_) for sha in shas}
    records = [
        {
            "messages": row.messages,
            "images": [image_values[row.image_sha256]] if row.image_sha256 else [],
            "episode_id": row.episode_id,
            "run_id": row.run_id,
            "question": row.question,
            "answer": row.answer,
            "corrected": row.corrected,
            "gold_answers": row.gold_answers,
        }
        for row in data.rows
    ]
    partial = path.with_name(f".{path.name}.partial")  # renamed into place when complete: no half-written file
    if fmt_ == "jsonl":
        with partial.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        _write_parquet(records, partial, images)
    partial.replace(path)
    return SFTExportReport(
        path,
        len(records),
        sum(r.corrected for r in data.rows),
        images_dir if images_dir is not None and images_dir.exists() else None,
        data.skipped,
    )


def _write_parquet(records: list[dict[str, Any]], path: Path, images: ImageMode) -> None:
    from datasets import Dataset, Features, Image, List, Value

    features = Features(
        {
            "messages": List(
                {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
            ),
            "images": List(Image()) if images == "embedded" else List(Value("string")),
            "episode_id": Value("string"),
            "run_id": Value("int64"),
            "question": Value("string"),
            "answer": Value("string"),
            "corrected": Value("bool"),
            "gold_answers": List(Value("string")),
        }
    )
    for record in records:  # one part layout for every message, so Arrow sees one struct type
        record["messages"] = [
            {"role": m["role"], "content": [{"type": p["type"], "text": p.get("text")} for p in m["content"]]}
            for m in record["messages"]
        ]
    Dataset.from_list(records, features=features).to_parquet(str(path))
