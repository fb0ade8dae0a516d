"""Local inference with transformers: Qwen2.5-VL (or any compatible image-text-to-text model).

Loads with the same `from_pretrained` calls for a hub id and a local directory; picks CUDA + bf16 when a
GPU is present, else CPU + float32. Generation runs in a worker thread and streams token by token; it
stops as soon as an action tag closes (the text is cut right after the tag) or when `cancel` is set.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from agent.models.base import BackendError, Delta, Message, split_images

_END = object()


class _QueueStreamer:
    """transformers streamer that forwards generated token ids to a queue (the prompt is skipped)."""

    def __init__(self, out: queue.Queue):
        self.out = out
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.out.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.out.put(_END)


class TransformersBackend:
    backend = "transformers"

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ):
        self.model = model
        self.adapter = adapter
        self.device_request = device
        self.dtype_request = dtype
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self._loaded: tuple[Any, Any] | None = None
        self._load_lock = threading.Lock()
        self.device = device or "auto"
        self.load_seconds: float | None = None

    @classmethod
    def from_loaded(cls, model: Any, processor: Any, name: str, **kwargs: Any) -> TransformersBackend:
        """Wrap a model already in memory (benchmarks, trainers holding the policy) without reloading it."""
        backend = cls(name, **kwargs)
        backend._loaded = (model, processor)
        backend.device = str(next(model.parameters()).device)
        return backend

    @property
    def endpoint(self) -> str:
        adapter = f"+{self.adapter}" if self.adapter else ""
        return f"transformers:{self.model}{adapter}@{self.device}"

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> None:
        """Load weights and processor once (thread-safe). Raises BackendError with what to do."""
        with self._load_lock:
            if self._loaded is not None:
                return
            start = time.monotonic()
            import torch
            from transformers import AutoModelForImageTextToText

            from agent.models.qwen_processor import load_processor

            device = self.device_request or ("cuda" if torch.cuda.is_available() else "cpu")
            if device.startswith("cuda") and not torch.cuda.is_available():
                raise BackendError(self.endpoint, "--device cuda was asked for but no CUDA GPU is visible")
            dtype_name = self.dtype_request or ("bfloat16" if device.startswith("cuda") else "float32")
            self.device = device
            try:
                processor = load_processor(self.model, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
                model = AutoModelForImageTextToText.from_pretrained(self.model, dtype=getattr(torch, dtype_name))
                if self.adapter:
                    model = _with_adapter(model, self.adapter)
            except BackendError:
                raise
            except Exception as exc:  # missing dir, no hub access, wrong architecture: one clear line
                raise BackendError(
                    self.endpoint,
                    f"cannot load model: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                    "(with no internet, pass a local directory; `python -m agent tiny DIR` writes a tiny one)",
                ) from None
            model.to(device).eval()
            self._loaded = (model, processor)
            self.load_seconds = time.monotonic() - start

    def parameter_count(self) -> int:
        self.load()
        assert self._loaded is not None
        return sum(p.numel() for p in self._loaded[0].parameters())

    def prepare(self, messages: Sequence[Message]) -> dict[str, Any]:
        """Tokenised model inputs for a chat (images included), on the model's device."""
        self.load()
        assert self._loaded is not None
        model, processor = self._loaded
        template_messages, images = split_images(messages)
        prompt = processor.apply_chat_template(template_messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[prompt], images=images or None, return_tensors="pt")
        return {k: v.to(model.device) if hasattr(v, "to") else v for k, v in inputs.items()}

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        inputs = self.prepare(messages)
        model, processor = self._loaded  # type: ignore[misc]
        tokenizer = processor.tokenizer
        out: queue.Queue = queue.Queue()
        halt = threading.Event()

        class _Halt(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full(
                    (input_ids.shape[0],),
                    halt.is_set() or bool(cancel and cancel.is_set()),
                    dtype=torch.bool,
                    device=input_ids.device,
                )

        generate_kwargs: dict[str, Any] = dict(
            **inputs,
            max_new_tokens=max_new_tokens,
            streamer=_QueueStreamer(out),
            stopping_criteria=StoppingCriteriaList([_Halt()]),
            do_sample=self.temperature > 0,
            pad_token_id=tokenizer.pad_token_id,
        )
        if self.temperature > 0:
            generate_kwargs.update(temperature=self.temperature, top_p=self.top_p)

        def work() -> None:
            try:
                if self.seed is not None:
                    torch.manual_seed(self.seed)
                with torch.inference_mode():
                    model.generate(**generate_kwargs)
            except Exception as exc:  # surfaced to the consumer as a BackendError
                out.put(exc)
                out.put(_END)

        thread = threading.Thread(target=work, name="generate", daemon=True)
        thread.start()
        ids: list[int] = []
        emitted = ""
        try:
            while True:
                item = out.get()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise BackendError(self.endpoint, f"generation failed: {type(item).__name__}: {item}")
                ids.extend(item)
                text = tokenizer.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
                    continue
                cut = _first_stop_end(text, stop)
                if cut is not None:
                    text = text[:cut]
                    halt.set()
                delta = text[len(emitted) :]
                yield Delta(delta, len(item))
                emitted = text
                if halt.is_set():
                    break
        finally:
            halt.set()
            thread.join(timeout=60)


def _with_adapter(model: Any, adapter: str) -> Any:
    """The base model with a peft LoRA adapter folded in (a merged model decodes as fast as the base)."""
    from pathlib import Path

    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ValueError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def _first_stop_end(text: str, stop: Sequence[str]) -> int | None:
    ends = [text.find(s) + len(s) for s in stop if s and s in text]
    return min(ends) if ends else None
