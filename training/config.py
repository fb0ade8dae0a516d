"""Training configs: the paper's settings as dataclass defaults, one flag per field (DESIGN.md §3.9).

`SFTSettings` and `GRPOSettings` hold what a researcher chooses; `trl_args()` turns them into TRL's own
`SFTConfig` / `GRPOConfig`, and `peft_config()` into peft's `LoraConfig`. Field names (and so flags) are TRL's where TRL has the knob (`--max-steps`,
`--num-generations`, `--learning-rate`, `--beta`, `--per-device-train-batch-size`, ...), so a TRL user finds
them where they expect. `LaunchSettings` says how a job runs (where it is recorded, how many processes).

The episode budgets of GRPO rollouts are the loop's own `agent.loop.Budgets` (paper defaults there, same flags
as `agent ask`). Paper (DeepMMSearch-R1, arXiv 2510.12801): SFT with LoRA rank 8 on every linear layer of the language model
(vision tower and projector frozen), 3 epochs, lr 1e-4, cosine, warm-up 0.1, tool results masked from the loss;
GRPO with 8 rollouts per prompt, lr 2e-6 with 45 warm-up steps, clip 0.2, KL 0.001 to the frozen reference,
advantage = reward minus the group mean, reward = 0.9 judge + 0.1 format, and the loop's budgets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.flags import check_bounds, flag_name, setting
from agent.loop import Budgets
from agent.protocol import DIALECTS

# LoRA on the language model only. Bare names (q_proj, ...) or "all-linear" would also match the vision tower's
# blocks (STACK-NOTES: Qwen2.5-VL module names), which the paper keeps frozen.
LM_LINEAR_LAYERS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"
ACCELERATE_CONFIGS = ("ddp", "zero2", "zero3", "fsdp")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16(requested: bool | None) -> bool:
    """bf16 when asked, else when the GPU supports it; never on CPU (TRL's default True would fail there)."""
    if requested is not None:
        return requested
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class LaunchSettings:
    """Where a job is recorded and how many processes run it."""

    db: str = setting(
        "runs/traces.db", "trace store the job row, its metrics and GRPO rollouts go to (path or URL)", env="TRACES_DB"
    )
    job_id: int | None = setting(
        None, "attach to this existing job row instead of creating one (set by the runner when it launches a job)"
    )
    num_processes: int = setting(
        1,
        "training processes (GPUs); more than one launches through `accelerate launch` with --accelerate-config",
        low=1,
        high=64,
    )
    accelerate_config: str = setting(
        "ddp",
        f"accelerate config for several processes: one of {', '.join(ACCELERATE_CONFIGS)} (training/accelerate/) "
        "or a path to your own YAML",
    )
    log_dir: str = setting("runs/logs", "where a background job writes its log file")
    background: bool = setting(False, "launch the job in the background and return its id (see `jobs`, `cancel`)")

    def __post_init__(self) -> None:
        check_bounds(self)

    def accelerate_config_path(self) -> Path:
        if self.accelerate_config in ACCELERATE_CONFIGS:
            return ACCELERATE_DIR / f"{self.accelerate_config}.yaml"
        path = Path(self.accelerate_config)
        if not path.is_file():
            raise ValueError(
                f"accelerate config {self.accelerate_config!r} is neither one of {', '.join(ACCELERATE_CONFIGS)} "
                "nor an existing file"
            )
        return path


@dataclass(frozen=True)
class SFTSettings:
    """Supervised fine-tuning on reviewed episodes (paper defaults)."""

    model: str = setting("", "base model: hub id or local folder (a merged checkpoint works too)")
    data: str = setting(
        "",
        "training data: a trace store (its approved episodes, corrections applied) or an exported SFT file "
        "(.jsonl or .parquet from `python -m traces export sft`)",
    )
    output_dir: str = setting(
        "", "where checkpoints, the adapter and (with --merge) the merged model go", flag="--output"
    )
    runs: tuple[int, ...] = setting((), "trace store only: episodes of these run ids (repeatable)", flag="--run")
    review: str = setting("approved", "trace store only: annotation state of the episodes to train on")
    include_failed_turns: bool = setting(
        False, "trace store only: keep malformed turns and the correction prompt that followed them"
    )
    use_peft: bool = setting(True, "train LoRA adapters (paper); --no-use-peft fine-tunes every weight")
    lora_r: int = setting(8, "LoRA rank", low=1)
    lora_alpha: int = setting(16, "LoRA alpha (scale = alpha / r)", low=1)
    lora_dropout: float = setting(0.05, "LoRA dropout", low=0.0, high=1.0)
    lora_target_modules: str = setting(
        LM_LINEAR_LAYERS, "regex of the modules that get LoRA (default: every linear layer of the language model)"
    )
    freeze_vision: bool = setting(
        True, "full fine-tune only: keep the vision tower and projector frozen (LoRA never touches them)"
    )
    num_train_epochs: float = setting(3.0, "epochs over the data", low=0.0, low_exclusive=True)
    max_steps: int = setting(-1, "stop after this many optimizer steps (-1: run the epochs)", low=1, sentinels=(-1,))
    learning_rate: float = setting(1e-4, "peak learning rate", low=0.0, low_exclusive=True)
    lr_scheduler_type: str = setting("cosine", "learning-rate schedule (any transformers scheduler name)")
    warmup_steps: float = setting(0.1, "warm-up: a step count when >= 1, a share of training when < 1", low=0.0)
    per_device_train_batch_size: int = setting(1, "episodes per batch on each device", low=1)
    gradient_accumulation_steps: int = setting(8, "batches accumulated per optimizer step", low=1)
    max_length: int = setting(
        16384,
        "longest tokenised episode (image tokens included); longer ones are truncated. TRL's default of 1024 "
        "would silently cut most multi-turn episodes",
        low=1,
    )
    gradient_checkpointing: bool = setting(True, "recompute activations in the backward pass to save memory")
    bf16: bool | None = setting(None, "bfloat16 training (default: on when the GPU supports it, off on CPU)")
    max_pixels: int | None = setting(1280 * 28 * 28, "upper bound on image pixels after resizing (vision tokens)")
    logging_steps: int = setting(1, "log metrics every N steps", low=1)
    save_steps: int = setting(
        100, "save a checkpoint every N steps (a cancelled job also saves where it stopped)", low=1
    )
    save_total_limit: int = setting(2, "checkpoints kept", low=1)
    merge: bool = setting(
        False, "also write OUTPUT/merged: the adapter folded into the base model, for the app or vLLM"
    )
    seed: int = setting(42, "random seed")
    report_to: str = setting("none", "also log to: none, trackio, wandb, tensorboard (metrics always go to the store)")

    def __post_init__(self) -> None:
        _check_required_and_bounds(self)

    def trl_args(self, **overrides: Any):
        """TRL's SFTConfig for these settings (CPU-safe: no bf16 and no accelerator device when there is no GPU)."""
        from trl import SFTConfig

        values = _trainer_args(self)
        values.update(
            max_length=self.max_length,
            # Only the assistant's tokens are learned: tool results (<information>) sit in user turns, so
            # TRL's generation-marked template masks them without a collator of ours (TRAINING-NOTES §4).
            assistant_only_loss=True,
        )
        values.update(overrides)
        return SFTConfig(**values)


@dataclass(frozen=True)
class GRPOSettings:
    """Online GRPO whose rollouts are the project's own episodes (paper defaults)."""

    model: str = setting(
        "", "policy to start from: a merged SFT checkpoint, so that the frozen reference is the SFT model"
    )
    data: str = setting(
        "",
        "questions with gold answers: a FVQA-style .parquet, a .jsonl of {question, image, answers}, or a run "
        "name in the trace store (an imported question set)",
    )
    output_dir: str = setting("", "where checkpoints and the final adapter/model go", flag="--output")
    limit: int | None = setting(None, "use only the first N questions", low=1)
    num_generations: int = setting(
        8, "rollouts per question (the group advantages are computed over; at least 2 to compare)", low=2
    )
    learning_rate: float = setting(2e-6, "learning rate after warm-up", low=0.0, low_exclusive=True)
    warmup_steps: float = setting(45, "warm-up steps (a share of training when < 1)", low=0.0)
    lr_scheduler_type: str = setting("constant_with_warmup", "learning-rate schedule")
    epsilon: float = setting(0.2, "PPO clip range of the importance ratio", low=0.0, low_exclusive=True)
    beta: float = setting(0.001, "KL coefficient to the frozen reference (0 loads no reference)", low=0.0)
    scale_rewards: Literal["none", "group", "batch"] = setting(
        "none", "advantage scaling: none = reward minus the group mean (paper); group/batch divide by the std"
    )
    loss_type: str = setting("dapo", "loss aggregation over tokens (TRL's; the paper does not say)")
    judge_weight: float = setting(0.9, "weight of the judge's 0/1 verdict in the reward", low=0.0)
    format_weight: float = setting(0.1, "weight of the format check (every turn well-formed) in the reward", low=0.0)
    per_device_train_batch_size: int = setting(
        8, "completions per device per step (a multiple of what fills groups)", low=1
    )
    gradient_accumulation_steps: int = setting(1, "batches accumulated per optimizer step", low=1)
    num_train_epochs: float = setting(1.0, "epochs over the questions", low=0.0, low_exclusive=True)
    max_steps: int = setting(-1, "stop after this many optimizer steps (-1: run the epochs)", low=1, sentinels=(-1,))
    temperature: float = setting(1.0, "sampling temperature of the rollouts", low=0.0, low_exclusive=True)
    top_p: float = setting(1.0, "nucleus sampling of the rollouts", low=0.0, high=1.0, low_exclusive=True)
    dialect: str = setting("deepmmsearch", "protocol dialect", choices=tuple(DIALECTS))
    prompts_file: str | None = setting(None, "TOML file overriding the dialect's prompts")
    vllm_server: str = setting(
        "",
        "base URL of a vLLM server started with `trl vllm-serve` (or `vllm serve` with the scale-out endpoints): "
        "each turn is generated there and TRL syncs the weights to it every step",
        metavar="URL",
    )
    vllm_server_timeout: float = setting(240.0, "seconds to wait for the vLLM server to come up")
    batch_wait_s: float = setting(
        0.02, "transformers generation: how long a turn waits for other episodes' turns to batch with"
    )
    record_rollouts: bool = setting(True, "record every rollout episode in the trace store (run kind `rollout`)")
    run_name: str | None = setting(None, "name of the rollout run in the trace store (default from the job)")
    use_peft: bool = setting(True, "train LoRA adapters; --no-use-peft trains every weight (and loads a reference)")
    lora_r: int = setting(8, "LoRA rank", low=1)
    lora_alpha: int = setting(16, "LoRA alpha", low=1)
    lora_dropout: float = setting(0.05, "LoRA dropout", low=0.0, high=1.0)
    lora_target_modules: str = setting(LM_LINEAR_LAYERS, "regex of the modules that get LoRA")
    gradient_checkpointing: bool = setting(True, "recompute activations in the backward pass to save memory")
    bf16: bool | None = setting(None, "bfloat16 training (default: on when the GPU supports it, off on CPU)")
    max_pixels: int | None = setting(1280 * 28 * 28, "upper bound on image pixels after resizing (vision tokens)")
    logging_steps: int = setting(1, "log metrics every N steps", low=1)
    save_steps: int = setting(
        50, "save a checkpoint every N steps (a cancelled job also saves where it stopped)", low=1
    )
    save_total_limit: int = setting(2, "checkpoints kept", low=1)
    merge: bool = setting(False, "also write OUTPUT/merged (LoRA folded into the model)")
    seed: int = setting(42, "random seed")
    report_to: str = setting("none", "also log to: none, trackio, wandb, tensorboard (metrics always go to the store)")

    def __post_init__(self) -> None:
        _check_required_and_bounds(self)
        if self.judge_weight + self.format_weight == 0:
            raise ValueError("--judge-weight and --format-weight must not both be 0: the reward would always be 0")

    @property
    def reward_weights(self) -> tuple[float, float]:
        return (self.judge_weight, self.format_weight)

    def trl_args(self, budgets: Budgets, **overrides: Any):
        """TRL's GRPOConfig for these settings; `budgets` are the loop's (one image search, 10 tool calls, ...)."""
        from trl import GRPOConfig

        values = _trainer_args(self)
        values.update(
            num_generations=self.num_generations,
            epsilon=self.epsilon,
            beta=self.beta,
            scale_rewards=self.scale_rewards,
            loss_type=self.loss_type,
            reward_weights=list(self.reward_weights),
            temperature=self.temperature,
            top_p=self.top_p,
            # The rollout's length is bounded by the loop's budgets; TRL's own cap applies only to its generation.
            max_completion_length=budgets.max_response_tokens,
            use_vllm=bool(self.vllm_server),
            vllm_mode="server",
            vllm_server_base_url=self.vllm_server or None,
            vllm_server_timeout=self.vllm_server_timeout,
        )
        values.update(overrides)
        return GRPOConfig(**values)


def peft_config(settings: SFTSettings | GRPOSettings) -> Any:
    """peft's LoraConfig for the settings' LoRA knobs; None for a full fine-tune (--no-use-peft)."""
    if not settings.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def _check_required_and_bounds(settings: SFTSettings | GRPOSettings) -> None:
    for f in dataclasses.fields(settings):
        if f.name in ("model", "data", "output_dir") and not getattr(settings, f.name):
            raise ValueError(f"{flag_name(f)} is required")
    check_bounds(settings)


def _trainer_args(settings: SFTSettings | GRPOSettings) -> dict[str, Any]:
    """The transformers TrainingArguments both trainers take alike (optimisation, precision, checkpoints, logging);
    CPU-safe: no bf16 and no accelerator device when there is no GPU."""
    return dict(
        output_dir=settings.output_dir,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_steps,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        gradient_checkpointing=settings.gradient_checkpointing,
        bf16=_bf16(settings.bf16),
        use_cpu=not cuda_available(),
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        report_to=settings.report_to,
        disable_tqdm=True,
    )


def settings_dict(settings: object) -> dict[str, Any]:
    """JSON-safe copy of a settings dataclass (tuples become lists), for job rows and run configs."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}
