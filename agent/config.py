"""Model configuration: a dataclass with working defaults (flags and env via agent.flags), and its backend.

API keys come only from the environment (OPENAI_API_KEY) and are never stored in events or traces.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Literal

from agent.flags import add_config_arguments, check_bounds, setting
from agent.loop import Budgets
from agent.models.base import ModelBackend
from agent.protocol import DIALECTS
from agent.tools.config import ToolConfig

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


@dataclass(frozen=True)
class ModelConfig:
    """The agent's model: which backend serves it and how it samples. Flags via agent.flags (group "model")."""

    backend: Literal["transformers", "openai"] = setting(
        "transformers",
        "transformers (local weights) or openai (any OpenAI-compatible server: vLLM, SGLang, hosted)",
    )
    model: str = setting(DEFAULT_MODEL, "hub id or local directory (transformers), or the served model name (openai)")
    adapter: str | None = setting(
        None,
        "transformers: a LoRA adapter folder (peft, e.g. runs/sft-1/adapter) applied on top of --model; with openai, "
        "serve it with vLLM's --lora-modules and pass its name as --model instead",
    )
    base_url: str = setting(
        "http://127.0.0.1:8000/v1", "OpenAI-compatible base URL, e.g. a vLLM server", env="OPENAI_BASE_URL"
    )
    device: str | None = setting(None, "cuda, cuda:1 or cpu; default: cuda when present")
    dtype: str | None = setting(None, "torch dtype; default bfloat16 on GPU, float32 on CPU")
    min_pixels: int | None = setting(None, "lower bound on image pixels after resizing (processor default when unset)")
    max_pixels: int | None = setting(
        1280 * 28 * 28, "upper bound on image pixels after resizing; bounds vision tokens and memory"
    )
    temperature: float = setting(0.0, "sampling temperature; 0 is greedy", low=0.0)
    top_p: float = setting(
        1.0,
        "nucleus sampling: keep the smallest token set whose probability reaches this",
        low=0.0,
        high=1.0,
        low_exclusive=True,
    )
    dialect: str = setting(
        "deepmmsearch", "protocol dialect: the tags and prompts the model speaks", choices=sorted(DIALECTS)
    )
    prompts_file: str | None = setting(
        None, "TOML file overriding the dialect's prompts (keys of agent.protocol.Prompts)"
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.adapter and self.backend != "transformers":
            raise ValueError(
                "--adapter works with the transformers backend; a vLLM server loads adapters itself "
                "(--lora-modules NAME=PATH): pass NAME as --model"
            )


def add_episode_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of everything that runs episodes (ask, eval, the app): one group each for ModelConfig,
    Budgets and ToolConfig. Build them back with `agent.flags.config_from_args(Cls, args)`."""
    add_config_arguments(parser, ModelConfig, title="model")
    add_config_arguments(parser, Budgets, title="budgets")
    add_config_arguments(
        parser,
        ToolConfig,
        title="tools",
        description="web search, reverse image search and grounding (env vars in brackets)",
    )


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
        adapter=cfg.adapter,
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
