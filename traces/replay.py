"""Stored episode -> the agent's own event objects, so stored and live episodes render through the same code.

The recorder numbers every event of an episode (`seq`); each stored piece keeps its number, and this module puts
them back in that order. What comes back differs from the live stream in exactly two ways:
- the streamed TextDelta events of a turn come back as one TextDelta holding the turn's whole text;
- an episode that was interrupted ends with EpisodeFinished(status="interrupted"); one still running has no
  EpisodeFinished; an imported question that was never run is just EpisodeStarted.
Images (the input image and crops) are decoded back into PIL images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from agent.events import (
    ActionParsed,
    Answer,
    Box,
    BudgetExhausted,
    EpisodeFinished,
    EpisodeStarted,
    Event,
    FormatError,
    ModelError,
    ResultItem,
    TextDelta,
    ToolFinished,
    ToolResult,
    ToolStarted,
    TurnStarted,
)
from traces.models import events, tool_calls, turns
from traces.queries import load_episode
from traces.records import FINAL_STATUSES, ToolCallRecord

if TYPE_CHECKING:
    from traces.store import TraceStore

_RESULT_ITEM_FIELDS = set(ResultItem.__dataclass_fields__)


def _tool_result(call: ToolCallRecord) -> ToolResult:
    items = tuple(ResultItem(**{k: v for k, v in item.items() if k in _RESULT_ITEM_FIELDS}) for item in call.items)
    return ToolResult(
        provider=call.provider,
        items=items,
        summary=call.summary,
        error=call.error,
        cache_hit=call.cache_hit,
        latency_s=call.latency_s,
        crop_box=Box(*call.crop_box) if call.crop_box else None,
        crop_image=call.crop_image(),
        grounding_fallback=call.grounding_fallback,
        grounding_score=call.grounding_score,
        grounding_note=call.grounding_note,
    )


def _note_event(uid: str, turn_index: int, note: dict[str, Any]) -> Event | None:
    kind = note.get("type")
    if kind == "format_error":
        return FormatError(
            uid, turn_index, note.get("error", ""), note.get("raw_text", ""), int(note.get("retries_left", 0))
        )
    if kind == "budget_exhausted":
        return BudgetExhausted(uid, turn_index, note.get("budget", "tool_calls"), note.get("message", ""))
    if kind == "model_error":
        return ModelError(uid, turn_index, note.get("endpoint", ""), note.get("message", ""))
    if kind == "answer":
        return Answer(uid, turn_index, note.get("text", ""))
    return None


def episode_events(store: TraceStore, episode_id: str) -> list[Event]:
    detail = load_episode(store, episode_id)
    s = detail.summary
    uid = s.id
    ordered: list[tuple[float, int, Event]] = []  # (seq, tiebreak, event)

    def add(seq: float, event: Event) -> None:
        ordered.append((seq, len(ordered), event))

    seqs = _sequence_numbers(store, uid)
    for turn in detail.turns:
        start_seq, parsed_seq = seqs["turns"].get(turn.index, (0, None))
        add(start_seq, TurnStarted(uid, turn.index))
        if turn.raw_text:
            # One delta with the whole text, just before the parse (or at the end of a turn cut short).
            add(
                (parsed_seq if parsed_seq is not None else start_seq + 0.5) - 0.25,
                TextDelta(uid, turn.index, turn.raw_text),
            )
        if turn.complete and parsed_seq is not None:
            add(
                parsed_seq,
                ActionParsed(
                    uid,
                    turn.index,
                    turn.action or "none",
                    turn.argument,
                    turn.reason,
                    turn.raw_text,
                    bool(turn.format_ok),
                    turn.error,
                    turn.tokens,
                    turn.latency_s,
                ),
            )
        for call in turn.tool_calls:
            call_seq, finished_seq = seqs["calls"].get(call.call_index, (start_seq + 0.6, None))
            add(call_seq, ToolStarted(uid, call.turn_index, call.call_index, call.kind, call.argument, call.provider))  # type: ignore[arg-type]
            if call.status == "finished":
                add(
                    finished_seq if finished_seq is not None else call_seq + 0.1,
                    ToolFinished(
                        uid,
                        call.turn_index,
                        call.call_index,
                        call.kind,
                        call.argument,
                        _tool_result(call),
                        call.information,
                    ),  # type: ignore[arg-type]
                )
    for note_seq, turn_index, note in seqs["notes"]:
        event = _note_event(uid, turn_index, note)
        if event is not None:
            add(note_seq, event)
    ordered.sort(key=lambda t: (t[0], t[1]))

    started = EpisodeStarted(
        episode_id=uid,
        question=s.question,
        image=detail.image(),
        image_sha256=s.image_sha256,
        model=s.model or "",
        backend=detail.backend or "",
        dialect=s.dialect or "",
        config=detail.config,
        gold_answers=tuple(detail.gold_answers),
        started_at=s.started_at,
    )
    out: list[Event] = [started, *(event for _, _, event in ordered)]
    if s.status in FINAL_STATUSES:
        out.append(
            EpisodeFinished(
                episode_id=uid,
                status=s.status,  # type: ignore[arg-type]
                final_answer=s.final_answer,
                turns=s.n_turns,
                tool_calls=s.n_tool_calls,
                response_tokens=s.response_tokens,
                elapsed_s=s.elapsed_s or 0.0,
                format_ok=bool(detail.format_ok),
                reason=detail.reason,
            )
        )
    return out


def _sequence_numbers(store: TraceStore, uid: str) -> dict[str, Any]:
    with store.read() as conn:
        pk = store.episode_pk(conn, uid)
        turn_seqs = {
            i: (s, p)
            for i, s, p in conn.execute(
                select(turns.c.index, turns.c.seq, turns.c.parsed_seq).where(turns.c.episode_id == pk)
            )
        }
        call_seqs = {
            i: (s, f)
            for i, s, f in conn.execute(
                select(tool_calls.c.call_index, tool_calls.c.seq, tool_calls.c.finished_seq).where(
                    tool_calls.c.episode_id == pk
                )
            )
        }
        notes = [
            (s, t, {"type": ty, **(p or {})})
            for s, t, ty, p in conn.execute(
                select(events.c.seq, events.c.turn_index, events.c.type, events.c.payload)
                .where(events.c.episode_id == pk)
                .order_by(events.c.seq)
            )
        ]
    return {"turns": turn_seqs, "calls": call_seqs, "notes": notes}
