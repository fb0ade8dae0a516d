"""GRPO rollouts: TRL's `rollout_func` running the project's own episode loop (DESIGN.md §3.1, §3.9).

TRL calls `Rollouts(prompts, trainer)` with the prompts of one generation batch (already repeated
`num_generations` times, images inside). For each prompt one episode runs through `agent.loop.run_episode` over a
`PolicyBackend`, with the project's real tools, the episodes of the batch concurrently (threads). Each episode is
then judged (`agent.judge`), recorded in the trace store in a run of kind `rollout` with its training step, verdict
and reward, and returned as token ids with the environment mask. Keys returned:

- `prompt_ids`, `completion_ids`, `env_mask` (1 sampled, 0 environment), `logprobs` (None with transformers
  generation, the sampler's per-token log-probabilities with vLLM).
- `judge_score` (1/0, None when the judge could not decide or the episode failed) and `format_score`
  (1 when every turn was well-formed and the episode answered; None whenever `judge_score` is None, so that a
  row TRL cannot score gets advantage 0 instead of a format-only reward), read by `training.rewards`.
- `episode_id`, `status`, `turns`, `tool_calls`: which trace-store episode a row is and how it went (logged as
  `episodes/*` metrics by the judge reward, shown in TRL's completions table).

Generation: with transformers, the trainer's model is unwrapped (and ZeRO-3 parameters gathered) once per call,
not once per turn, and every round of turns is one batched `generate` (`training.generation`). With
`--vllm-server`, each episode thread sends its turns to the server itself (`training.vllm_turns`); TRL syncs
the weights before this function runs. A finished episode goes to `on_result` with its events, judgement and
reward (GRPO records it in the trace store then, whole). Cancel: the job's stop flag is each episode's `cancel`, so rollouts stop
mid-episode; their rows carry no reward (advantage 0) and the job stops at the end of the step.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from agent.conversation import first_messages
from agent.events import EpisodeFinished, Event, image_sha256
from agent.judge import Judge, Judgement
from agent.loop import Budgets, run_episode
from agent.models.base import map_image_parts
from agent.protocol import Dialect
from agent.tools.base import Toolbox
from training.policy import PolicyBackend, Trajectory, TurnGenerator, render_prompt
from training.rewards import episode_reward

# Episode statuses that say nothing about the policy's answer: no reward, advantage 0.
NO_SIGNAL = ("error", "cancelled", "interrupted")
MAX_EPISODE_THREADS = 64  # episodes of one rollout call running at once


@dataclass(frozen=True)
class Question:
    """One training question: what the dataset row stands for."""

    key: str
    question: str
    image: Image.Image | None = field(repr=False)
    gold_answers: tuple[str, ...]
    data_source: str | None = None


def dataset_prompt(dialect: Dialect, question: str, has_image: bool, *, max_tool_calls: int) -> list[dict[str, Any]]:
    """The dataset's `prompt` column: the loop's first messages, the image as a placeholder that TRL fills from
    the row's `image` column. Built by the one conversation builder, so TRL's re-rendering equals the loop's."""
    messages = first_messages(dialect, question, True if has_image else None, max_tool_calls=max_tool_calls)
    return map_image_parts(messages, lambda _: {"type": "image"})


def prompt_question(dialect: Dialect, prompt: Sequence[dict[str, Any]]) -> tuple[str, Image.Image | None]:
    """The question and image of a prompt TRL hands over (the inverse of `Dialect.user_prompt`)."""
    user = next(m for m in prompt if m["role"] == "user")
    parts = user["content"] if isinstance(user["content"], list) else [{"type": "text", "text": user["content"]}]
    image = next((p.get("image") for p in parts if p.get("type") == "image"), None)
    text = "".join(p.get("text") or "" for p in parts if p.get("type") == "text")
    before, _, after = dialect.prompts.user.partition("{question}")
    if not (text.startswith(before) and text.endswith(after)):
        raise ValueError("a GRPO prompt does not follow the dialect's user prompt: build it with dataset_prompt()")
    return text[len(before) : len(text) - len(after)], image


def question_index(questions: Sequence[Question]) -> dict[tuple[str, str | None], Question]:
    """Questions by (text, image hash): how a prompt finds its gold answers (TRL passes prompts only)."""
    index: dict[tuple[str, str | None], Question] = {}
    for q in questions:
        index.setdefault((q.question, image_sha256(q.image) if q.image is not None else None), q)
    return index


@dataclass(frozen=True)
class RolloutResult:
    question: Question
    finished: EpisodeFinished
    trajectory: Trajectory
    judgement: Judgement | None
    judge_score: float | None
    format_score: float | None
    reward: float | None


@dataclass(frozen=True)
class CallTiming:
    episodes: int
    seconds: float  # the whole rollout call
    generate_seconds: float  # inside transformers `generate` (batched rounds); 0 with a vLLM server
    generate_rounds: int


@dataclass
class RolloutStats:
    """What the rollout calls spent (for the rollout-overhead benchmark) and how their episodes ended."""

    calls: list[CallTiming] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)


class Rollouts:
    """TRL `rollout_func` over `agent.loop.run_episode` (see the module docstring)."""

    def __init__(
        self,
        *,
        processor: Any,
        dialect: Dialect,
        budgets: Budgets,
        toolbox: Toolbox,
        judge: Judge,
        questions: Sequence[Question],
        reward_weights: tuple[float, float],
        generator_factory: Callable[[Any], TurnGenerator] | None = None,
        vllm_generator: TurnGenerator | None = None,
        on_result: Callable[[RolloutResult, Sequence[Event], int], None] | None = None,
        cancel: threading.Event | None = None,
    ):
        if generator_factory is None and vllm_generator is None:
            raise ValueError("Rollouts needs a generator: transformers (generator_factory) or a vLLM server")
        self.processor = processor
        self.dialect = dialect
        self.budgets = budgets
        self.toolbox = toolbox
        self.judge = judge
        self.index = question_index(questions)
        self.reward_weights = reward_weights
        self.generator_factory = generator_factory
        self.vllm_generator = vllm_generator
        self.on_result = on_result
        self.cancel = cancel or threading.Event()
        self.stats = RolloutStats()
        self.last_results: list[RolloutResult] = []
        self._checked: set[str] = set()  # keys of the questions whose prompt ids matched TRL's

    # ---- TRL's entry point ------------------------------------------------------------------------------------

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        start = time.monotonic()
        step = int(trainer.state.global_step)
        items = [self._question(prompt) for prompt in prompts]
        if self.vllm_generator is not None:
            results, rounds = self._run_all(items, step, self.vllm_generator, serve=None), []
        else:
            results, rounds = self._generate_locally(items, step, trainer)
        errors = [r for r in results if r.finished.status == "error"]
        if errors and len(errors) == len(results):
            raise RuntimeError(f"every rollout of step {step} failed: {errors[0].finished.reason}")
        judged = [r.judgement for r in results if r.judgement is not None]
        if judged and all(j.verdict == "unknown" for j in judged):
            raise RuntimeError(
                f"the judge could not decide any rollout of step {step} ({judged[0].reason}); is its endpoint up?"
            )
        self._check_prompt_ids(prompts, items, results, trainer)
        self.stats.calls.append(
            CallTiming(len(results), time.monotonic() - start, sum(s for _, s in rounds), len(rounds))
        )
        self.stats.statuses.update(r.finished.status for r in results)
        self.last_results = results
        return self._output(results)

    # ---- running the episodes ---------------------------------------------------------------------------------

    def _question(self, prompt: Sequence[dict[str, Any]]) -> Question:
        text, image = prompt_question(self.dialect, prompt)
        key = (text, image_sha256(image) if image is not None else None)
        found = self.index.get(key)
        if found is None:
            raise KeyError(f"rollout prompt is not one of the training questions: {text[:80]!r}")
        return found

    def _generate_locally(
        self, items: list[Question], step: int, trainer: Any
    ) -> tuple[list[RolloutResult], list[tuple[int, float]]]:
        """transformers generation: unwrap (and gather ZeRO-3 parameters) once for the whole call. Returns the
        results and the batched generate rounds (rows, seconds)."""
        import torch
        from trl.distributed import DistributedBackend
        from trl.models import unwrap_model_for_generation

        assert self.generator_factory is not None
        with (
            unwrap_model_for_generation(
                trainer.model_wrapped,
                trainer.accelerator,
                gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
            ) as model,
            torch.no_grad(),
            DistributedBackend(trainer.accelerator).summon_full_params(trainer.model_wrapped, recurse=False),
        ):
            generator = self.generator_factory(model)
            return self._run_all(items, step, generator, serve=generator.serve), generator.rounds

    def _run_all(
        self,
        items: list[Question],
        step: int,
        generator: TurnGenerator,
        serve: Callable[[Callable[[], bool]], None] | None,
    ) -> list[RolloutResult]:
        workers = max(1, min(MAX_EPISODE_THREADS, len(items)))
        prompts: dict[str, tuple[list[int], dict[str, Any], list[Any]]] = {}
        for item in items:  # the num_generations rollouts of a question start from one rendering of it
            if item.key not in prompts:
                messages = first_messages(
                    self.dialect, item.question, item.image, max_tool_calls=self.budgets.max_tool_calls
                )
                prompts[item.key] = render_prompt(self.processor, messages)
        generator.begin(len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rollout") as pool:
            futures = [pool.submit(self._episode, item, step, generator, prompts[item.key]) for item in items]
            if serve is not None:
                serve(lambda: all(f.done() for f in futures))
            return [f.result() for f in futures]

    def _episode(
        self, item: Question, step: int, generator: TurnGenerator, prompt: tuple[list[int], dict[str, Any], list[Any]]
    ) -> RolloutResult:
        policy = PolicyBackend(self.processor, generator, rendered_prompt=prompt)
        with generator.episode():
            events = list(
                run_episode(
                    item.question,
                    item.image,
                    policy,
                    self.toolbox,
                    dialect=self.dialect,
                    budgets=self.budgets,
                    cancel=self.cancel,
                    gold_answers=item.gold_answers,
                    config={"train_step": step, "item_key": item.key, "dataset": item.data_source},
                )
            )
        finished = events[-1]
        assert isinstance(finished, EpisodeFinished)
        trajectory = policy.trajectory(finished)
        if trajectory is None:  # stopped before its first turn: its prompt and a lone EOS, nothing in the loss
            trajectory = Trajectory(list(prompt[0]), [self.processor.tokenizer.eos_token_id], [0], None)
        judgement = None
        if finished.status not in NO_SIGNAL:
            judgement = self.judge.judge_sync(item.question, finished.final_answer, item.gold_answers)
        judge_score = judgement.score if judgement is not None else None
        format_score = float(finished.format_ok) if judge_score is not None else None
        reward = episode_reward(judge_score, format_score, self.reward_weights)
        result = RolloutResult(item, finished, trajectory, judgement, judge_score, format_score, reward)
        if self.on_result is not None:
            self.on_result(result, events, step)
        return result

    # ---- what TRL gets back -----------------------------------------------------------------------------------

    def _check_prompt_ids(
        self, prompts: list[Any], items: list[Question], results: list[RolloutResult], trainer: Any
    ) -> None:
        """The trainer re-renders `prompt` for the loss; our prompt ids must be those tokens (TRAINING-NOTES §1)."""
        from trl.data_utils import apply_chat_template

        processing_class = trainer.processing_class
        for prompt, item, result in zip(prompts, items, results, strict=True):
            if item.key in self._checked:
                continue
            text = apply_chat_template({"prompt": prompt}, processing_class)["prompt"]
            images = [item.image] if item.image is not None else None
            reference = processing_class(text=[text], images=images)["input_ids"][0]
            if list(reference) != result.trajectory.prompt_ids:
                raise RuntimeError(
                    "the dataset prompt and the loop's first turn tokenise differently, so the loss would score other "
                    "tokens than were sampled; build GRPO prompts with training.rollout.dataset_prompt()"
                )
            self._checked.add(item.key)

    def _output(self, results: list[RolloutResult]) -> dict[str, Any]:
        logprobs = [r.trajectory.logprobs for r in results]
        return {
            "prompt_ids": [r.trajectory.prompt_ids for r in results],
            "completion_ids": [r.trajectory.completion_ids for r in results],
            "env_mask": [r.trajectory.env_mask for r in results],
            "logprobs": None if any(lp is None for lp in logprobs) else logprobs,
            "judge_score": [r.judge_score for r in results],
            "format_score": [r.format_score for r in results],
            "episode_id": [r.finished.episode_id for r in results],
            "status": [r.finished.status for r in results],
            "turns": [r.finished.turns for r in results],
            "tool_calls": [r.finished.tool_calls for r in results],
        }
