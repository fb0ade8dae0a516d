"""Recorder: persists the agent's event stream, one committed transaction per event (DESIGN.md §3.5).

    store = open_store("runs/traces.db")
    recorder = Recorder(store, run_kind="eval", run_name="infoseek-sft")
    for event in run_episode(..., on_event=recorder): ...
    recorder.close()

What a SIGKILL loses: at most the event being written, plus the text streamed into the current turn since the
last flush. TextDelta events are not committed one by one (a commit per token would cost more than the model
step); the turn's text so far is written every `flush_interval_s` (1 s by default) and in full with the turn's
ActionParsed event. Every other event is committed before `__call__` returns. An episode whose process died shows
as `interrupted` the next time any process opens the store (`TraceStore.recover_interrupted`).

`with recorder.transaction(): ...` writes the events fed inside it in one transaction instead (eval records each
episode whole, when it finishes: see traces.eval_runs.WholeEpisodes).

Thread-safety: one Recorder may receive events of many episodes from many threads at once. Events of one episode
are applied in arrival order under that episode's lock; writes of the whole process are serialised by the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update

from agent.events import (
    ActionParsed,
    Answer,
    BudgetExhausted,
    EpisodeFinished,
    EpisodeStarted,
    Event,
    FormatError,
    ModelError,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnStarted,
    event_to_dict,
)
from traces.models import episodes, events, tool_calls, turns
from traces.store import TraceStore, writer_token

# Hot writes are constant statements executed with a parameter dict: SQLAlchemy compiles each once and
# caches it, where `.values(col=value, ...)` re-coerced every value and rebuilt the cache key on each event
# (about two thirds of the append latency). The SET columns come from the dict's keys; the WHERE values
# use names that are not columns (`pk_`, `ep_`, ...) so they cannot be mistaken for SET values.
_EPISODE_BY_PK = update(episodes).where(episodes.c.id == bindparam("pk_"))
_TURN_BY_KEY = update(turns).where(turns.c.episode_id == bindparam("ep_"), turns.c.index == bindparam("turn_"))
_TOOL_CALL_BY_KEY = update(tool_calls).where(
    tool_calls.c.episode_id == bindparam("ep_"), tool_calls.c.call_index == bindparam("call_")
)

log = logging.getLogger(__name__)


class _Transaction(threading.local):
    """The connection of this thread's open `Recorder.transaction()`; None outside one (each thread its own)."""

    conn: Connection | None = None


@dataclass
class _Live:
    """What the recorder remembers about an episode it is recording."""

    pk: int
    uid: str
    question: str
    seq: int = 0
    turn_index: int | None = None
    text: list[str] = field(default_factory=list)
    text_dirty: bool = False
    flushed_at: float = 0.0
    n_calls: int = 0
    n_text: int = 0
    n_whole: int = 0
    n_crop: int = 0
    n_format_errors: int = 0
    response_tokens: int = 0
    queries: list[str] = field(default_factory=list)
    self_corrected: bool = False
    answer: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def search_text(self) -> str:
        return "\n".join([self.question, *self.queries, *([self.answer] if self.answer else [])])


class Recorder:
    """Callable event sink: `run_episode(..., on_event=Recorder(store))`.

    Which run an episode goes into: `run_id` when given; otherwise the store's run of this kind, name (`run_name`,
    default "<kind> <model> (<backend>, <dialect>)"), model, backend, dialect and checkpoint, created at the
    first such episode and reused by every later recorder, in this process or another (`TraceStore.recording_run`).
    """

    def __init__(
        self,
        store: TraceStore,
        *,
        run_kind: str = "demo",
        run_name: str | None = None,
        checkpoint: str | None = None,
        run_config: dict[str, Any] | None = None,
        strict: bool = True,
        flush_interval_s: float = 1.0,
        run_id: int | None = None,
    ):
        self.store = store
        self.run_kind = run_kind
        self.run_name = run_name
        self.checkpoint = checkpoint
        self.run_config = run_config or {}
        # strict: a failed write raises into the caller (the episode stops: better than silently losing it).
        # Otherwise failures are logged and kept in `errors` and the episode goes on unrecorded.
        self.strict = strict
        self.flush_interval_s = flush_interval_s
        self.errors: list[str] = []
        self.writer = writer_token()
        self._live: dict[str, _Live] = {}
        self._runs: dict[tuple[str, str, str], int] = {}
        # A given run (eval resuming into its run, GRPO's rollout run) takes every episode; otherwise one run is
        # created per (model, backend, dialect) at its first episode.
        self.fixed_run_id = run_id
        self._lock = threading.Lock()
        self._tx = _Transaction()
        self._handlers: dict[type, Callable[[Any], None]] = {
            EpisodeStarted: self._episode_started,
            TurnStarted: self._turn_started,
            TextDelta: self._text_delta,
            ActionParsed: self._action_parsed,
            FormatError: self._note,
            BudgetExhausted: self._note,
            ModelError: self._note,
            Answer: self._answer,
            ToolStarted: self._tool_started,
            ToolFinished: self._tool_finished,
            EpisodeFinished: self._episode_finished,
        }

    # ---- public -----------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        try:
            handler = self._handlers[type(event)]
        except KeyError:
            return self._fail(f"the recorder does not know event type {type(event).__name__}")
        try:
            handler(event)
        except Exception as exc:
            self._fail(f"recording {type(event).__name__} of episode {event.episode_id} failed: {exc}", exc)

    @property
    def run_ids(self) -> list[int]:
        with self._lock:
            return list(self._runs.values()) if self.fixed_run_id is None else [self.fixed_run_id]

    def episode_ids(self) -> list[str]:
        """Episodes started and not yet finished."""
        with self._lock:
            return list(self._live)

    def close(self) -> None:
        """Mark episodes that never finished as interrupted (the caller stopped feeding events)."""
        with self._lock:
            live = list(self._live.values())
            self._live.clear()
        for ep in live:
            with ep.lock:
                self._flush_text(ep, force=True)
                with self.store.write() as conn:
                    conn.execute(
                        update(episodes)
                        .where(episodes.c.id == ep.pk, episodes.c.status == "running")
                        .values(
                            status="interrupted",
                            reason="the recorder was closed before the episode finished",
                            updated_at=time.time(),
                        )
                    )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Write every event this thread feeds inside the block in ONE transaction: one commit (one fsync) instead
        of one per event, and all of it or nothing. For callers that need an episode only once it is whole (eval,
        where an unfinished episode is run again anyway); what a crash loses is then the whole block. A failed
        write rolls the block back and raises."""
        if not self.strict or self.fixed_run_id is None:
            # A swallowed failure would leave half a block; creating a run needs a write of its own.
            raise ValueError("transaction() needs a strict recorder with a run_id")
        if self._tx.conn is not None:
            yield  # already inside this thread's transaction
            return
        with self.store.write() as conn:
            self._tx.conn = conn
            try:
                yield
            finally:
                self._tx.conn = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ----------------------------------------------------------------------------------

    def _fail(self, message: str, exc: Exception | None = None) -> None:
        if self.strict:
            if exc is not None:
                raise RuntimeError(message) from exc
            raise RuntimeError(message)
        log.warning("%s", message)
        self.errors.append(message)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """The connection of this thread's open `transaction()`, else a transaction of its own."""
        conn = self._tx.conn
        if conn is not None:
            yield conn
            return
        with self.store.write() as conn:
            yield conn

    def _get(self, episode_id: str) -> _Live | None:
        with self._lock:
            ep = self._live.get(episode_id)
        if ep is None:
            raise ValueError(f"event for episode {episode_id} whose EpisodeStarted this recorder never saw")
        return ep

    def _run_id(self, event: EpisodeStarted) -> int:
        if self.fixed_run_id is not None:
            return self.fixed_run_id
        key = (event.model, event.backend, event.dialect)
        with self._lock:
            if key in self._runs:
                return self._runs[key]
            # One run per (kind, name, model, backend, dialect, checkpoint) in the store, shared by every process
            # that records into it: two CLI calls with one model add to one run instead of making two of one name.
            name = self.run_name or f"{self.run_kind} {event.model} ({event.backend}, {event.dialect})"
            run_id = self.store.recording_run(
                name,
                self.run_kind,
                model=event.model,
                backend=event.backend,
                dialect=event.dialect,
                checkpoint=self.checkpoint,
                dataset=str(event.config.get("dataset")) if event.config.get("dataset") else None,
                config=self.run_config,
            )
            self._runs[key] = run_id
            return run_id

    def _flush_text(self, ep: _Live, *, force: bool = False, conn: Connection | None = None) -> None:
        if ep.turn_index is None or not ep.text_dirty:
            return
        now = time.monotonic()
        if not force and now - ep.flushed_at < self.flush_interval_s:
            return
        params = {"ep_": ep.pk, "turn_": ep.turn_index, "raw_text": "".join(ep.text)}
        if conn is not None:
            conn.execute(_TURN_BY_KEY, params)
        else:
            with self._write() as c:
                c.execute(_TURN_BY_KEY, params)
        ep.text_dirty = False
        ep.flushed_at = now

    def _episode_update(self, conn: Connection, ep: _Live, **values: Any) -> None:
        conn.execute(_EPISODE_BY_PK, {"pk_": ep.pk, "updated_at": time.time(), **values})

    # ---- one handler per event type -----------------------------------------------------------------

    def _episode_started(self, e: EpisodeStarted) -> None:
        run_id = self._run_id(e)
        config = event_to_dict(e)["config"]  # JSON-safe copy (images or dataclasses inside become plain data)
        now = time.time()
        with self._write() as conn:
            sha = self.store.put_image(conn, e.image, sha256=e.image_sha256) if e.image is not None else e.image_sha256
            pk = conn.execute(
                insert(episodes)
                .values(
                    uid=e.episode_id,
                    run_id=run_id,
                    question=e.question,
                    image_sha256=sha if e.image is not None else None,
                    gold_answers=list(e.gold_answers),
                    model=e.model,
                    backend=e.backend,
                    dialect=e.dialect,
                    dataset=str(config.get("dataset")) if config.get("dataset") else None,
                    # The question's identity across runs, when the caller knows it (eval, GRPO rollouts).
                    item_key=str(config["item_key"]) if config.get("item_key") else None,
                    config=config,
                    status="running",
                    reason="",
                    started_at=e.started_at or now,
                    updated_at=now,
                    writer=self.writer,
                    extra={},
                    search_text=e.question,
                )
                .returning(episodes.c.id)
            ).scalar_one()
        with self._lock:
            self._live[e.episode_id] = _Live(pk=int(pk), uid=e.episode_id, question=e.question)

    def _turn_started(self, e: TurnStarted) -> None:
        ep = self._get(e.episode_id)
        with ep.lock:
            with self._write() as conn:
                self._flush_text(ep, force=True, conn=conn)  # a turn that never parsed keeps its text
                conn.execute(
                    insert(turns),
                    dict(
                        episode_id=ep.pk,
                        index=e.turn_index,
                        seq=ep.next_seq(),
                        raw_text="",
                        complete=False,
                        reason="",
                        argument="",
                        tokens=0,
                        latency_s=0.0,
                        started_at=time.time(),
                    ),
                )
                self._episode_update(conn, ep, n_turns=e.turn_index + 1)
            ep.turn_index, ep.text, ep.text_dirty, ep.flushed_at = e.turn_index, [], False, time.monotonic()

    def _text_delta(self, e: TextDelta) -> None:
        ep = self._get(e.episode_id)
        with ep.lock:
            ep.seq += 1
            if ep.turn_index != e.turn_index:
                return  # a delta outside its turn: nothing to attach it to
            ep.text.append(e.text)
            ep.text_dirty = True
            self._flush_text(ep)

    def _action_parsed(self, e: ActionParsed) -> None:
        ep = self._get(e.episode_id)
        with ep.lock:
            ep.response_tokens += e.tokens
            with self._write() as conn:
                conn.execute(
                    _TURN_BY_KEY,
                    dict(
                        ep_=ep.pk,
                        turn_=e.turn_index,
                        parsed_seq=ep.next_seq(),
                        raw_text=e.raw_text,
                        complete=True,
                        reason=e.reason,
                        action=e.kind,
                        argument=e.argument,
                        format_ok=e.format_ok,
                        error=e.error,
                        tokens=e.tokens,
                        latency_s=e.latency_s,
                    ),
                )
                self._episode_update(conn, ep, response_tokens=ep.response_tokens)
            if ep.turn_index == e.turn_index:
                ep.text, ep.text_dirty = [], False

    def _note(self, e: FormatError | BudgetExhausted | ModelError) -> None:
        ep = self._get(e.episode_id)
        payload = event_to_dict(e)
        for key in ("episode_id", "turn_index", "type"):
            payload.pop(key, None)
        with ep.lock:
            with self._write() as conn:
                conn.execute(
                    insert(events),
                    dict(episode_id=ep.pk, seq=ep.next_seq(), turn_index=e.turn_index, type=e.type, payload=payload),
                )
                if isinstance(e, FormatError):
                    ep.n_format_errors += 1
                    self._episode_update(conn, ep, n_format_errors=ep.n_format_errors)

    def _answer(self, e: Answer) -> None:
        ep = self._get(e.episode_id)
        with ep.lock:
            ep.answer = e.text
            with self._write() as conn:
                conn.execute(
                    insert(events),
                    dict(
                        episode_id=ep.pk,
                        seq=ep.next_seq(),
                        turn_index=e.turn_index,
                        type=e.type,
                        payload={"text": e.text},
                    ),
                )
                # Written now, not only at EpisodeFinished, so a kill right after the answer keeps it.
                self._episode_update(conn, ep, final_answer=e.text, search_text=ep.search_text())

    def _tool_started(self, e: ToolStarted) -> None:
        ep = self._get(e.episode_id)
        with ep.lock:
            if e.kind == "text_search":
                # Self-correction: the model text-searched, read the results, and searched again with a new query.
                if ep.n_text > 0 and e.argument not in ep.queries:
                    ep.self_corrected = True
                ep.n_text += 1
            elif e.kind == "image_search_region":
                ep.n_crop += 1
            else:
                ep.n_whole += 1
            ep.n_calls += 1
            if e.kind != "image_search_whole":
                ep.queries.append(e.argument)
            with self._write() as conn:
                conn.execute(
                    insert(tool_calls),
                    dict(
                        episode_id=ep.pk,
                        turn_index=e.turn_index,
                        call_index=e.call_index,
                        seq=ep.next_seq(),
                        kind=e.kind,
                        argument=e.argument,
                        provider=e.provider,
                        status="started",
                        items=[],
                        summary="",
                        information="",
                        cache_hit=False,
                        latency_s=0.0,
                        grounding_fallback=False,
                        grounding_note="",
                    ),
                )
                self._episode_update(
                    conn,
                    ep,
                    n_tool_calls=ep.n_calls,
                    n_text=ep.n_text,
                    n_whole=ep.n_whole,
                    n_crop=ep.n_crop,
                    self_corrected=ep.self_corrected,
                    search_text=ep.search_text(),
                )

    def _tool_finished(self, e: ToolFinished) -> None:
        ep = self._get(e.episode_id)
        r = e.result
        with ep.lock:
            with self._write() as conn:
                crop_sha = self.store.put_image(conn, r.crop_image) if r.crop_image is not None else None
                box = r.crop_box.as_tuple() if r.crop_box is not None else (None, None, None, None)
                values = dict(
                    finished_seq=ep.next_seq(),
                    status="finished",
                    provider=r.provider,
                    items=[event_to_dict(item) for item in r.items],
                    summary=r.summary,
                    information=e.information,
                    error=r.error,
                    cache_hit=r.cache_hit,
                    latency_s=r.latency_s,
                    crop_x0=box[0],
                    crop_y0=box[1],
                    crop_x1=box[2],
                    crop_y1=box[3],
                    crop_image_sha256=crop_sha,
                    grounding_fallback=r.grounding_fallback,
                    grounding_score=r.grounding_score,
                    grounding_note=r.grounding_note,
                )
                done = conn.execute(_TOOL_CALL_BY_KEY, {"ep_": ep.pk, "call_": e.call_index, **values})
                if done.rowcount == 0:  # no ToolStarted came first: keep the result anyway
                    conn.execute(
                        insert(tool_calls),
                        dict(
                            episode_id=ep.pk,
                            turn_index=e.turn_index,
                            call_index=e.call_index,
                            seq=values["finished_seq"],
                            kind=e.kind,
                            argument=e.argument,
                            **values,
                        ),
                    )

    def _episode_finished(self, e: EpisodeFinished) -> None:
        ep = self._get(e.episode_id)
        with ep.lock:
            if e.final_answer:
                ep.answer = e.final_answer
            with self._write() as conn:
                self._flush_text(ep, force=True, conn=conn)
                self._episode_update(
                    conn,
                    ep,
                    status=e.status,
                    reason=e.reason,
                    final_answer=e.final_answer,
                    n_turns=e.turns,
                    n_tool_calls=e.tool_calls,
                    response_tokens=e.response_tokens,
                    elapsed_s=e.elapsed_s,
                    format_ok=e.format_ok,
                    finished_at=time.time(),
                    search_text=ep.search_text(),
                )
        with self._lock:
            self._live.pop(e.episode_id, None)
