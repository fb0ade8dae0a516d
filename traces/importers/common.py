"""What every importer shares: the report, the parsed-episode shape, transcript splitting, the transactional write.

An importer reads its file row by row into `ParsedEpisode`s, collecting each unusable row as a `BadRow` (1-based
row or line number and the reason) instead of stopping. `write_import` consumes them as they come and writes
the run and every good episode in ONE transaction: either all good rows land, or (on any database error)
nothing does. Rows are streamed, never all held at once, and an image repeated in many rows is decoded and
stored once.

Importing is idempotent: the run remembers `content_sha256`, the sha256 of the importer's name and the file's
bytes (for a folder, of each file's name and bytes in order). Importing the same content with the same importer
again finds that run and writes nothing, unless `again=True` (`--again`) asks for a second copy.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from agent.events import TOOL_KINDS
from agent.images import ImageError
from traces.models import episodes, runs, tool_calls, turns

if TYPE_CHECKING:
    from traces.store import TraceStore


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (unreadable, or required columns missing). Nothing was written."""


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based: parquet/JSON record number, or JSONL line number
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


@dataclass(frozen=True)
class ImportReport:
    run_id: int | None
    run_name: str
    source: str
    rows: int
    imported: int
    bad_rows: tuple[BadRow, ...]
    notes: tuple[str, ...] = ()  # what the user should know about how rows were read (one line each)
    content_sha256: str | None = None
    already_imported: bool = False  # the same content was imported before: run_id is that run, nothing written

    def summary(self) -> str:
        if self.already_imported:
            return (
                f"{self.source}: already imported as run {self.run_id} ({self.run_name!r}): same importer, same "
                f"content (sha256 {(self.content_sha256 or '')[:12]}); nothing written. "
                "Pass --again to import it again as a new run."
            )
        lines = [
            f"{self.source}: imported {self.imported} of {self.rows} rows into run {self.run_id} ({self.run_name!r})"
        ]
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  skipped {bad}" for bad in self.bad_rows]
        return "\n".join(lines)


@dataclass
class ReadLog:
    """What reading a file found, filled in while its rows stream into the write."""

    rows: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ParsedTurn:
    raw_text: str
    reason: str
    action: str
    argument: str
    format_ok: bool
    error: str | None
    information: str | None = None  # the tool result the model read next (tool turns only)


@dataclass
class ParsedEpisode:
    question: str
    source_row: int
    image_bytes: bytes | None = None
    gold_answers: list[str] = field(default_factory=list)
    dataset: str | None = None
    status: str = "pending"
    final_answer: str | None = None
    correct: bool | None = None
    judge: str | None = None
    reward: float | None = None
    format_ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    turns: list[ParsedTurn] = field(default_factory=list)


# ---- chat transcripts ------------------------------------------------------------------------------

_VISION = re.compile(r"<\|vision_start\|>.*?<\|vision_end\|>|<\|(?:image|video|vision)_pad\|>", re.S)
_CHATML = re.compile(r"<\|im_start\|>(system|user|assistant|tool)\n(.*?)(?=<\|im_start\|>|\Z)", re.S)
# A role line starts a turn after a newline, or right after a closing tag: a tool-call turn ends with its action
# tag and `<|im_end|>`, and MMSearch-R1 appends `<|im_start|>user\n...` with no newline in between, so decoding
# with skip_special_tokens=True gives `...</search>user\nSearched results: ...`.
_BARE_ROLE = re.compile(r"(?:\n|(?<=>))(system|user|assistant|tool)\n")
_SPECIALS = re.compile(r"<\|im_end\|>|<\|endoftext\|>")
_INFORMATION = re.compile(r"<information>(.*?)</information>", re.S)


def split_transcript(text: str, first_role: str = "assistant") -> list[tuple[str, str]]:
    """Split decoded chat text into (role, content) segments.

    Handles ChatML with its special tokens (`<|im_start|>user\\n...<|im_end|>`) and the same text decoded with
    skip_special_tokens=True, where only bare role lines mark the turns: `\\nuser\\n` / `\\nassistant\\n`, or
    `user\\n` right after the closing tag that ended a tool-call turn (`</search>user\\n`). Text before the first
    marker belongs to `first_role` (a response starts inside the assistant turn).
    """
    text = _VISION.sub("", text)
    if "<|im_start|>" in text:
        head, _, _ = text.partition("<|im_start|>")
        segments = [(first_role, head)] if head.strip() else []
        segments += [(m.group(1), m.group(2)) for m in _CHATML.finditer(text)]
    else:
        parts = _BARE_ROLE.split("\n" + text if text.startswith(("user\n", "assistant\n", "system\n")) else text)
        segments = [(first_role, parts[0])] if parts[0].strip() else []
        segments += [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
    return [(role, _SPECIALS.sub("", content).strip()) for role, content in segments]


def information_of(user_text: str) -> str:
    found = _INFORMATION.findall(user_text)
    return "\n".join(s.strip() for s in found) if found else user_text.strip()


def turns_from_messages(messages: Sequence[tuple[str, str]], dialect: str) -> list[ParsedTurn]:
    """Assistant messages become turns (parsed by the dialect); the message after a tool turn is its result."""
    from agent.protocol import parse_turn

    out: list[ParsedTurn] = []
    for role, content in messages:
        if role == "assistant":
            p = parse_turn(content, dialect)
            out.append(ParsedTurn(content, p.reason, p.action, p.argument, p.format_ok, p.error))
        elif role in ("user", "tool") and out and out[-1].action in TOOL_KINDS and out[-1].information is None:
            out[-1].information = information_of(content)
    return out


def outcome(turns: Sequence[ParsedTurn]) -> tuple[str, str | None, bool | None]:
    """(status, final answer, format_ok) of a finished imported trajectory."""
    if not turns:
        return "error", None, False
    last = turns[-1]
    fmt = all(t.format_ok for t in turns) and last.action == "answer"
    if last.action == "answer" and last.format_ok:
        return "answered", last.argument, fmt
    if not last.format_ok:
        return "format_error", None, fmt
    return "budget_exhausted", None, fmt


def content_text(content: Any) -> str:
    """Text of a chat message content: a string, or a list of parts ({'type': 'text', 'text': ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    try:
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    except TypeError:
        return str(content)


def gold_list(ground_truth: Any, candidates: Any = None) -> list[str]:
    """Gold answers: the ground truth first, then aliases (a list, or a JSON list in a string, as FVQA has)."""
    out: list[str] = []

    def add(value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                try:
                    for v in json.loads(text):
                        add(v)
                    return
                except json.JSONDecodeError:
                    pass
            if text and text not in out:
                out.append(text)
            return
        if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
            for v in value:
                add(v)
            return
        add(str(value))

    add(ground_truth)
    add(candidates)
    return out


def self_corrected(calls: Sequence[tuple[str, str]]) -> bool:
    """A text search after an earlier text search, with a query not used before (the recorder's rule too)."""
    seen: list[str] = []
    for kind, argument in calls:
        if kind != "text_search":
            continue
        if seen and argument not in seen:
            return True
        seen.append(argument)
    return False


# ---- extras ------------------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A value as the JSON columns store it on SQLite and Postgres alike (no NaN, no bytes, str keys)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)


class JsonLinesError(ValueError):
    """A JSONL file that cannot be read as a whole: unreadable, or a line that is not a JSON object."""


def json_objects(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSONL file, read whole. Unlike an import, which skips bad
    rows, the question sets and SFT files read here are refused at their first broken line (JsonLinesError)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise JsonLinesError(f"{path}: cannot read ({exc})") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JsonLinesError(f"{path} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise JsonLinesError(f"{path} line {number}: not a JSON object")
        records.append((number, record))
    return records


# ---- idempotency ---------------------------------------------------------------------------------------


def content_sha256(importer: str, files: Sequence[Path]) -> str:
    """sha256 of the importer's name and the files' names and bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256(f"{importer}\n".encode())
    for file in files:
        if len(files) > 1:
            digest.update(f"{file.name}\n".encode())
        try:
            with file.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise ImportFileError(f"{file}: cannot read ({exc}); nothing was imported") from None
    return digest.hexdigest()


def previous_import(store: TraceStore, sha256: str) -> tuple[int, str] | None:
    """(run id, run name) of the oldest run imported from this content, if any."""
    with store.read() as conn:
        row = conn.execute(
            select(runs.c.id, runs.c.name).where(runs.c.content_sha256 == sha256).order_by(runs.c.id).limit(1)
        ).first()
    return (int(row.id), row.name) if row is not None else None


# ---- the write ----------------------------------------------------------------------------------------


@dataclass
class _ImageCache:
    """Each distinct image is decoded and stored once, however many rows repeat it (keyed by its bytes)."""

    store: TraceStore
    addresses: dict[str, str | ImageError] = field(default_factory=dict)

    def address(self, conn: Any, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        known = self.addresses.get(key)
        if known is None:
            try:
                known = self.store.put_image(conn, data=data)
            except ImageError as exc:  # decoded before anything is written: the transaction is intact
                known = exc
            self.addresses[key] = known
        if isinstance(known, ImageError):
            raise known
        return known


def write_import(
    store: TraceStore,
    parsed: Iterable[ParsedEpisode],
    log: ReadLog,
    *,
    importer: str,
    files: Sequence[Path],
    again: bool = False,
    run_name: str,
    run_kind: str,
    source: str,
    model: str | None = None,
    dialect: str | None = None,
    dataset: str | None = None,
    config: dict[str, Any] | None = None,
) -> ImportReport:
    """Write a run and the parsed episodes in one transaction (all or nothing), consuming `parsed` lazily.

    Before anything is read, a run imported from the same content by the same importer is looked up: then
    nothing is written (unless `again`) and the report names that run. A row whose image does not decode
    becomes a bad row. The run's dataset, when not given, is the one data source all episodes share.
    """
    sha = content_sha256(importer, files)
    if not again and (previous := previous_import(store, sha)) is not None:
        return ImportReport(previous[0], previous[1], source, 0, 0, (), content_sha256=sha, already_imported=True)
    imported = 0
    run_id: int | None = None
    datasets: set[str | None] = set()
    now = time.time()
    with store.write() as conn:
        images = _ImageCache(store)
        for ep in parsed:
            try:
                sha_image = images.address(conn, ep.image_bytes) if ep.image_bytes else None
            except ImageError as exc:
                log.bad_rows.append(BadRow(ep.source_row, str(exc)))
                continue
            if run_id is None:  # created with the first good row: a file with none leaves no empty run behind
                run_id = store.create_run(
                    run_name,
                    run_kind,
                    model=model,
                    dialect=dialect,
                    dataset=dataset,
                    source=source,
                    config={"importer": importer, **(config or {})},
                    content_sha256=sha,
                    conn=conn,
                )
            _write_episode(conn, run_id, ep, sha_image, model, dialect, dataset, now + imported * 1e-6, now)
            datasets.add(ep.dataset)
            imported += 1
        if run_id is not None and dataset is None and len(datasets) == 1 and None not in datasets:
            conn.execute(update(runs).where(runs.c.id == run_id).values(dataset=datasets.pop()))
    return ImportReport(
        run_id, run_name, source, log.rows, imported, tuple(log.bad_rows), tuple(log.notes), content_sha256=sha
    )


def _write_episode(
    conn: Any,
    run_id: int,
    ep: ParsedEpisode,
    image_sha256: str | None,
    model: str | None,
    dialect: str | None,
    dataset: str | None,
    started_at: float,
    now: float,
) -> None:
    queries = [t.argument for t in ep.turns if t.action in ("text_search", "image_search_region")]
    calls = [(t.action, t.argument) for t in ep.turns if t.action in TOOL_KINDS and t.format_ok]
    kinds = [kind for kind, _ in calls]
    pk = conn.execute(
        insert(episodes)
        .values(
            uid=uuid.uuid4().hex,
            run_id=run_id,
            question=ep.question,
            image_sha256=image_sha256,
            gold_answers=ep.gold_answers,
            model=model,
            dialect=dialect,
            dataset=ep.dataset or dataset,
            config={},
            status=ep.status,
            reason="imported",
            final_answer=ep.final_answer,
            correct=ep.correct,
            judge=ep.judge,
            reward=ep.reward,
            format_ok=ep.format_ok,
            n_turns=len(ep.turns),
            n_tool_calls=len(kinds),
            n_text=kinds.count("text_search"),
            n_whole=kinds.count("image_search_whole"),
            n_crop=kinds.count("image_search_region"),
            n_format_errors=sum(not t.format_ok for t in ep.turns),
            self_corrected=self_corrected(calls),
            response_tokens=0,
            # Imported rows keep file order in the newest-first list: later rows get later timestamps.
            started_at=started_at,
            finished_at=None if ep.status == "pending" else now,
            updated_at=now,
            source_row=ep.source_row,
            extra=json_value(ep.extra),
            search_text="\n".join([ep.question, *queries, *([ep.final_answer] if ep.final_answer else [])]),
        )
        .returning(episodes.c.id)
    ).scalar_one()
    _write_turns(conn, int(pk), ep.turns)


def _write_turns(conn: Any, pk: int, parsed_turns: Sequence[ParsedTurn]) -> None:
    seq = 0
    call_index = 0
    now = time.time()
    turn_rows, call_rows = [], []
    for index, t in enumerate(parsed_turns):
        seq += 1
        turn_rows.append(
            dict(
                episode_id=pk,
                index=index,
                seq=seq,
                parsed_seq=seq + 1,
                raw_text=t.raw_text,
                complete=True,
                reason=t.reason,
                action=t.action,
                argument=t.argument,
                format_ok=t.format_ok,
                error=t.error,
                tokens=0,
                latency_s=0.0,
                started_at=now,
            )
        )
        seq += 1
        if t.action in TOOL_KINDS and t.format_ok:
            call_rows.append(
                dict(
                    episode_id=pk,
                    turn_index=index,
                    call_index=call_index,
                    seq=seq + 1,
                    finished_seq=seq + 2 if t.information is not None else None,
                    kind=t.action,
                    argument=t.argument,
                    provider="imported",
                    status="finished" if t.information is not None else "started",
                    items=[],
                    summary=t.information or "",
                    information=t.information or "",
                    cache_hit=False,
                    latency_s=0.0,
                    grounding_fallback=False,
                    grounding_note="",
                )
            )
            call_index += 1
            seq += 2
    if turn_rows:
        conn.execute(insert(turns), turn_rows)
    if call_rows:
        conn.execute(insert(tool_calls), call_rows)
