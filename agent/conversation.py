"""The conversation the model sees, built in one place (DESIGN.md §3.1).

`build_messages` turns a dialect, the question, the image and the steps so far into chat messages. The
episode loop sends exactly what it returns; the SFT export renders recorded episodes through it; GRPO
tokenises it. So training text is the text the model reads when it runs.

A step is either what the model wrote (`ModelTurn`) or what the environment wrote back: a tool result
(`ToolFeedback`), a note about a malformed turn (`FormatFeedback`), or a refused call (`BudgetFeedback`).
Every message's content is a list of parts (`{"type": "text", "text": ...}` or `{"type": "image",
"image": ...}`): the one form that OpenAI-compatible servers, chat templates and TRL's VLM collator all read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.events import ToolKind
from agent.models.base import Message
from agent.protocol import Dialect


@dataclass(frozen=True)
class ModelTurn:
    """One assistant turn, exactly as the model wrote it."""

    text: str


@dataclass(frozen=True)
class ToolFeedback:
    """A tool's result as the model reads it; `note` is a budget warning appended to the turn."""

    kind: ToolKind
    information: str  # the text inside <information>, as `Dialect.render_information` made it
    note: str = ""


@dataclass(frozen=True)
class FormatFeedback:
    """The loop's note after a malformed turn, asking the model to redo it."""

    error: str


@dataclass(frozen=True)
class BudgetFeedback:
    """A refused tool call: the model is told which budget is spent."""

    message: str


Step = ModelTurn | ToolFeedback | FormatFeedback | BudgetFeedback


def text_message(role: str, text: str) -> Message:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def first_messages(dialect: Dialect, question: str, image: object | None, *, max_tool_calls: int) -> list[Message]:
    """The system prompt and the user's question (with the image first, when there is one).

    `image` is the image part's payload: a PIL image for a model, or any handle for a dataset row whose
    images travel in a separate column (the caller maps the part to a placeholder).
    """
    content: list[dict[str, object]] = []
    if image is not None:
        content.append({"type": "image", "image": image})
    content.append({"type": "text", "text": dialect.user_prompt(question)})
    return [text_message("system", dialect.system_prompt(max_tool_calls)), {"role": "user", "content": content}]


def step_message(dialect: Dialect, question: str, step: Step) -> Message:
    """The chat message one step becomes."""
    match step:
        case ModelTurn(text=text):
            return text_message("assistant", text)
        case ToolFeedback(kind=kind, information=information, note=note):
            return text_message("user", dialect.render_tool_turn(kind, information, question, note))
        case FormatFeedback(error=error):
            return text_message("user", dialect.render_format_error(error))
        case BudgetFeedback(message=message):
            return text_message("user", message)
    raise TypeError(f"not a conversation step: {step!r}")


def build_messages(
    dialect: Dialect,
    question: str,
    image: object | None,
    steps: Sequence[Step] = (),
    *,
    max_tool_calls: int,
) -> list[Message]:
    """The whole conversation: system, question, then one message per step."""
    messages = first_messages(dialect, question, image, max_tool_calls=max_tool_calls)
    messages.extend(step_message(dialect, question, step) for step in steps)
    return messages
