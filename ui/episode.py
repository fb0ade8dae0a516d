"""Running one episode for the app: the whole episode in one GPU call, recorded event by event, and handed
to the page in batches.

The loop runs in a worker thread. Every event is handed to the trace store's recorder as soon as it exists,
whatever the page does, so a closed tab or a crashed renderer never loses a trace; the closing event is
written before the page sees it. The page takes whatever events have piled up since its last update in
one batch, at most one batch per frame interval (40 ms, longer while the process is busy): when tokens
arrive faster than the browser can be updated, updates get bigger rather than later. The first event
after a quiet spell goes out at once. The batches are an async generator, driven by the event loop
without a thread hop per frame. Only the page coalesces: the worker reads the model's stream as it comes
(the backend knows nothing of frames) and appends each event to a buffer that the page drains per frame.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from agent.config import ModelConfig, public_config
from agent.events import EpisodeFinished, Event
from agent.loop import Budgets, run_episode
from agent.protocol import get_dialect
from agent.tools.config import ToolConfig
from ui.errors import friendly_error
from ui.gpu import gpu_task
from ui.render import EpisodeView
from ui.runtime import Runtime

log = logging.getLogger("ui")

# ZeroGPU bills and limits by the declared duration; 10 tool calls and 8192 tokens of a 7B model fit.
EPISODE_GPU_SECONDS = 240

_runtime: Runtime | None = None


def set_runtime(runtime: Runtime) -> None:
    """The app's runtime, reachable from the GPU function (whose arguments must pickle on ZeroGPU)."""
    global _runtime
    _runtime = runtime


def current_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the app runtime is not set up (ui.episode.set_runtime)")
    return _runtime


@dataclass(frozen=True)
class EpisodeRequest:
    """Everything one episode needs, all picklable (ZeroGPU sends it to the GPU process)."""

    question: str
    image: Image.Image | None
    model: ModelConfig
    tools: ToolConfig
    budgets: Budgets
    gold_answers: tuple[str, ...] = ()
    episode_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    settings: dict[str, Any] = field(default_factory=dict)  # recorded with the episode (no secrets)


@gpu_task(EPISODE_GPU_SECONDS)
def run_whole_episode(request: EpisodeRequest) -> Iterator[Event]:
    """The one GPU-bound call: a whole episode, every turn and tool call."""
    runtime = current_runtime()
    cancel = runtime.episode_flag(request.episode_id)
    with runtime.episode_slot(cancel) as started:
        if not started:
            return  # stopped while it waited for a slot: nothing ran, nothing to record
        backend = runtime.backend(request.model)
        toolbox = runtime.toolbox(request.tools, backend)
        yield from run_episode(
            request.question,
            request.image,
            backend,
            toolbox,
            dialect=get_dialect(request.model.dialect, request.model.prompts_file),
            budgets=request.budgets,
            cancel=cancel,
            episode_id=request.episode_id,
            gold_answers=request.gold_answers,
            config={"model": public_config(request.model), "app": request.settings, "source": "app"},
        )


_END = object()


@dataclass(frozen=True)
class _Crash:
    message: str


class _Mailbox:
    """What an episode's worker thread hands the page's event loop, and how the loop waits for it.

    A put wakes the loop only when the page waits for it: for any item while the page idles, for the
    stream's last item while it sleeps out a frame interval. Tokens that arrive mid-frame wake nothing: on
    a busy machine, waking the event loop from another thread costs more than a token's own work.
    (asyncio.Queue is not thread-safe, and janus-style queues wake the loop on every put.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._last_queued = False
        self._want: str | None = None  # "any" or "last" while the page waits
        self._waiter: asyncio.Future | None = None

    def put(self, item: Any) -> None:
        """From the worker thread."""
        with self._lock:
            self._items.append(item)
            self._last_queued = self._last_queued or _is_last(item)
            waiter = self._waiter if self._satisfied(self._want) else None
            if waiter is not None:
                self._want = self._waiter = None
        if waiter is not None:
            try:
                self._loop.call_soon_threadsafe(_settle, waiter)
            except RuntimeError:  # the loop is closed (the app is shutting down): nobody is waiting any more
                pass

    def _satisfied(self, want: str | None) -> bool:
        return bool(self._items) if want == "any" else want == "last" and self._last_queued

    async def wait(self, want: str, timeout_s: float) -> bool:
        """Wait until `want` ("any": an item is queued; "last": the stream's last item is) or the timeout;
        True when it holds."""
        deadline = self._loop.time() + timeout_s
        while True:
            with self._lock:
                if self._satisfied(want):
                    return True
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    return False
                self._want, self._waiter = want, self._loop.create_future()
                waiter = self._waiter
            timer = self._loop.call_later(remaining, _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                with self._lock:
                    if self._waiter is waiter:
                        self._want = self._waiter = None

    def take(self) -> list[Any]:
        """Everything queued, up to and including the stream's first last item."""
        batch: list[Any] = []
        with self._lock:
            while self._items:
                batch.append(self._items.popleft())
                if _is_last(batch[-1]):
                    break
            self._last_queued = any(_is_last(item) for item in self._items)
        return batch

    def empty(self) -> bool:
        with self._lock:
            return not self._items


def _settle(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def event_batches(
    events: Callable[[], Iterator[Event]],
    *,
    cancel: threading.Event,
    record: Callable[[Event], None],
    record_and_wait: Callable[[Event], None] | None = None,
    tick_s: float = 1.0,
    min_interval_s: float = 0.04,
    max_interval_s: float = 0.1,
) -> AsyncIterator[list[Event]]:
    """Run `events()` in a worker thread, record each event, and yield lists of the events that arrived
    since the last yield. Yields [] every `tick_s` while nothing arrives (so clocks can advance).
    `record` may queue the write (traces.background); the closing event goes through `record_and_wait`
    (default: `record`), which must return only once it is written.

    An async generator, so the page's frames are made on the event loop: a sync generator would cost
    Gradio two thread hops per frame, which under load cost more than the frame itself.

    The stream always ends with an EpisodeFinished: when the loop did not send one (its generator was
    closed from outside, or it crashed), one is made here, recorded, and yielded, so no trace is left open.
    Closing this generator (the page was reloaded or closed) leaves the episode running: it goes on to its
    end within its budgets and is recorded, so it can be reopened in the Traces tab. Only `cancel` stops it.
    """
    record_final = record_and_wait or record
    out = _Mailbox(asyncio.get_running_loop())
    interval = min_interval_s

    def work() -> None:
        view = EpisodeView()
        gen = events()
        try:
            for event in gen:
                view.apply(event)
                if isinstance(event, EpisodeFinished):
                    _record(record_final, event)  # the page learns of the end only once the trace is complete
                    out.put(event)
                    return
                out.put(event)
                _record(record, event)  # recorded whatever the page does, even if it is gone
                if cancel.is_set() and _is_remote(gen):
                    break  # a ZeroGPU process cannot see our flag: close its stream instead
        except BaseException as exc:  # the page must get a message, the trace a closing event
            out.put(_Crash(friendly_error(exc)))
            closing = _closing_event(view, "error", friendly_error(exc))
        else:
            closing = _closing_event(
                view, "cancelled" if cancel.is_set() else "error", "the episode stream ended early"
            )
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing a broken generator must not mask what happened
                    log.debug("closing the episode stream failed", exc_info=True)
            out.put(_END)
        if closing is not None:
            _record(record_final, closing)
            out.put(closing)
            out.put(_END)

    worker = threading.Thread(target=work, name="episode", daemon=True)
    worker.start()
    last_yield = -math.inf
    while True:
        # Frames are capped at one per interval, since each re-renders and re-sends the panel: tokens
        # that arrive meanwhile join the next frame. The stream's end cuts a frame's wait short.
        due = last_yield + interval
        if due > time.monotonic():
            if not await out.wait("last", due - time.monotonic()):
                interval = frame_interval(interval, time.monotonic() - due, min_interval_s, max_interval_s)
        if out.empty():  # a quiet spell: the next event goes out at once
            if not await out.wait("any", tick_s):
                yield []
                continue
        batch = out.take()
        events_now = [e for e in batch if not isinstance(e, _Crash) and e is not _END]
        crash = next((e for e in batch if isinstance(e, _Crash)), None)
        if events_now:
            last_yield = time.monotonic()
            yield events_now
        if crash is not None:
            raise EpisodeCrashed(crash.message)
        if any(e is _END for e in batch) and not worker.is_alive() and out.empty():
            return
        if any(isinstance(e, EpisodeFinished) for e in events_now):
            return


def frame_interval(interval: float, lateness: float, shortest: float, longest: float) -> float:
    """The next frame interval, given how late the event loop woke for the last frame.

    A late wake-up means the process is busy (the loop has a backlog, or threads hold the GIL); every
    frame re-renders and re-sends a panel, so each episode then spaces its frames out, up to `longest`,
    and bigger frames carry the same tokens for less work. On time, it comes back down to `shortest`.
    Every streaming episode sees the same lateness, so they back off together.
    """
    if lateness > 0.25 * interval:
        return min(longest, interval * 1.25)
    if lateness < 0.1 * interval:
        return max(shortest, interval * 0.95)
    return interval


def _is_last(item: object) -> bool:
    return item is _END or isinstance(item, _Crash | EpisodeFinished)


class EpisodeCrashed(RuntimeError):
    """The episode stopped on an unexpected error; the message is written for the page."""


def _is_remote(gen: object) -> bool:
    return not inspect.isgenerator(gen)  # a plain generator runs here; anything else is a proxy stream


def _record(record: Callable[[Event], None], event: Event) -> None:
    try:
        record(event)
    except Exception:  # a store failure must not kill the live view; it is logged loudly instead
        log.exception("could not record %s", type(event).__name__)


def _closing_event(view: EpisodeView, status: str, reason: str) -> EpisodeFinished | None:
    if not view.episode_id or view.finished is not None:
        return None
    return EpisodeFinished(
        episode_id=view.episode_id,
        status=status,  # type: ignore[arg-type]
        final_answer=None,
        turns=len(view.turns),
        tool_calls=view.tool_calls,
        response_tokens=view.response_tokens,
        elapsed_s=view.elapsed_s(time.time()),
        format_ok=False,
        reason=reason,
    )
