"""Loading a checkpoint for training, and saving what training produced in the layouts the app and vLLM read.

Qwen2-VL / Qwen2.5-VL processors load through `agent.models.qwen_processor` (no torchvision on our CPUs); any
other image-text-to-text model through `AutoProcessor`. A folder without a chat template is refused up front:
training would otherwise render conversations in some default layout the model never sees at inference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class TrainingInputError(ValueError):
    """Bad input to a training job (model, data, settings): the message says what to do. Nothing was trained."""


def load_processor(path: str, *, max_pixels: int | None = None) -> Any:
    from agent.models.qwen_processor import load_processor as load_any_processor

    try:
        processor = load_any_processor(path, max_pixels=max_pixels)
    except Exception as exc:  # a missing folder, no hub access, an unknown architecture: one clear line
        raise TrainingInputError(
            f"cannot load the processor of {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(with no internet, pass a local folder; `python -m training teach-tiny DIR` writes a tiny one)"
        ) from None
    if not processor.chat_template:
        raise TrainingInputError(
            f"{path} has no chat template (chat_template.jinja or the tokenizer config's chat_template): training "
            "renders every conversation with the model's own template, so add the one it was trained with"
        )
    return processor


def load_model(path: str, *, bf16: bool) -> Any:
    import torch
    from transformers import AutoModelForImageTextToText

    try:
        return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32)
    except Exception as exc:
        raise TrainingInputError(
            f"cannot load model {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


def load_for_training(path: str, *, max_pixels: int | None, bf16: bool) -> tuple[Any, Any]:
    """(model, processor) of the checkpoint to train; the processor first, so that a folder without a chat
    template is refused before any weight is read."""
    processor = load_processor(path, max_pixels=max_pixels)
    return load_model(path, bf16=bf16), processor


def is_vision_parameter(name: str) -> bool:
    """The vision tower and its projector (Qwen-VL's `visual.*`, merger included)."""
    return "visual" in name.split(".")


def save_processor(processor: Any, out: Path) -> None:
    processor.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)


def save_merged(model: Any, processor: Any, out: Path) -> Path:
    """A PEFT model with its adapters folded in, saved as a plain checkpoint (app, vLLM, the next stage)."""
    merged = model.merge_and_unload()
    merged.save_pretrained(out)
    save_processor(processor, out)
    return out


def save_trained(trainer: Any, processor: Any, out: Path, *, peft: bool, merge: bool) -> tuple[Path, Path | None]:
    """What a trainer produced: OUT/adapter (LoRA) or OUT/model (full fine-tune), and with `merge` a LoRA model
    folded into OUT/merged. Returns (final folder, merged folder or None)."""
    final = out / ("adapter" if peft else "model")
    trainer.save_model(str(final))
    merged = None
    if trainer.is_world_process_zero():  # save_model is collective (ZeRO-3 gathers); these files are written once
        save_processor(processor, final)
        if peft and merge:
            merged = save_merged(trainer.model, processor, out / "merged")
    return final, merged


def saved_summary(final: Path, merged: Path | None) -> str:
    """Where a job's model went, for its job row: the merged model when there is one."""
    return f"merged model: {merged}" if merged else f"{final.name}: {final}"
