"""A model backend over the GRPO trainer's current policy that records every token of an episode.

The episode loop (`agent.loop.run_episode`) drives `PolicyBackend` exactly as it drives the app's backends. What
differs is bookkeeping: the backend keeps the episode as token ids, the way the trainer will score it:

- `prompt_ids`: the system prompt and the question (image tokens included), rendered by the processor from the
  loop's first messages. They must equal TRL's re-rendering of the dataset prompt (`rollout.py` asserts it).
- `completion_ids`: everything after the prompt, in order: what the policy sampled (mask 1) and what the
  environment wrote (mask 0): the end of each assistant turn, the user turns carrying `<information>`, format
  and budget notes, and the next assistant header.
- `logprobs`: the sampler's log-probability of each sampled token (0.0 on environment tokens), or None when the
  generator does not report them (transformers generation: the rollout is on-policy, TRL needs none).

Sampled ids are never re-tokenised: each turn continues from the recorded ids, and the environment's tokens are
cut from the chat template's rendering at a sentinel that stands in for the last assistant turn. So the ids the
loss sees are exactly the ids the policy sampled from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.events import EpisodeFinished, image_sha256
from agent.models.base import BackendError, Delta, Message, split_images

SENTINEL = "\u2063POLICY-TURN\u2063"  # never produced by a tokenizer's decode of sampled text
# Episodes that ended on their own get an EOS (mask 0) so TRL does not count them as truncated; one stopped by a
# budget, a cancel or an error is left open, as TRL leaves a completion cut at its length limit.
FINISHED = ("answered", "format_error")


@dataclass(frozen=True)
class TurnRequest:
    """One turn to sample: the episode's ids so far and its image inputs (prompt-aligned)."""

    ids: list[int]
    mm: dict[str, Any]  # processor outputs other than input_ids/attention_mask (pixel_values, grid, token types)
    max_new_tokens: int
    stop: tuple[str, ...]
    image_key: str | None = None  # identifies the episode's image (a generator may cache per-image work)
    images: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TurnOutput:
    ids: list[int]
    logprobs: list[float] | None = None


class TurnGenerator(Protocol):
    """Samples one turn. Called from many episode threads at once; raises BackendError on failure."""

    endpoint: str

    def begin(self, episodes: int) -> None:
        """`episodes` episodes are about to run (a batcher waits for all of them before a round)."""
        ...

    def episode(self) -> AbstractContextManager[None]:
        """Entered by an episode's thread for the episode's whole run; leaving it means no more turns."""
        ...

    def generate(self, request: TurnRequest, cancel: threading.Event | None) -> TurnOutput: ...


@dataclass(frozen=True)
class Trajectory:
    """An episode as the trainer scores it."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]  # 1: sampled by the policy, 0: written by the environment
    logprobs: list[float] | None


def render_prompt(processor: Any, messages: Sequence[Message]) -> tuple[list[int], dict[str, Any], list[Any]]:
    """Prompt ids, image inputs (everything the processor returns but ids and mask) and images of a chat."""
    template_messages, images = split_images(messages)
    text = processor.apply_chat_template(template_messages, tokenize=False, add_generation_prompt=True)
    encoded = processor(text=[text], images=images or None, return_tensors="pt")
    mm = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
    return encoded["input_ids"][0].tolist(), mm, images


@dataclass
class PolicyBackend:
    """`ModelBackend` for one episode over the trainer's policy (see the module docstring)."""

    processor: Any
    generator: TurnGenerator
    model: str = "policy"
    backend: str = "grpo-policy"
    prompt_ids: list[int] | None = None
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    logprobs_known: bool = True
    mm: dict[str, Any] = field(default_factory=dict)
    images: tuple[Any, ...] = ()
    image_key: str | None = None
    n_rendered: int = 0  # messages already turned into ids
    # The first turn's `render_prompt` output when the caller already has it: the rollouts of one question share
    # one rendering (image processing and tokenisation are most of what an episode costs besides generation).
    rendered_prompt: tuple[list[int], dict[str, Any], list[Any]] | None = None

    @property
    def endpoint(self) -> str:
        return self.generator.endpoint

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def _begin(self, messages: Sequence[Message]) -> None:
        ids, self.mm, images = self.rendered_prompt or render_prompt(self.processor, messages)
        self.prompt_ids = list(ids)
        self.images = tuple(images)
        if images:
            self.image_key = image_sha256(images[0])

    def _environment_ids(self, messages: Sequence[Message]) -> list[int]:
        """Tokens the environment added after our last turn: the template's end of that turn, the new user
        message(s) and the next assistant header, cut from the rendering at a sentinel in place of our turn."""
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        if last != self.n_rendered:
            raise RuntimeError("the loop changed messages the policy had already turned into ids")
        stand_in = list(messages)
        stand_in[last] = {"role": "assistant", "content": [{"type": "text", "text": SENTINEL}]}
        template_messages, _ = split_images(stand_in)
        text = self.processor.apply_chat_template(template_messages, tokenize=False, add_generation_prompt=True)
        env_text = text[text.rindex(SENTINEL) + len(SENTINEL) :]
        eos = self.tokenizer.eos_token
        if self.completion_ids and self.completion_ids[-1] == self.tokenizer.eos_token_id and env_text.startswith(eos):
            env_text = env_text[len(eos) :]  # the policy closed its own turn: that token is already recorded
        return self.tokenizer(env_text, add_special_tokens=False)["input_ids"]

    def _append(self, ids: list[int], mask: int, logprobs: list[float] | None) -> None:
        self.completion_ids += ids
        self.env_mask += [mask] * len(ids)
        if logprobs is None:
            self.logprobs_known = self.logprobs_known and (mask == 0 or not ids)
            self.logprobs += [0.0] * len(ids)
        else:
            self.logprobs += logprobs

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta]:
        if self.prompt_ids is None:
            self._begin(messages)
        else:
            self._append(self._environment_ids(messages), 0, None)
        assert self.prompt_ids is not None
        request = TurnRequest(
            ids=self.prompt_ids + self.completion_ids,
            mm=self.mm,
            max_new_tokens=max_new_tokens,
            stop=tuple(stop),
            image_key=self.image_key,
            images=self.images,
        )
        try:
            output = self.generator.generate(request, cancel)
        except BackendError:
            raise
        except Exception as exc:  # anything else a generator raises: the loop records it as a model error
            raise BackendError(self.endpoint, f"generation failed: {type(exc).__name__}: {exc}") from exc
        self._append(output.ids, 1, output.logprobs)
        self.n_rendered = len(messages)  # the assistant message the loop appends next has this index
        text = self.tokenizer.decode(output.ids, skip_special_tokens=True)
        ends = [text.find(s) + len(s) for s in stop if s and s in text]
        yield Delta(text[: min(ends)] if ends else text, len(output.ids))

    def trajectory(self, finished: EpisodeFinished) -> Trajectory | None:
        """The episode's ids, closed with an EOS when it ended on its own; None if it never reached the model."""
        if self.prompt_ids is None:
            return None
        eos = self.tokenizer.eos_token_id
        if finished.status in FINISHED and (not self.completion_ids or self.completion_ids[-1] != eos):
            self._append([eos], 0, None)
        return Trajectory(
            prompt_ids=list(self.prompt_ids),
            completion_ids=list(self.completion_ids),
            env_mask=list(self.env_mask),
            logprobs=list(self.logprobs) if self.logprobs_known else None,
        )
