"""Model and episode configuration: dataclasses with working defaults, overridable by flags and env.

API keys come only from the environment (OPENAI_API_KEY) and are never stored in events or traces.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from agent.loop import Budgets
from agent.models.base import ModelBackend
from agent.protocol import DIALECTS

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


@dataclass(frozen=True)
class ModelConfig:
    backend: Literal["transformers", "openai"] = field(
        default="transformers",
        metadata={
            "help": "transformers (local weights) or openai (any OpenAI-compatible server: vLLM, SGLang, hosted)"
        },
    )
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "hub id or local directory (transformers), or the served model name (openai)"},
    )
    base_url: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata={"help": "OpenAI-compatible base URL, e.g. a vLLM server (env OPENAI_BASE_URL)"},
    )
    device: str | None = field(default=None, metadata={"help": "cuda, cuda:1 or cpu; default: cuda when present"})
    dtype: str | None = field(default=None, metadata={"help": "torch dtype; default bfloat16 on GPU, float32 on CPU"})
    min_pixels: int | None = field(
        default=None, metadata={"help": "lower bound on image pixels after resizing (processor default when unset)"}
    )
    max_pixels: int | None = field(
        default=1280 * 28 * 28,
        metadata={"help": "upper bound on image pixels after resizing; bounds vision tokens and memory"},
    )
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature; 0 is greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    dialect: str = field(default="deepmmsearch", metadata={"help": f"protocol dialect: {', '.join(DIALECTS)}"})
    prompts_file: str | None = field(
        default=None, metadata={"help": "TOML file overriding the dialect's prompts (keys of agent.protocol.Prompts)"}
    )

    def __post_init__(self) -> None:
        if self.backend not in ("transformers", "openai"):
            raise ValueError(f"unknown backend {self.backend!r}: choose transformers or openai")
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}: choose one of {sorted(DIALECTS)}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    defaults = ModelConfig()
    for f in dataclasses.fields(ModelConfig):
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"default": None, "help": f.metadata["help"] + f" (default: {getattr(defaults, f.name)})"}
        if f.name == "backend":
            kwargs["choices"] = ["transformers", "openai"]
        elif f.name == "dialect":
            kwargs["choices"] = sorted(DIALECTS)
        elif f.name in ("min_pixels", "max_pixels"):
            kwargs["type"] = int
        elif f.name in ("temperature", "top_p"):
            kwargs["type"] = float
        group.add_argument(flag, **kwargs)
    group = parser.add_argument_group("budgets")
    for f in dataclasses.fields(Budgets):
        group.add_argument("--" + f.name.replace("_", "-"), type=int, default=None, help=f"default {f.default}")


def model_config_from_args(args: argparse.Namespace) -> ModelConfig:
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(ModelConfig)}
    if values["base_url"] is None and os.environ.get("OPENAI_BASE_URL"):
        values["base_url"] = os.environ["OPENAI_BASE_URL"]
    return ModelConfig(**{k: v for k, v in values.items() if v is not None})


def budgets_from_args(args: argparse.Namespace) -> Budgets:
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(Budgets)}
    return Budgets(**{k: v for k, v in values.items() if v is not None})


def build_backend(cfg: ModelConfig, *, send_api_key: bool = True) -> ModelBackend:
    """The backend for `cfg`. Cheap: the transformers backend loads weights on first use (or `.load()`).

    `send_api_key=False` keeps OPENAI_API_KEY from an endpoint someone other than the operator chose.
    """
    if cfg.backend == "openai":
        from agent.models.openai_backend import OpenAIBackend

        return OpenAIBackend(
            cfg.model,
            cfg.base_url,
            api_key=os.environ.get("OPENAI_API_KEY") if send_api_key else None,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_pixels=cfg.max_pixels,
        )
    from agent.models.transformers_backend import TransformersBackend

    return TransformersBackend(
        cfg.model,
        device=cfg.device,
        dtype=cfg.dtype,
        min_pixels=cfg.min_pixels,
        max_pixels=cfg.max_pixels,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
    )


def public_config(cfg: ModelConfig) -> dict[str, object]:
    """The config as recorded with an episode (no secrets live in ModelConfig)."""
    return dataclasses.asdict(cfg)
