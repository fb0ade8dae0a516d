"""The episode loop: one generator of typed events for CLI, UI, recorder, eval and GRPO (DESIGN.md §3.1).

Documented behaviour:
- Each turn the model streams one assistant message; generation stops when an action tag closes.
- A malformed turn yields a FormatError event; the model is told what was wrong and redoes the turn,
  up to `Budgets.max_format_retries` times in the episode, after which the episode ends `format_error`.
- Budgets: one image search (a second one is refused and the model told so; in the mmsearch-r1 dialect
  image search is refused after the first turn), `max_tool_calls` tool calls (after the last one the model
  is told to answer; a call beyond it is refused, and a second refusal ends the episode
  `budget_exhausted`), `max_response_tokens` over all turns and `max_turns`: both end the episode.
- A missing tool, or a tool failure, becomes an error result that the model reads; tools never raise here.
- Cancellation: a set `cancel` event, or closing the generator, ends the episode with status `cancelled`.
  After `close()` nobody can receive events any more, so the final EpisodeFinished goes to `on_event`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from agent.aio import run_sync
from agent.conversation import BudgetFeedback, FormatFeedback, ModelTurn, Step, ToolFeedback, build_messages
from agent.events import (
    ActionParsed,
    Answer,
    Box,
    BudgetExhausted,
    EpisodeFinished,
    EpisodeStarted,
    EpisodeStatus,
    Event,
    FormatError,
    ModelError,
    TextDelta,
    ToolFinished,
    ToolKind,
    ToolResult,
    ToolStarted,
    TurnStarted,
    image_sha256,
)
from agent.flags import check_bounds, setting
from agent.models.base import BackendError, Message, ModelBackend
from agent.protocol import Dialect, get_dialect
from agent.tools.base import Toolbox


@dataclass(frozen=True)
class Budgets:
    """Limits of one episode (the rules are in this module's docstring). Flags via agent.flags ("budgets")."""

    max_image_searches: int = setting(1, "image searches allowed per episode (the paper allows one)", low=0)
    max_tool_calls: int = setting(
        10, "tool calls of any kind per episode; after the last, the model is told to answer", low=0
    )
    max_response_tokens: int = setting(8192, "tokens the model may generate over the whole episode", low=1)
    max_turns: int = setting(16, "assistant turns per episode", low=1)
    max_turn_tokens: int = setting(2048, "tokens the model may generate in one turn", low=1)
    max_format_retries: int = setting(
        2, "malformed turns the model may redo in an episode before it ends format_error", low=0
    )

    def __post_init__(self) -> None:
        check_bounds(self)


class _Finish(Exception):
    def __init__(self, status: EpisodeStatus, reason: str, answer: str | None = None):
        super().__init__(reason)
        self.status, self.reason, self.answer = status, reason, answer


def run_episode(
    question: str,
    image: Image.Image | None,
    model: ModelBackend,
    tools: Toolbox | None = None,
    *,
    dialect: str | Dialect = "deepmmsearch",
    budgets: Budgets = Budgets(),
    cancel: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    episode_id: str | None = None,
    gold_answers: Sequence[str] = (),
    config: dict[str, Any] | None = None,
) -> Iterator[Event]:
    """Run one episode, yielding events as they happen. See the module docstring for the rules."""
    episode = _Episode(
        question=question,
        image=image,
        model=model,
        tools=tools or Toolbox(),
        dialect=get_dialect(dialect),
        budgets=budgets,
        cancel=cancel or threading.Event(),
        on_event=on_event,
        episode_id=episode_id or uuid.uuid4().hex,
        gold_answers=tuple(gold_answers),
        config=dict(config or {}),
    )
    return episode.run()


@dataclass
class _Episode:
    question: str
    image: Image.Image | None
    model: ModelBackend
    tools: Toolbox
    dialect: Dialect
    budgets: Budgets
    cancel: threading.Event
    on_event: Callable[[Event], None] | None
    episode_id: str
    gold_answers: tuple[str, ...]
    config: dict[str, Any]

    def __post_init__(self) -> None:
        self.turn = 0
        self.tool_calls = 0
        self.image_searches = 0
        self.refused_calls = 0
        self.format_retries_used = 0
        self.response_tokens = 0
        self.all_turns_ok = True
        self.started = time.monotonic()
        self.finished = False
        self.steps: list[Step] = []

    def _emit(self, event: Event) -> Event:
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _finish(self, status: EpisodeStatus, reason: str, answer: str | None) -> EpisodeFinished:
        self.finished = True
        return EpisodeFinished(
            episode_id=self.episode_id,
            status=status,
            final_answer=answer,
            turns=self.turn,
            tool_calls=self.tool_calls,
            response_tokens=self.response_tokens,
            elapsed_s=time.monotonic() - self.started,
            format_ok=self.all_turns_ok and status == "answered",
            reason=reason,
        )

    def run(self) -> Iterator[Event]:
        try:
            yield self._emit(self._started())
            try:
                for event in self._turns():
                    yield self._emit(event)
                raise _Finish("budget_exhausted", f"turn cap of {self.budgets.max_turns} reached")
            except _Finish as end:
                yield self._emit(self._finish(end.status, end.reason, end.answer))
        except GeneratorExit:
            if not self.finished:
                self._emit(self._finish("cancelled", "the event stream was closed", None))
            raise

    def _started(self) -> EpisodeStarted:
        return EpisodeStarted(
            episode_id=self.episode_id,
            question=self.question,
            image=self.image,
            image_sha256=image_sha256(self.image) if self.image is not None else None,
            model=self.model.model,
            backend=self.model.backend,
            dialect=self.dialect.name,
            config={"budgets": dataclasses.asdict(self.budgets), "tools": self.tools.describe(), **self.config},
            gold_answers=self.gold_answers,
            started_at=time.time(),
        )

    def messages(self) -> list[Message]:
        """What the model reads next: the one conversation builder over the steps so far."""
        return build_messages(
            self.dialect, self.question, self.image, self.steps, max_tool_calls=self.budgets.max_tool_calls
        )

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise _Finish("cancelled", "cancelled by the user")

    def _turns(self) -> Iterator[Event]:
        budgets = self.budgets
        while self.turn < budgets.max_turns:
            self._check_cancel()
            remaining = budgets.max_response_tokens - self.response_tokens
            if remaining <= 0:
                yield BudgetExhausted(
                    self.episode_id,
                    self.turn,
                    "response_tokens",
                    f"all {budgets.max_response_tokens} response tokens are spent",
                )
                raise _Finish("budget_exhausted", "response token budget spent")
            index = self.turn
            self.turn += 1
            yield TurnStarted(self.episode_id, index)
            streamed, tokens, latency = yield from self._generate(index, min(budgets.max_turn_tokens, remaining))
            # Servers that drop the matched stop string leave the action open; the turn is recorded, parsed and
            # sent back closed, so the conversation (and training text) always carries the whole tag.
            text = self.dialect.close_unterminated_action(streamed)
            parsed = self.dialect.parse_turn(text)
            self.steps.append(ModelTurn(text))
            yield ActionParsed(
                self.episode_id,
                index,
                parsed.action,
                parsed.argument,
                parsed.reason,
                text,
                parsed.format_ok,
                parsed.error,
                tokens,
                latency,
            )
            if not parsed.format_ok:
                self.all_turns_ok = False
                if self.response_tokens >= budgets.max_response_tokens:
                    yield BudgetExhausted(
                        self.episode_id,
                        index,
                        "response_tokens",
                        f"all {budgets.max_response_tokens} response tokens are spent",
                    )
                    raise _Finish("budget_exhausted", "response token budget spent mid-turn")
                retries_left = budgets.max_format_retries - self.format_retries_used
                yield FormatError(self.episode_id, index, parsed.error or "malformed turn", text, max(retries_left, 0))
                if retries_left <= 0:
                    raise _Finish(
                        "format_error", f"malformed turn after {budgets.max_format_retries} retries: {parsed.error}"
                    )
                self.format_retries_used += 1
                self.steps.append(FormatFeedback(parsed.error or "malformed turn"))
                continue
            if parsed.action == "answer":
                yield Answer(self.episode_id, index, parsed.argument)
                raise _Finish("answered", "", parsed.argument)
            yield from self._tool_turn(index, parsed.action, parsed.argument)

    def _generate(self, index: int, max_new_tokens: int) -> Iterator[Event]:
        """Stream one turn; returns (text, tokens, latency) via StopIteration value."""
        pieces: list[str] = []
        tokens = 0
        start = time.monotonic()
        stream = self.model.stream(
            self.messages(), max_new_tokens=max_new_tokens, stop=self.dialect.stop_sequences, cancel=self.cancel
        )
        try:
            for delta in stream:
                tokens += delta.tokens
                self.response_tokens += delta.tokens
                if delta.text:
                    pieces.append(delta.text)
                    yield TextDelta(self.episode_id, index, delta.text)
                self._check_cancel()
        except BackendError as exc:
            yield ModelError(self.episode_id, index, exc.endpoint, exc.message)
            raise _Finish("error", str(exc)) from None
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        self._check_cancel()
        return "".join(pieces), tokens, time.monotonic() - start

    def _tool_turn(self, index: int, kind: ToolKind, argument: str) -> Iterator[Event]:
        budgets = self.budgets
        refusal = None
        budget_name = None
        if self.tool_calls >= budgets.max_tool_calls:
            refusal, budget_name = (
                self.dialect.prompts.tool_budget_spent.format(max_tool_calls=budgets.max_tool_calls),
                "tool_calls",
            )
        elif kind != "text_search" and (
            self.image_searches >= budgets.max_image_searches
            or (self.dialect.image_search_first_turn_only and index > 0)
        ):
            refusal, budget_name = self.dialect.prompts.image_budget_spent, "image_search"
        if refusal is not None:
            self.refused_calls += 1
            yield BudgetExhausted(self.episode_id, index, budget_name, refusal)
            if budget_name == "tool_calls" and self.refused_calls >= 2:
                raise _Finish("budget_exhausted", "tool calls requested after the tool budget was spent")
            self.steps.append(BudgetFeedback(refusal))
            return

        call_index = self.tool_calls
        self.tool_calls += 1
        if kind != "text_search":
            self.image_searches += 1
        provider = self._provider(kind)
        yield ToolStarted(self.episode_id, index, call_index, kind, argument, provider)
        result = self._call_tool(kind, argument)
        note = ""
        if self.tool_calls >= budgets.max_tool_calls:
            note = self.dialect.prompts.last_tool_call
            yield BudgetExhausted(self.episode_id, index, "tool_calls", note)
        information = self.dialect.render_information(result)
        yield ToolFinished(self.episode_id, index, call_index, kind, argument, result, information)
        self.steps.append(ToolFeedback(kind, information, note))

    def _provider(self, kind: ToolKind) -> str:
        tool = self.tools.text_search if kind == "text_search" else self.tools.image_search
        return tool.provider if tool is not None else "off"

    def _call_tool(self, kind: ToolKind, argument: str) -> ToolResult:
        start = time.monotonic()
        try:
            result = self._dispatch(kind, argument)
        except _Finish:
            raise
        except concurrent.futures.CancelledError:
            raise _Finish("cancelled", "cancelled by the user during a tool call") from None
        except Exception as exc:  # a tool bug must not kill the episode: the model reads it as a failure
            result = ToolResult(provider=self._provider(kind), error=f"tool crashed: {type(exc).__name__}: {exc}")
        if not result.latency_s:
            result = dataclasses.replace(result, latency_s=time.monotonic() - start)
        return result

    def _dispatch(self, kind: ToolKind, argument: str) -> ToolResult:
        tools = self.tools
        if kind == "text_search":
            if tools.text_search is None:
                return ToolResult(
                    provider="off",
                    error="text search is off: " + tools.off_reasons.get("text_search", "no provider configured"),
                )
            return run_sync(tools.text_search.search_text(argument, question=self.question), cancel=self.cancel)
        if self.image is None:
            return ToolResult(provider=self._provider(kind), error="there is no image in this episode to search with")
        if tools.image_search is None:
            return ToolResult(
                provider="off",
                error="image search is off: " + tools.off_reasons.get("image_search", "no provider configured"),
            )
        if kind == "image_search_whole":
            result = run_sync(tools.image_search.search_image(self.image, question=self.question), cancel=self.cancel)
            return dataclasses.replace(result, crop_box=Box(0, 0, self.image.width, self.image.height))
        if tools.grounder is None:
            return ToolResult(
                provider="off",
                error="region search needs grounding, which is off: "
                + tools.off_reasons.get("grounding", "no grounding model configured"),
            )
        grounding = tools.grounder.ground(self.image, argument)
        if grounding.error is not None:
            return ToolResult(provider=tools.grounder.name, error=grounding.error)
        self._check_cancel()
        crop = self.image.crop(grounding.box.as_tuple())
        result = run_sync(tools.image_search.search_image(crop, question=self.question), cancel=self.cancel)
        return dataclasses.replace(
            result,
            crop_box=grounding.box,
            crop_image=crop,
            grounding_fallback=grounding.fallback,
            grounding_score=grounding.score,
            grounding_note=grounding.note,
        )
