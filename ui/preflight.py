"""Checks before loading a model, so a doomed load fails in a second with advice instead of after minutes."""

from __future__ import annotations

import re
from pathlib import Path

from agent.config import ModelConfig

# Above this size a CPU is minutes per turn and tens of GB of RAM: refuse unless the user insists.
CPU_LIMIT_BILLIONS = 3.0
_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")


def approx_billions(model: str) -> float | None:
    """Parameter count in billions: from a local checkpoint's weight files (2 bytes per parameter, bf16)
    or from the size in a hub id ("Qwen2.5-VL-7B-Instruct" → 7). None when unknown."""
    path = Path(model)
    if path.is_dir():
        total = sum(f.stat().st_size for f in path.glob("*.safetensors")) or sum(
            f.stat().st_size for f in path.glob("*.bin")
        )
        return total / 2e9 if total else None
    match = _SIZE_IN_NAME.search(model.rsplit("/", 1)[-1])
    return float(match.group(1)) if match else None


def model_problem(cfg: ModelConfig, *, cuda_available: bool, allow_large_cpu: bool = False) -> str | None:
    """Why loading `cfg` here would fail or be unusable, with what to do; None when it should be fine."""
    if cfg.backend != "transformers":
        return None
    device = cfg.device or ("cuda" if cuda_available else "cpu")
    if device.startswith("cuda") and not cuda_available:
        return f"--device {device} was asked for but this machine has no CUDA GPU. Drop --device, or serve the model elsewhere and use --backend openai --base-url URL."
    size = approx_billions(cfg.model)
    if device == "cpu" and not allow_large_cpu and size is not None and size >= CPU_LIMIT_BILLIONS:
        return (
            f"{cfg.model} (~{size:g}B parameters) needs a GPU: on this CPU it would take tens of GB of RAM and minutes "
            "per turn. Options: run on a GPU machine; serve it with vLLM (vllm serve MODEL) and start the app with "
            "--backend openai --base-url http://HOST:8000/v1; or smoke-test with the tiny model "
            "(python -m agent tiny /tmp/tiny && python app.py --model /tmp/tiny/vlm). --allow-large-cpu overrides this check."
        )
    return None
