"""Sampling the turns of many concurrent episodes with transformers: one batched `generate` per round.

Episode threads call `BatchedGenerator.generate` and block; the thread that holds the (unwrapped) model calls
`serve` until every episode is done. A round starts when every episode still running is waiting for its next
turn, or `wait_s` after the last request arrived, so an episode busy in a slow tool call holds the others back
only briefly.

Why one batched call instead of a `generate` per thread: Qwen2.5-VL keeps per-call state on the module
(`rope_deltas`), so concurrent `generate` calls on one model corrupt each other; and one batch uses a GPU far
better than many small calls. Each round builds a fresh `GenerationConfig` (stop strings inside it, as
transformers now wants). Rows are left-padded; image inputs are concatenated in row order, which is how
Qwen2.5-VL matches image features to image tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.models.base import BackendError
from training.policy import TurnOutput, TurnRequest


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0


@dataclass
class _Pending:
    request: TurnRequest
    done: threading.Event = field(default_factory=threading.Event)
    output: TurnOutput | None = None
    error: str | None = None


class BatchedGenerator:
    """See the module docstring. `suppress_token_ids`: never sampled (an image token would break the features)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        sampling: Sampling,
        *,
        wait_s: float = 0.02,
        suppress_token_ids: tuple[int, ...] = (),
        name: str = "policy",
    ):
        self.model = model
        self.processor = processor
        self.sampling = sampling
        self.wait_s = wait_s
        self.suppress_token_ids = suppress_token_ids
        self.endpoint = f"transformers:{name}"
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._running = 0
        self._last_arrival = 0.0
        self.rounds: list[tuple[int, float]] = []  # (rows, seconds) per generate call, for benchmarks and logs

    def begin(self, episodes: int) -> None:
        """Declare `episodes` episodes about to run, before their threads start: a round then waits for all of
        them instead of firing when only the threads that happened to start first have asked."""
        with self._cond:
            self._running += episodes

    @contextmanager
    def episode(self) -> Iterator[None]:
        """The block an episode (declared with `begin`) runs in; leaving it means it will ask for no more turns."""
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def generate(self, request: TurnRequest, cancel: threading.Event | None) -> TurnOutput:
        pending = _Pending(request)
        with self._cond:
            self._pending.append(pending)
            self._last_arrival = time.monotonic()
            self._cond.notify_all()
        while not pending.done.wait(0.05):
            if cancel is not None and cancel.is_set():
                with self._cond:
                    if pending in self._pending:  # not started yet: withdraw it
                        self._pending.remove(pending)
                        return TurnOutput([], None)
        if pending.error is not None:
            raise BackendError(self.endpoint, pending.error)
        assert pending.output is not None
        return pending.output

    def serve(self, finished: Callable[[], bool]) -> None:
        """Run rounds until `finished()` is true and nothing is waiting. Call from the thread owning the model."""
        while True:
            with self._cond:
                while not self._pending:
                    if finished():
                        return
                    self._cond.wait(0.05)
                while len(self._pending) < self._running and time.monotonic() - self._last_arrival < self.wait_s:
                    self._cond.wait(self.wait_s)
                batch, self._pending = self._pending, []
            self._round(batch)

    def _round(self, batch: list[_Pending]) -> None:
        start = time.monotonic()
        try:
            outputs = self._generate([p.request for p in batch])
        except Exception as exc:  # every waiting episode hears about it (e.g. CUDA out of memory)
            message = f"generation failed: {type(exc).__name__}: {exc}"
            for p in batch:
                p.error = message
                p.done.set()
            return
        self.rounds.append((len(batch), time.monotonic() - start))
        for p, output in zip(batch, outputs, strict=True):
            p.output = output
            p.done.set()

    def _inputs(self, requests: list[TurnRequest]) -> dict[str, Any]:
        import torch

        pad = self.processor.tokenizer.pad_token_id
        width = max(len(r.ids) for r in requests)
        input_ids = torch.full((len(requests), width), pad, dtype=torch.long)
        attention = torch.zeros((len(requests), width), dtype=torch.long)
        type_ids = torch.zeros((len(requests), width), dtype=torch.long)
        has_types = False
        pixel_values, grids = [], []
        for row, r in enumerate(requests):
            offset = width - len(r.ids)
            input_ids[row, offset:] = torch.tensor(r.ids, dtype=torch.long)
            attention[row, offset:] = 1
            if "mm_token_type_ids" in r.mm:  # covers the prompt only; the rest of the row is text (0)
                types = r.mm["mm_token_type_ids"][0]
                type_ids[row, offset : offset + types.shape[0]] = types
                has_types = True
            if "pixel_values" in r.mm:
                pixel_values.append(r.mm["pixel_values"])
                grids.append(r.mm["image_grid_thw"])
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        if has_types:
            inputs["mm_token_type_ids"] = type_ids
        if pixel_values:
            inputs["pixel_values"] = torch.cat(pixel_values)
            inputs["image_grid_thw"] = torch.cat(grids)
        device = self.model.device
        return {k: v.to(device) for k, v in inputs.items()}

    def _generate(self, requests: list[TurnRequest]) -> list[TurnOutput]:
        import torch
        from transformers import GenerationConfig

        tokenizer = self.processor.tokenizer
        s = self.sampling
        sample = s.temperature > 0
        config = GenerationConfig(
            max_new_tokens=max(r.max_new_tokens for r in requests),
            do_sample=sample,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stop_strings=sorted({stop for r in requests for stop in r.stop}) or None,
            suppress_tokens=list(self.suppress_token_ids) or None,
            repetition_penalty=s.repetition_penalty,
            disable_compile=True,
            **({"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p} if sample else {}),
        )
        inputs = self._inputs(requests)
        width = inputs["input_ids"].shape[1]
        with torch.no_grad():
            out = self.model.generate(**inputs, generation_config=config, tokenizer=tokenizer)
        outputs = []
        for row, r in enumerate(requests):
            ids = out[row, width:].tolist()[: r.max_new_tokens]
            if tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
            while ids and ids[-1] == tokenizer.pad_token_id:  # rows that stopped early are padded
                ids.pop()
            outputs.append(TurnOutput(ids, None))
        return outputs
