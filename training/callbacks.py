"""`JobCallback`: keeps a job's row and its metric history current, and stops training when asked.

- `on_train_begin`: the job is `running`, with its `max_steps`.
- `on_log`: each logged dict is appended to `job_metrics` (append-only: the Train tab's charts) and the row's
  `step` and last metrics are updated. Only the main process writes.
- `on_save`: the row remembers the newest checkpoint folder.
- `on_step_end`: if the job's stop flag is set on any process (cancel = SIGTERM), every process stops at the
  end of this same step and saves a checkpoint there. The flag is all-reduced, so ranks never disagree about
  when to stop (one stopping early would leave the others waiting in a collective forever).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from transformers import TrainerCallback

from traces import jobs
from traces.store import TraceStore


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on at least one (a no-op without torch.distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def loggable(logs: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite values of a Trainer log dict (JSON has no NaN)."""
    out = {}
    for key, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


class JobCallback(TrainerCallback):
    def __init__(self, store: TraceStore | None, job_id: int | None, stop: threading.Event):
        self.store = store
        self.job_id = job_id
        self.stop = stop
        self.stopped_early = False
        self.last_checkpoint: str | None = None
        self.last: dict[str, float] = {}

    def _writes(self, state: Any) -> bool:
        return self.store is not None and self.job_id is not None and state.is_world_process_zero

    def on_train_begin(self, args, state, control, **kwargs):
        if self._writes(state):
            jobs.update_job(
                self.store, self.job_id, status="running", step=state.global_step, max_steps=state.max_steps
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = loggable(logs or {})
        if not values:
            return
        # The latest value of every metric: the end-of-training summary (train_runtime, ...) adds to the last
        # step's loss and reward instead of hiding them.
        self.last = {**self.last, **values}
        if self._writes(state):
            jobs.append_metrics(self.store, self.job_id, state.global_step, values)
            jobs.update_job(
                self.store,
                self.job_id,
                step=state.global_step,
                max_steps=state.max_steps,
                metrics={"last": self.last, "checkpoint": self.last_checkpoint},
            )

    def on_save(self, args, state, control, **kwargs):
        self.last_checkpoint = f"{args.output_dir}/checkpoint-{state.global_step}"
        if self._writes(state):
            jobs.update_job(self.store, self.job_id, metrics={"last": self.last, "checkpoint": self.last_checkpoint})

    def on_step_end(self, args, state, control, **kwargs):
        if any_process(self.stop.is_set()):
            self.stopped_early = True
            control.should_training_stop = True
            control.should_save = True  # a cancelled job keeps what it learned up to here
