"""A Recorder fed through one writer thread, for processes that stream many episodes at once (the app).

A plain `Recorder` writes in the caller's thread: the thread that reads an episode's tokens also waits for
the store (a commit's fsync, then every other episode's commit queued before it on the store's lock). With
twenty episodes streaming, those waits held tokens back from the page for hundreds of milliseconds. Here the
producing threads only enqueue; one thread applies the events in arrival order (so each episode's order is
kept) and does all the waiting.

What a crash loses grows by what is still queued, normally nothing or a few milliseconds of events: the
writer keeps up unless the store stalls. An episode's last event can be recorded with `record_now`, which
returns only once it is written, so nobody is told an episode ended before its trace is complete.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

from agent.events import Event, TextDelta
from traces.recorder import Recorder

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class BackgroundRecorder:
    """Call it with events like a Recorder; it returns at once and the writer thread records them."""

    def __init__(self, recorder: Recorder, *, name: str = "trace-writer", delta_wait_s: float = 0.25):
        self.recorder = recorder
        # Tokens (TextDelta) do not wake the writer: the Recorder only buffers them until its next flush,
        # and waking a thread per token cost more than the token's own work. Any other event wakes it at
        # once; queued tokens are picked up then or after `delta_wait_s`.
        self.delta_wait_s = delta_wait_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if self._closed:
            raise RuntimeError("the background recorder is closed")
        self._queue.put((event, None))
        if not isinstance(event, TextDelta):
            self._wake.set()

    def record_now(self, event: Event, timeout: float | None = 60.0) -> None:
        """Queue `event` behind everything before it and wait until it is written; raise what the write raised."""
        if self._closed:
            raise RuntimeError("the background recorder is closed")
        waiter = _Waiter()
        self._queue.put((event, waiter))
        self._wake.set()
        if not waiter.done.wait(timeout):
            raise TimeoutError(f"the trace store did not record {type(event).__name__} within {timeout} s")
        if waiter.error is not None:
            raise waiter.error

    def close(self, timeout: float = 30.0) -> None:
        """Record everything queued, stop the thread, then close the Recorder (unfinished episodes are
        marked interrupted)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(timeout)
        self.recorder.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.delta_wait_s)
            self._wake.clear()
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    return
                self._write(*item)

    def _write(self, event: Event, waiter: _Waiter | None) -> None:
        try:
            self.recorder(event)
        except BaseException as exc:  # one failed write must not stop the recording of every other episode
            if waiter is None:
                log.exception(
                    "could not record %s of episode %s", type(event).__name__, getattr(event, "episode_id", "?")
                )
            else:
                waiter.error = exc
        finally:
            if waiter is not None:
                waiter.done.set()
