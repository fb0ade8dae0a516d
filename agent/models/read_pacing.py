"""Reading a model's token stream once per frame of whoever shows it, rather than once per token.

Each streamed token arrives in a socket read of its own, and each read wakes a thread, which then
waits for the GIL. Under load (20 sessions at 100 tokens/s on two cores) those wake-ups cost more than
the tokens' own work.

A consumer that shows the stream in frames (the app shows at most one every 40 ms) gains nothing from
reading more often than it shows. Such a consumer does two things:
- it keeps a `FramePace` up to date with when its next frame is due;
- it binds the pace to the thread that reads the stream, with `paced_by`.

Before a read that would block, the model client's network layer (`PacedNetworkBackend`) then sleeps
until just before the next frame. The reads that follow take every token that arrived in the meantime
without waiting: one read over plain HTTP, one per TLS record over HTTPS. When no pace is bound, or no
frame is due (a quiet stream), reads happen at once, so the first token after a pause is not held back.

A token that arrives in the last `lead_s` before a frame goes out with the frame after it, so the mean
added latency is about `lead_s`.
"""

from __future__ import annotations

import contextvars
import math
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore

_PACE: contextvars.ContextVar[FramePace | None] = contextvars.ContextVar("frame_pace", default=None)


class FramePace:
    """When the consumer's next frame is due, on `time.monotonic()`. It is written by the consumer and
    read by the stream's reader thread."""

    def __init__(self, interval_s: float, *, lead_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.lead_s = lead_s
        self._due: float | None = None
        self._idle = threading.Event()  # set while no frame is due: it cuts a reader's sleep short
        self._idle.set()

    def frame_due(self, at: float, interval_s: float | None = None) -> None:
        """The consumer has shown a frame; the next one is due `at`, and the ones after every `interval_s`
        (unchanged when not given)."""
        if interval_s is not None:
            self.interval_s = interval_s
        self._due = at
        self._idle.clear()

    def idle(self) -> None:
        """The consumer waits for anything at all: reads must not wait for a frame."""
        self._due = None
        self._idle.set()

    def read_at(self, now: float) -> float:
        """When a read that would block at `now` should happen: just before the first frame that can
        still show what it reads. Frames after the due one are assumed to follow every `interval_s`."""
        due = self._due
        if due is None:
            return now
        first = due - self.lead_s
        if now <= first:
            return first
        return first + math.ceil((now - first) / self.interval_s) * self.interval_s

    def wait_to_read(self) -> None:
        """Sleep until `read_at(now)`, or until the consumer goes idle."""
        now = time.monotonic()
        delay = self.read_at(now) - now
        if delay > 0:
            self._idle.wait(delay)


def current_pace() -> FramePace | None:
    """The pace bound to this thread's reads, if any."""
    return _PACE.get()


@contextmanager
def paced_by(pace: FramePace) -> Iterator[None]:
    """Pace the reads of model streams made in this thread (and in contexts copied from it)."""
    token = _PACE.set(pace)
    try:
        yield
    finally:
        _PACE.reset(token)


class _PacedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._poller: Any = None  # made on first use: poll(2), as select(2) fails on descriptors past 1023

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        pace = current_pace()
        if pace is not None and not self._readable_now():
            pace.wait_to_read()
        return self._inner.read(max_bytes, timeout)

    def _readable_now(self) -> bool:
        sock = self._inner.get_extra_info("socket")
        if sock is None:
            return True  # not a plain socket (a proxy tunnel, a test double): never delay it
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted but not yet read
        if pending is not None and pending():
            return True
        try:
            if not hasattr(select, "poll"):  # Windows
                return bool(select.select([sock], [], [], 0)[0])
            if self._poller is None:
                self._poller = select.poll()
                self._poller.register(sock, select.POLLIN)
            return bool(self._poller.poll(0))
        except (OSError, ValueError):
            return True  # a closed socket: let the read report it

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _PacedStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PacedNetworkBackend(httpcore.NetworkBackend):
    """httpcore's own network backend, with reads paced by the `FramePace` bound to the reading thread."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return _PacedStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _PacedStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def paced_transport(**kwargs: Any) -> Any:
    """An httpx.HTTPTransport (same arguments) whose connections read through `PacedNetworkBackend`.

    httpx has no public way to choose httpcore's network backend (encode/httpx#3180), so this swaps the
    backend of the transport's connection pool. If an upgrade renames the pool's attribute, the check
    below fails loudly at construction, and tests/agent/models/test_read_pacing.py fails with it.
    """
    import httpx

    transport = httpx.HTTPTransport(**kwargs)
    pool = transport._pool
    if not isinstance(pool, httpcore.ConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError(
            "httpx's transport no longer has the httpcore pool paced_transport expects; see agent/models/read_pacing.py"
        )
    pool._network_backend = PacedNetworkBackend(pool._network_backend)
    return transport
