"""GRPO rollouts into the trace store, written on a thread of their own.

A rollout is worth keeping whole, so it is written once it is judged: its events in one transaction (one commit
instead of one per event), then its verdict and its reward with the training step. The writes happen on one
writer thread: the rollout call returns as soon as its episodes are judged, and the device never waits for the
store's fsyncs (measured with bench/rollout_overhead.py: writing in the episode threads left the model idle for
the tail of every call). What a crash loses is what is still queued: normally the last call's rollouts.
A failed write is reported on stderr and training goes on: a trace-store hiccup must not end a long training run.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Sequence

from agent.events import Event
from traces.recorder import Recorder
from traces.store import TraceStore
from traces.verdicts import set_judgement, set_reward
from training.rollout import RolloutResult

_STOP = object()


class RolloutRecorder:
    """`on_result` for `training.rollout.Rollouts`; call `close()` to wait for every queued rollout."""

    def __init__(self, store: TraceStore, run_id: int, *, checkpoint: str | None = None):
        self.store = store
        self.recorder = Recorder(store, run_kind="rollout", run_id=run_id, checkpoint=checkpoint)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rollout-writer", daemon=True)
        self._thread.start()

    def __call__(self, result: RolloutResult, events: Sequence[Event], step: int) -> None:
        self._queue.put((result, list(events), step))

    def close(self, timeout: float = 120.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self.recorder.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            result, events, step = item
            try:
                self._write(result, events, step)
            except Exception as exc:
                message = f"could not record rollout {result.finished.episode_id}: {type(exc).__name__}: {exc}"
                print(f"warning: {message}", file=sys.stderr, flush=True)

    def _write(self, result: RolloutResult, events: list[Event], step: int) -> None:
        uid = result.finished.episode_id
        with self.recorder.transaction():
            for event in events:
                self.recorder(event)
        if result.judgement is not None:
            j = result.judgement
            set_judgement(self.store, uid, j.verdict, j.reason, j.judge)
        set_reward(self.store, uid, result.reward, train_step=step)
