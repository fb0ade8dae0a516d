"""The job as seen from inside the training process: its row, its stop flag, its final status.

`run_job` wraps one training run. It attaches to the job row the runner created (`--job-id`) or creates one
(a run started straight from the terminal), turns SIGTERM and Ctrl-C into the stop flag that `JobCallback`
honours at the end of a step (and rollouts honour mid-episode), and records how the run ended:

- `succeeded`, or `cancelled` when the stop flag ended it early (the checkpoint where it stopped is saved);
- `failed` with a one-line reason that says what to do (bad input, GPU out of memory, a server unreachable);
  the traceback goes to the log, and earlier checkpoints stay where they are.

Only the main process (rank 0) writes the row; every process gets the stop flag.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from traces import jobs
from traces.store import TraceStore, open_store
from training.config import LaunchSettings
from training.models import TrainingInputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def process_rank() -> int:
    """This process's rank under torchrun/accelerate (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class JobContext:
    """What a training function gets: where to record, and the flag that asks it to stop."""

    store: TraceStore
    job_id: int | None  # None on processes other than rank 0 when no row was given
    stop: threading.Event
    rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class JobResult:
    stopped_early: bool
    summary: str = ""  # one line for the terminal, e.g. where the model was written


def explain(exc: BaseException) -> str:
    """One line for the job row and the terminal: what failed and what to do."""
    if isinstance(exc, TrainingInputError):
        return str(exc)
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        return (
            f"GPU out of memory ({text[:200]}): lower --per-device-train-batch-size (raise "
            "--gradient-accumulation-steps to keep the batch), --max-length or --max-pixels, keep "
            "--gradient-checkpointing on, or use a ZeRO-3 accelerate config"
        )
    return f"{name}: {text}" if text else name


def _install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM (cancel) and the first Ctrl-C set the flag; a second Ctrl-C aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_term(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        if not stop.is_set():
            print("stop requested: finishing the current step, then saving a checkpoint", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)


def open_job(kind: str, name: str, config: dict[str, Any], launch: LaunchSettings) -> JobContext:
    """Attach to `launch.job_id` or create the row (main process); install the stop handlers."""
    store = open_store(launch.db)
    rank = process_rank()
    job_id = launch.job_id
    if rank == 0:
        if job_id is None:
            job_id = jobs.create_job(
                store,
                kind,
                name,
                config,
                command=[sys.executable, "-m", "training", *sys.argv[1:]],
                launched_by=os.environ.get("USER") or None,
            )
            jobs.update_job(store, job_id, pid=os.getpid(), host=socket.gethostname())
        else:
            current = jobs.get_job(store, job_id)
            if current.pid is None:
                jobs.update_job(store, job_id, pid=os.getpid(), host=socket.gethostname())
    if launch.job_id is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        job_id = _shared_job_id(job_id)
    stop = threading.Event()
    _install_stop_handlers(stop)
    return JobContext(store, job_id, stop, rank)


def _shared_job_id(job_id: int | None) -> int | None:
    """Under a bare `torchrun` every rank needs the row rank 0 just created: broadcast its id. (The runner
    creates the row before any process starts and passes --job-id instead.)"""
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # joins the process group torchrun set up (the Trainer reuses it)
    shared = [job_id]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def run_job(context: JobContext, work: Callable[[JobContext], JobResult]) -> int:
    """Run `work` and record how it ended; returns the process exit code."""
    try:
        result = work(context)
    except BaseException as exc:  # noqa: BLE001 - every ending is recorded, then the exception goes on
        message = explain(exc) if not isinstance(exc, KeyboardInterrupt) else "aborted (second Ctrl-C)"
        traceback.print_exc()
        print(f"error: {message}", file=sys.stderr, flush=True)
        if context.is_main and context.job_id is not None:
            status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
            jobs.finish_job(context.store, context.job_id, status, error=message)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        return EXIT_BAD_INPUT if isinstance(exc, TrainingInputError) else EXIT_FAILED
    status = "cancelled" if result.stopped_early else "succeeded"
    if context.is_main and context.job_id is not None:
        jobs.finish_job(context.store, context.job_id, status)
    if result.summary:
        print(result.summary, flush=True)
    print(f"job {context.job_id}: {status}", flush=True)
    return EXIT_OK
