"""Online GRPO with TRL's `GRPOTrainer`, its rollouts the project's own episodes (DESIGN.md §3.9).

`train_grpo` puts the pieces together: questions with gold answers (`training.data`), the policy (a merged SFT
checkpoint, so that with LoRA the frozen reference, the model with adapters off, is the SFT model:
TRAINING-NOTES §3), the real tools (`agent.tools.wiring.build_toolbox`: live providers, the local corpus, or
replay from the tool cache), the judge (`agent.judge`), the rollout function (`training.rollout`) and the job's
callback. Every rollout episode is recorded in a trace-store run of kind `rollout` with its training step,
verdict and reward.

Checks before any weight is loaded: the questions, the vLLM server (when `--vllm-server`) and an LLM judge (one
real judgement), so an unreachable endpoint is a clear error at start instead of a step full of unknowns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.judge import Judge, JudgeConfig, build_judge
from agent.loop import Budgets
from agent.protocol import get_dialect
from agent.tools.config import ToolConfig
from agent.tools.wiring import build_toolbox
from traces import jobs
from traces.store import TraceStore
from training.callbacks import JobCallback
from training.config import GRPOSettings, peft_config, settings_dict
from training.data import load_questions, question_dataset
from training.generation import BatchedGenerator, Sampling
from training.job import JobContext, JobResult
from training.models import TrainingInputError, load_for_training, save_trained, saved_summary
from training.recording import RolloutRecorder
from training.rewards import REWARD_FUNCS
from training.rollout import Question, Rollouts


@dataclass(frozen=True)
class GRPOResult:
    output_dir: Path
    final_dir: Path
    merged_dir: Path | None
    steps: int
    stopped_early: bool
    run_id: int | None  # the rollout run in the trace store
    log_history: tuple[dict[str, Any], ...]
    rollouts: Rollouts = field(repr=False)  # its stats and last results (benchmarks, tests)


def check_judge(judge: Judge, cfg: JudgeConfig) -> None:
    """One real judgement from an LLM judge before training: a down endpoint or a wrong model name fails here."""
    if cfg.kind != "llm":
        return
    judgement = judge.judge_sync("Which city is the Eiffel Tower in?", "Paris", ["Paris"])
    if judgement.verdict == "unknown":
        raise TrainingInputError(
            f"the judge at {cfg.judge_base_url} ({cfg.judge_model}) cannot judge: {judgement.reason}; check "
            "--judge-base-url and --judge-model (key in JUDGE_API_KEY), or use --judge rule"
        )


def rollout_run_name(settings: GRPOSettings, job_id: int | None) -> str:
    if settings.run_name:
        return settings.run_name
    return f"grpo job {job_id} rollouts" if job_id is not None else f"grpo {settings.output_dir} rollouts"


def rollout_run(store: TraceStore, settings: GRPOSettings, *, job_id: int | None, dataset: str) -> int:
    """The trace-store run GRPO's rollout episodes are recorded in: found or created by name, so that the runner
    (before launching) and every rank of a job land on the same run."""
    return store.recording_run(
        rollout_run_name(settings, job_id),
        "rollout",
        model=settings.model,
        backend="grpo-policy",
        dialect=settings.dialect,
        checkpoint=settings.model,
        dataset=dataset,
        config=settings_dict(settings),
    )


def sampling_of(settings: GRPOSettings, args: Any) -> Sampling:
    return Sampling(
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=args.top_k or None,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
    )


def train_grpo(
    settings: GRPOSettings,
    budgets: Budgets,
    tools: ToolConfig,
    judge_config: JudgeConfig,
    *,
    store: TraceStore,
    context: JobContext | None = None,
    questions: Sequence[Question] | None = None,
    callbacks: Sequence[Any] = (),
    trl_overrides: dict[str, Any] | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> GRPOResult:
    """Train, recording rollouts in `store`; see the module docstring. `loaded`: a (model, processor) already in
    memory instead of loading `settings.model` (benchmarks)."""
    import threading

    from trl import GRPOTrainer

    dialect = get_dialect(settings.dialect, settings.prompts_file)
    name = Path(settings.data).stem or "questions"
    if questions is None:
        read, skipped, name = load_questions(settings.data, store=store, limit=settings.limit)
        if skipped:
            print(f"questions: {len(skipped)} skipped, e.g. {skipped[0]}", flush=True)
        questions = read
    data = question_dataset(questions, dialect, max_tool_calls=budgets.max_tool_calls, name=name)
    if settings.vllm_server:
        from training.vllm_turns import check_server

        check_server(settings.vllm_server)
    judge = build_judge(judge_config)
    check_judge(judge, judge_config)
    toolbox = build_toolbox(tools)

    args = settings.trl_args(budgets, **(trl_overrides or {}))
    model, processor = loaded or load_for_training(settings.model, max_pixels=settings.max_pixels, bf16=bool(args.bf16))
    # GRPO left-pads prompts; a processor left at right padding misaligns image tokens silently (TRAINING-NOTES §1).
    processor.tokenizer.padding_side = "left"

    stop = context.stop if context is not None else threading.Event()
    run_id = None
    recorder = None
    if settings.record_rollouts:
        job_id = context.job_id if context is not None else None
        run_id = rollout_run(store, settings, job_id=job_id, dataset=name)
        if job_id is not None and context is not None and context.is_main:
            jobs.update_job(store, job_id, run_id=run_id)
        recorder = RolloutRecorder(store, run_id, checkpoint=settings.model)

    image_token_id = model.config.image_token_id
    sampling = sampling_of(settings, args)
    vllm = None
    if settings.vllm_server:
        from training.vllm_turns import VLLMTurnClient

        vllm = VLLMTurnClient(settings.vllm_server, sampling)
    rollouts = Rollouts(
        processor=processor,
        dialect=dialect,
        budgets=budgets,
        toolbox=toolbox,
        judge=judge,
        questions=data.questions,
        reward_weights=settings.reward_weights,
        generator_factory=lambda unwrapped: BatchedGenerator(
            unwrapped,
            processor,
            sampling,
            wait_s=settings.batch_wait_s,
            suppress_token_ids=(image_token_id,),
            name=settings.model,
        ),
        vllm_generator=vllm,
        on_result=recorder,
        cancel=stop,
    )
    trainer_callbacks = [*([JobCallback(store, context.job_id, stop)] if context is not None else []), *callbacks]
    try:
        trainer = GRPOTrainer(
            model=model,
            processing_class=processor,
            reward_funcs=list(REWARD_FUNCS),
            train_dataset=data.dataset,
            args=args,
            rollout_func=rollouts,
            peft_config=peft_config(settings),
            callbacks=trainer_callbacks,
        )
    except ValueError as exc:  # e.g. a batch that does not fill whole groups of num_generations
        raise TrainingInputError(f"TRL refused the GRPO settings: {exc}") from None
    try:
        trainer.train()
    finally:
        if recorder is not None:
            recorder.close()
        judge.close()
        if vllm is not None:
            vllm.close()
    out = Path(settings.output_dir)
    final, merged = save_trained(trainer, processor, out, peft=settings.use_peft, merge=settings.merge)
    stopped = any(isinstance(c, JobCallback) and c.stopped_early for c in trainer_callbacks)
    return GRPOResult(
        out, final, merged, trainer.state.global_step, stopped, run_id, tuple(trainer.state.log_history), rollouts
    )


def grpo_job(settings: GRPOSettings, budgets: Budgets, tools: ToolConfig, judge_config: JudgeConfig) -> Any:
    """The job body for `python -m training grpo`."""

    def work(context: JobContext) -> JobResult:
        result = train_grpo(settings, budgets, tools, judge_config, store=context.store, context=context)
        where = saved_summary(result.final_dir, result.merged_dir)
        return JobResult(
            result.stopped_early, f"GRPO: {result.steps} steps; rollouts in trace-store run {result.run_id}; {where}"
        )

    return work
