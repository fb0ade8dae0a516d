"""Supervised fine-tuning on reviewed episodes with TRL's `SFTTrainer` and peft (paper settings in `SFTSettings`).

- Data: a trace store's approved episodes (corrections applied, rendered by the one conversation builder
  through `traces.export_sft`) or an exported SFT file (`training.data`).
- Loss on the assistant's tokens only (`assistant_only_loss`): the user turns that carry `<information>`, the
  system prompt and the question are context, never targets.
- LoRA on the language model's linear layers; the vision tower and projector stay frozen (also in a full
  fine-tune unless `--no-freeze-vision`).
- Writes OUTPUT/checkpoint-N while training, then OUTPUT/adapter (LoRA) or OUTPUT/model (full fine-tune), and with
  `--merge` OUTPUT/merged: a plain checkpoint the app (`--model`), vLLM and GRPO load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.callbacks import JobCallback
from training.config import SFTSettings, peft_config
from training.data import is_sft_file, read_sft_file, sft_dataset_from_rows
from training.job import JobContext, JobResult
from training.models import TrainingInputError, is_vision_parameter, load_for_training, save_trained, saved_summary


@dataclass(frozen=True)
class SFTResult:
    output_dir: Path
    final_dir: Path  # OUTPUT/adapter or OUTPUT/model
    merged_dir: Path | None
    steps: int
    stopped_early: bool
    losses: tuple[float, ...]


def load_sft_data(settings: SFTSettings) -> Any:
    """The training conversations `--data` names: an exported file, or a trace store's approved episodes."""
    if is_sft_file(settings.data):
        return read_sft_file(settings.data)
    from traces.export_sft import sft_rows
    from traces.queries import EpisodeFilter
    from traces.store import open_store

    try:
        filters = EpisodeFilter(review=settings.review, run_ids=tuple(settings.runs))
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from None
    if "://" not in settings.data and not Path(settings.data).is_file():
        raise TrainingInputError(f"--data {settings.data}: no such file (a trace store, .jsonl or .parquet)")
    try:
        store = open_store(settings.data)
    except Exception as exc:  # a path that is no store, a URL that does not answer
        raise TrainingInputError(
            f"--data {settings.data}: neither an SFT file (.jsonl, .parquet) nor a trace store that opens "
            f"({type(exc).__name__}: {exc})"
        ) from None
    try:
        data = sft_rows(store, filters, include_failed_turns=settings.include_failed_turns)
    finally:
        store.close()
    if not data.rows:
        reasons: dict[str, int] = {}
        for skip in data.skipped:
            reasons[skip.reason] = reasons.get(skip.reason, 0) + 1
        why = "; ".join(f"{n} {reason}" for reason, n in reasons.items()) or "no episode matched"
        runs = f" in runs {list(settings.runs)}" if settings.runs else ""
        raise TrainingInputError(
            f"no {settings.review} episodes to train on in {settings.data}{runs} (skipped: {why}); approve episodes "
            "in the Traces tab or with `python -m traces annotate EPISODE --annotator NAME --approve`"
        )
    rows = [{"messages": row.messages, "images": list(row.images)} for row in data.rows]
    return sft_dataset_from_rows(rows, source=settings.data)


def train_sft(
    settings: SFTSettings,
    dataset: Any,
    *,
    callbacks: Sequence[Any] = (),
    trl_overrides: dict[str, Any] | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> SFTResult:
    """Train and save; returns where things went. `dataset` is from `load_sft_data` or `sft_dataset_from_rows`.
    `loaded`: a (model, processor) already in memory instead of loading `settings.model` (benchmarks)."""
    from trl import SFTTrainer

    args = settings.trl_args(**(trl_overrides or {}))
    model, processor = loaded or load_for_training(settings.model, max_pixels=settings.max_pixels, bf16=bool(args.bf16))
    if not settings.use_peft and settings.freeze_vision:
        for name, parameter in model.named_parameters():
            if is_vision_parameter(name):
                parameter.requires_grad_(False)
    try:
        trainer = SFTTrainer(
            model=model,
            processing_class=processor,
            train_dataset=dataset,
            args=args,
            peft_config=peft_config(settings),
            callbacks=list(callbacks),
        )
    except ValueError as exc:  # TRL refuses, e.g., a chat template it cannot mark assistant turns in
        raise TrainingInputError(f"TRL cannot train {settings.model} on this data: {exc}") from None
    trainer.train()
    out = Path(settings.output_dir)
    final, merged = save_trained(trainer, processor, out, peft=settings.use_peft, merge=settings.merge)
    stopped = any(isinstance(c, JobCallback) and c.stopped_early for c in callbacks)
    losses = tuple(float(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    return SFTResult(out, final, merged, trainer.state.global_step, stopped, losses)


def sft_job(settings: SFTSettings) -> Any:
    """The job body for `python -m training sft`: load the data, train with the job's callback, report."""

    def work(context: JobContext) -> JobResult:
        dataset = load_sft_data(settings)
        callback = JobCallback(context.store, context.job_id, context.stop)
        result = train_sft(settings, dataset, callbacks=[callback])
        where = saved_summary(result.final_dir, result.merged_dir)
        return JobResult(result.stopped_early, f"SFT: {result.steps} steps on {len(dataset)} episodes; {where}")

    return work
