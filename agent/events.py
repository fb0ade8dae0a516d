"""The episode as a stream of typed events (DESIGN.md §3.1).

Every consumer (CLI, UI, trace recorder, eval, GRPO rollouts) reads the same small frozen dataclasses
produced by `agent.loop.run_episode`. Events carry PIL images where the UI and recorder need pixels;
`event_to_dict` turns any event into JSON-safe data (images become their sha256 and size).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

ActionKind = Literal["text_search", "image_search_region", "image_search_whole", "answer", "none"]
ToolKind = Literal["text_search", "image_search_region", "image_search_whole"]
EpisodeStatus = Literal[
    "answered",  # the model gave an <answer>
    "budget_exhausted",  # a hard budget (response tokens, turns, tool calls after the warning) ended it
    "format_error",  # malformed turns beyond the retry budget
    "cancelled",  # stopped by the user (flag or generator closed)
    "error",  # the model endpoint failed
    "interrupted",  # set by the trace store for an episode whose process died; never emitted by the loop
]
Budget = Literal["image_search", "tool_calls", "response_tokens", "turns"]
TOOL_KINDS: tuple[ToolKind, ...] = ("text_search", "image_search_region", "image_search_whole")
# Episodes that ran to an end the judge can score (an answer, or none within the budgets or the format): eval's
# accuracy, resume and reports count these; cancelled, failed and interrupted ones are run again.
COMPLETED_STATUSES: tuple[EpisodeStatus, ...] = ("answered", "budget_exhausted", "format_error")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in original-image pixels (x0, y0) inclusive, (x1, y1) exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class ResultItem:
    """One search hit as shown to people and summarised for the model."""

    title: str
    snippet: str = ""
    url: str = ""
    thumbnail_url: str = ""
    source: str = ""  # site or provider-specific origin, shown on the result card
    page_text: str = ""  # extracted, markup-free page text when the page was fetched


@dataclass(frozen=True)
class ToolResult:
    """What a tool returns. A failure is a result with `error` set, never an exception into the loop."""

    provider: str
    items: tuple[ResultItem, ...] = ()
    summary: str = ""
    error: str | None = None
    cache_hit: bool = False
    latency_s: float = 0.0
    crop_box: Box | None = None  # set by the loop for region searches
    crop_image: Image.Image | None = field(default=None, compare=False, repr=False)
    grounding_fallback: bool = False  # no box above threshold: the whole image was searched
    grounding_score: float | None = None
    grounding_note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class EpisodeStarted:
    episode_id: str
    question: str
    image: Image.Image | None = field(compare=False, repr=False)
    image_sha256: str | None
    model: str
    backend: str
    dialect: str
    config: dict[str, Any]
    gold_answers: tuple[str, ...] = ()
    started_at: float = 0.0
    type: str = field(default="episode_started", init=False)


@dataclass(frozen=True)
class TurnStarted:
    episode_id: str
    turn_index: int
    type: str = field(default="turn_started", init=False)


@dataclass(frozen=True)
class TextDelta:
    episode_id: str
    turn_index: int
    text: str
    type: str = field(default="text_delta", init=False)


@dataclass(frozen=True)
class ActionParsed:
    episode_id: str
    turn_index: int
    kind: ActionKind
    argument: str
    reason: str
    raw_text: str
    format_ok: bool
    error: str | None
    tokens: int
    latency_s: float
    type: str = field(default="action_parsed", init=False)


@dataclass(frozen=True)
class FormatError:
    """A turn broke the protocol. The loop asks the model to redo it while `retries_left` > 0."""

    episode_id: str
    turn_index: int
    error: str
    raw_text: str
    retries_left: int
    type: str = field(default="format_error", init=False)


@dataclass(frozen=True)
class ToolStarted:
    episode_id: str
    turn_index: int
    call_index: int
    kind: ToolKind
    argument: str
    provider: str
    type: str = field(default="tool_started", init=False)


@dataclass(frozen=True)
class ToolFinished:
    episode_id: str
    turn_index: int
    call_index: int
    kind: ToolKind
    argument: str
    result: ToolResult
    information: str  # exactly the text the model reads in its next user turn
    type: str = field(default="tool_finished", init=False)


@dataclass(frozen=True)
class BudgetExhausted:
    episode_id: str
    turn_index: int
    budget: Budget
    message: str  # what the model (or the user, for hard stops) is told
    type: str = field(default="budget_exhausted", init=False)


@dataclass(frozen=True)
class ModelError:
    episode_id: str
    turn_index: int
    endpoint: str
    message: str
    type: str = field(default="model_error", init=False)


@dataclass(frozen=True)
class Answer:
    episode_id: str
    turn_index: int
    text: str
    type: str = field(default="answer", init=False)


@dataclass(frozen=True)
class EpisodeFinished:
    episode_id: str
    status: EpisodeStatus
    final_answer: str | None
    turns: int
    tool_calls: int
    response_tokens: int
    elapsed_s: float
    format_ok: bool  # s_fmt: every turn followed the dialect's tag schema
    reason: str = ""
    type: str = field(default="episode_finished", init=False)


Event = (
    EpisodeStarted
    | TurnStarted
    | TextDelta
    | ActionParsed
    | FormatError
    | ToolStarted
    | ToolFinished
    | BudgetExhausted
    | ModelError
    | Answer
    | EpisodeFinished
)

EVENT_TYPES: dict[str, type] = {
    cls.__dataclass_fields__["type"].default: cls  # type: ignore[attr-defined]
    for cls in (
        EpisodeStarted,
        TurnStarted,
        TextDelta,
        ActionParsed,
        FormatError,
        ToolStarted,
        ToolFinished,
        BudgetExhausted,
        ModelError,
        Answer,
        EpisodeFinished,
    )
}


def image_sha256(image: Image.Image) -> str:
    """Content address of an image: sha256 over its mode, size and raw pixels.

    Hashing decoded pixels (not an encoding) makes the same picture one address however it was stored,
    and costs about a tenth of a PNG encode, which matters because every episode hashes its image.
    """
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def image_png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jsonable(value: Any, embed_images: bool) -> Any:
    if isinstance(value, Image.Image):
        out: dict[str, Any] = {"sha256": image_sha256(value), "width": value.width, "height": value.height}
        if embed_images:
            out["png_base64"] = base64.b64encode(image_png_bytes(value)).decode("ascii")
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name), embed_images) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v, embed_images) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, embed_images) for v in value]
    return value


def event_to_dict(event: Event, *, embed_images: bool = False) -> dict[str, Any]:
    """JSON-safe dict of an event; images become {sha256, width, height} (plus base64 PNG if asked)."""
    return _jsonable(event, embed_images)
