"""Approved episodes -> SFT data in the chat-messages layout TRL's SFTTrainer reads for vision-language models.

Each row: `messages` (system, the user turn with an image placeholder and the question prompt, then the
assistant turns and the user turns carrying tool results, exactly as the dialect renders them for the model) and
`images` (the input image), plus provenance columns. Every message's `content` is a list of parts
({"type": "text", "text": ...} or {"type": "image"}), the form TRL's VLM collator expects.

Corrections are applied: when the annotators' current annotations carry a corrected answer (the newest wins),
the final `<answer>` is rewritten to it. Turns that broke the format (and the correction prompt that followed)
are left out by default: training on them would teach the mistake. Episodes that never answered, or that are
still pending, running or interrupted, are skipped and counted.

Formats: JSONL or Parquet. Images "alongside" (files in OUT/images/, rows hold relative paths) or "embedded"
(Parquet: image bytes inside the file with the `datasets` Image feature, so `load_dataset("parquet", ...)` gives
PIL images; JSONL: `data:image/png;base64,...` URIs, which transformers' `load_image` accepts).
The prompts are those of our dialects (`agent.protocol`); imported episodes are re-rendered with them.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm import tqdm

from traces.annotations import list_annotations
from traces.queries import EpisodeFilter, list_episodes, load_episode
from traces.records import EpisodeDetail

if TYPE_CHECKING:
    from traces.store import TraceStore

Format = Literal["jsonl", "parquet"]
ImageMode = Literal["alongside", "embedded"]
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


@dataclass(frozen=True)
class SFTExportReport:
    path: Path
    rows: int
    corrected: int
    skipped: dict[str, int]  # reason -> episodes

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items()) or "none"
        return (
            f"wrote {self.rows} SFT rows ({self.corrected} with corrected answers) to {self.path}; skipped: {skipped}"
        )


def corrected_answer(store: TraceStore, episode_id: str) -> str | None:
    current = [a for a in list_annotations(store, episode_id) if a.corrected_answer]
    return max(current, key=lambda a: a.created_at).corrected_answer if current else None


def _replace_answer(raw: str, answer: str) -> str:
    pattern = re.compile(r"(<answer>)(.*?)(</answer>)", re.S)
    matches = list(pattern.finditer(raw))
    if not matches:
        return raw
    last = matches[-1]
    return raw[: last.start(2)] + answer + raw[last.end(2) :]


def episode_messages(
    detail: EpisodeDetail, correction: str | None, *, include_failed_turns: bool = False
) -> list[dict[str, Any]] | None:
    """The conversation the model should learn, or None when the episode has no final answer turn."""
    from agent.protocol import get_dialect

    try:
        dialect = get_dialect(detail.summary.dialect or "deepmmsearch")
    except ValueError:
        dialect = get_dialect("deepmmsearch")
    budgets = detail.config.get("budgets") if isinstance(detail.config.get("budgets"), dict) else {}
    max_tool_calls = int(budgets.get("max_tool_calls", 10))
    question = detail.summary.question

    def text(role: str, body: str) -> dict[str, Any]:
        return {"role": role, "content": [{"type": "text", "text": body}]}

    messages = [
        text("system", dialect.system_prompt(max_tool_calls)),
        {
            "role": "user",
            "content": [{"type": "image", "text": None}, {"type": "text", "text": dialect.user_prompt(question)}],
        },
    ]
    if detail.image_bytes is None:
        messages[1]["content"] = messages[1]["content"][1:]
    complete = [t for t in detail.turns if t.complete]
    if not complete or complete[-1].action != "answer" or not complete[-1].format_ok:
        return None
    for turn in complete:
        if not turn.format_ok and not include_failed_turns:
            continue
        raw = turn.raw_text
        if turn is complete[-1] and correction:
            raw = _replace_answer(raw, correction)
        messages.append(text("assistant", raw))
        if turn is complete[-1]:
            break
        if not turn.format_ok:
            messages.append(text("user", dialect.render_format_error(turn.error or "malformed turn")))
            continue
        budget_notes = [n for n in turn.notes if n.get("type") == "budget_exhausted"]
        finished = [c for c in turn.tool_calls if c.status == "finished"]
        if finished:
            call = finished[0]
            note = budget_notes[0].get("message", "") if budget_notes else ""
            messages.append(text("user", dialect.render_tool_turn(call.kind, call.information, question, note)))  # type: ignore[arg-type]
        elif budget_notes:
            messages.append(text("user", budget_notes[0].get("message", "")))
    return messages


def _image_value(store: TraceStore, sha: str, out: Path, mode: ImageMode, fmt: Format) -> Any:
    data, mime = store.image_bytes(sha)
    if mode == "embedded":
        if fmt == "parquet":
            return {"bytes": data, "path": f"{sha}.{_EXT.get(mime, 'bin')}"}
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    rel = Path("images") / f"{sha}.{_EXT.get(mime, 'bin')}"
    target = out / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return rel.as_posix()


def export_sft(
    store: TraceStore,
    out_dir: str | os.PathLike[str],
    *,
    fmt: Format = "jsonl",
    images: ImageMode = "alongside",
    filters: EpisodeFilter | None = None,
    include_failed_turns: bool = False,
    progress: bool = False,
) -> SFTExportReport:
    """Write OUT/train.{jsonl,parquet} from the episodes `filters` selects (default: approved ones)."""
    if fmt not in ("jsonl", "parquet"):
        raise ValueError(f"format must be jsonl or parquet, not {fmt!r}")
    if images not in ("alongside", "embedded"):
        raise ValueError(f"images must be alongside or embedded, not {images!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    filters = filters or EpisodeFilter(review="approved")
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    corrected = 0
    bar = tqdm(desc="exporting SFT", unit="episode", disable=not progress)
    after = None
    while True:
        page = list_episodes(store, filters, limit=200, after=after, newest_first=False)
        for summary in page.items:
            bar.update(1)
            detail = load_episode(store, summary.id)
            fix = corrected_answer(store, summary.id)
            messages = episode_messages(detail, fix, include_failed_turns=include_failed_turns)
            if messages is None:
                why = (
                    "without a final answer turn"
                    if summary.status not in ("pending", "running")
                    else f"{summary.status}"
                )
                skipped[why] = skipped.get(why, 0) + 1
                continue
            answer = fix or (detail.turns[-1].argument if detail.turns else summary.final_answer)
            corrected += fix is not None
            rows.append(
                {
                    "messages": messages,
                    "images": [_image_value(store, summary.image_sha256, out, images, fmt)]
                    if summary.image_sha256 and detail.image_bytes
                    else [],
                    "episode_id": summary.id,
                    "run_id": summary.run_id,
                    "question": summary.question,
                    "answer": answer,
                    "corrected": fix is not None,
                    "gold_answers": detail.gold_answers,
                }
            )
        if page.next_cursor is None:
            break
        after = page.next_cursor
    bar.close()
    path = out / f"train.{fmt}"
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        _write_parquet(rows, path, images)
    return SFTExportReport(path, len(rows), corrected, skipped)


def _write_parquet(rows: list[dict[str, Any]], path: Path, images: ImageMode) -> None:
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
    for row in rows:  # one part layout for every message, so Arrow sees one struct type
        for message in row["messages"]:
            message["content"] = [{"type": p["type"], "text": p.get("text")} for p in message["content"]]
    Dataset.from_list(rows, features=features).to_parquet(str(path))
