"""Agent events → what the UI shows. Pure functions, no Gradio, no I/O: unit-tested without a server.

One renderer for live and stored episodes: the Ask tab folds events from the running loop into an
`EpisodeView`; the Traces tab folds the events the store reconstructs (`traces.replay.episode_events`) into the
same view and calls the same functions. Everything that came from the model or the web is escaped by
`ui.safe` here, at the last step before display.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from agent.events import (
    ActionParsed,
    Answer,
    Box,
    BudgetExhausted,
    EpisodeFinished,
    EpisodeStarted,
    Event,
    FormatError,
    ModelError,
    TextDelta,
    ToolFinished,
    ToolResult,
    ToolStarted,
    TurnStarted,
)
from agent.visible_text import collapse_runs
from ui.safe import code_fence, html_link, html_text, http_url, md_text, truncate

TOOL_NAMES = {
    "text_search": "text search",
    "image_search_region": "crop search",
    "image_search_whole": "whole-image search",
}
ACTION_NAMES = {**TOOL_NAMES, "answer": "answer", "none": "no action"}
# One status vocabulary everywhere (Ask, Traces, Compare, the CLI, the store): the recorded names, each
# shown with what it means and what to do about it. pending and running are the store's names for an
# imported question not run yet and for an episode still going.
STATUS_HELP = {
    "answered": "The model answered.",
    "budget_exhausted": (
        "A budget ran out before the model answered. Raise that budget under Settings (budgets), or ask a more "
        "specific question."
    ),
    "format_error": (
        "The model's turns did not follow the {dialect} format and its retries ran out (each malformed turn "
        "shows what the model wrote). Check that Settings → Dialect matches the model: deepmmsearch for "
        "DeepMMSearch-R1-style checkpoints, mmsearch-r1 for MMSearch-R1-7B. Untuned and tiny models rarely "
        "follow either."
    ),
    "error": (
        "The episode stopped on an error. If the reason names the model endpoint, check that the server is "
        "running and reachable (Settings → Endpoint), then ask again; otherwise the server log has the details."
    ),
    "cancelled": "Stopped with the Stop button before the model answered.",
    "interrupted": "The app stopped while this episode ran (the process ended). Ask the question again.",
    "running": "The episode is still running.",
    "pending": "An imported question that has not been run yet.",
}
# AnnotatedImage turns every box into a full-size mask, so the shown image is downscaled (STACK-NOTES).
MAX_SHOWN_SIDE = 768


@dataclass
class TurnView:
    index: int
    text: str = ""
    action: str | None = None
    argument: str = ""
    reason: str = ""
    format_ok: bool = True
    error: str | None = None
    tokens: int = 0
    latency_s: float | None = None


@dataclass
class ToolView:
    call_index: int
    turn_index: int
    kind: str
    argument: str
    provider: str
    started_at: float
    result: ToolResult | None = None
    information: str = ""


@dataclass
class Notice:
    """Something the loop reported between turns: a budget spent, a malformed turn, a model failure."""

    turn_index: int
    kind: str  # "budget" | "format" | "model"
    title: str
    text: str


@dataclass
class EpisodeView:
    """Everything shown about one episode, accumulated from its events in order."""

    episode_id: str = ""
    question: str = ""
    image: Image.Image | None = None
    model: str = ""
    backend: str = ""
    dialect: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    gold_answers: tuple[str, ...] = ()
    started_at: float | None = None
    turns: list[TurnView] = field(default_factory=list)
    tools: list[ToolView] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    # chat order: ("turn", i) | ("tool", i) | ("notice", i) so blocks appear as they happened
    order: list[tuple[str, int]] = field(default_factory=list)
    response_tokens: int = 0
    answer: str | None = None
    finished: EpisodeFinished | None = None
    # The store's status of an episode read back without its closing event: "pending" (an imported question,
    # never run: no clock runs) or "running" (going on elsewhere: the Traces tab refreshes it). None when live.
    stored_status: str | None = None

    def apply(self, event: Event, *, now: float | None = None) -> EpisodeView:
        now = time.time() if now is None else now
        match event:
            case EpisodeStarted():
                self.episode_id, self.question, self.image = event.episode_id, event.question, event.image
                self.model, self.backend, self.dialect = event.model, event.backend, event.dialect
                self.config, self.gold_answers = dict(event.config), tuple(event.gold_answers)
                self.started_at = event.started_at or now
            case TurnStarted():
                self.turns.append(TurnView(event.turn_index))
                self.order.append(("turn", len(self.turns) - 1))
            case TextDelta():
                self._turn(event.turn_index).text += event.text
            case ActionParsed():
                turn = self._turn(event.turn_index)
                turn.text = event.raw_text
                turn.action, turn.argument, turn.reason = event.kind, event.argument, event.reason
                turn.format_ok, turn.error, turn.tokens, turn.latency_s = (
                    event.format_ok,
                    event.error,
                    event.tokens,
                    event.latency_s,
                )
                self.response_tokens += event.tokens
            case FormatError():
                more = (
                    f"the model is asked to redo the turn ({event.retries_left} retries left)"
                    if event.retries_left
                    else "no retries left"
                )
                self._notice(event.turn_index, "format", "Malformed turn", f"{event.error}; {more}")
            case ToolStarted():
                self.tools.append(
                    ToolView(event.call_index, event.turn_index, event.kind, event.argument, event.provider, now)
                )
                self.order.append(("tool", len(self.tools) - 1))
            case ToolFinished():
                tool = self._tool(event)
                tool.result, tool.information = event.result, event.information
            case BudgetExhausted():
                self._notice(event.turn_index, "budget", f"Budget: {event.budget.replace('_', ' ')}", event.message)
            case ModelError():
                self._notice(event.turn_index, "model", "Model endpoint failed", f"{event.endpoint}: {event.message}")
            case Answer():
                self.answer = event.text
            case EpisodeFinished():
                self.finished = event
                self.response_tokens = max(self.response_tokens, event.response_tokens)
                if event.final_answer is not None:
                    self.answer = event.final_answer
        return self

    def _turn(self, index: int) -> TurnView:
        for turn in reversed(self.turns):
            if turn.index == index:
                return turn
        # A stream that starts mid-episode (should not happen) still renders.
        self.turns.append(TurnView(index))
        self.order.append(("turn", len(self.turns) - 1))
        return self.turns[-1]

    def _tool(self, event: ToolFinished) -> ToolView:
        for tool in reversed(self.tools):
            if tool.call_index == event.call_index:
                return tool
        self.tools.append(
            ToolView(event.call_index, event.turn_index, event.kind, event.argument, event.result.provider, 0.0)
        )
        self.order.append(("tool", len(self.tools) - 1))
        return self.tools[-1]

    def _notice(self, turn_index: int, kind: str, title: str, text: str) -> None:
        self.notices.append(Notice(turn_index, kind, title, text))
        self.order.append(("notice", len(self.notices) - 1))

    # --- derived figures -------------------------------------------------------------------------

    @property
    def budgets(self) -> dict[str, int]:
        return dict(self.config.get("budgets") or {})

    @property
    def tool_calls(self) -> int:
        return len(self.tools) if self.finished is None else max(self.finished.tool_calls, len(self.tools))

    @property
    def image_searches(self) -> int:
        return sum(1 for tool in self.tools if tool.kind != "text_search")

    @property
    def streamed_tokens(self) -> int:
        """Tokens so far: finished turns' counts, plus a rough count for the turn still streaming."""
        live = 0
        if self.turns and self.turns[-1].action is None and self.finished is None:
            live = len(self.turns[-1].text.split())
        return self.response_tokens + live

    @property
    def status(self) -> str:
        """The episode's status in the store's words: its closing status, else pending or running."""
        if self.finished is not None:
            return self.finished.status
        return self.stored_status or "running"

    @property
    def pending(self) -> bool:
        return self.finished is None and self.stored_status == "pending"

    def elapsed_s(self, now: float | None = None) -> float:
        if self.finished is not None:
            return self.finished.elapsed_s
        if self.started_at is None or self.pending:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - self.started_at)


def fold(events: Iterable[Event], view: EpisodeView | None = None, *, now: float | None = None) -> EpisodeView:
    view = view if view is not None else EpisodeView()
    for event in events:
        view.apply(event, now=now)
    return view


# --- chat messages ---------------------------------------------------------------------------------


def chat_messages(view: EpisodeView) -> list[dict[str, Any]]:
    """The Chatbot value: the question, then one collapsible block per turn, tool call and notice, then
    the answer (or why there is none) as a plain message. Dicts in Gradio's messages format."""
    messages: list[dict[str, Any]] = []
    if view.question:
        messages.append({"role": "user", "content": md_text(view.question)})
    for kind, i in view.order:
        if kind == "turn":
            messages.append(_turn_message(view, view.turns[i]))
        elif kind == "tool":
            messages.append(_tool_message(view.tools[i]))
        else:
            notice = view.notices[i]
            messages.append(
                {
                    "role": "assistant",
                    "content": md_text(notice.text),
                    "metadata": {"title": f"⚠ {notice.title}", "id": f"notice-{i}", "status": "done"},
                }
            )
    if view.finished is not None or view.answer is not None:
        messages.append({"role": "assistant", "content": _final_markdown(view)})
    elif view.pending:
        messages.append({"role": "assistant", "content": "*Not run yet: an imported question (status `pending`).*"})
    return messages


# What of a model's raw text is shown at most; a collapsed run counts as its marker.
RAW_TEXT_CHARS = 4000


def shown_raw_text(text: str, limit: int = RAW_TEXT_CHARS) -> str:
    """A model's text as written, for reading: whitespace visible, long runs collapsed ("⏎ ×2000"), cut at
    `limit` characters (saying how many more there were)."""
    shown = collapse_runs(text, visible_whitespace=True)
    if len(shown) > limit:
        shown = shown[:limit] + f"… ({len(shown) - limit} more characters)"
    return shown


def raw_text_markdown(text: str) -> str:
    """`shown_raw_text` as a Markdown code block (no Markdown or HTML inside it takes effect)."""
    if not text:
        return "*The model wrote nothing at all.*"
    shown = shown_raw_text(text)
    fence = code_fence(shown, shortest=3)  # a fenced block opens with three backticks at least
    return f"{fence}text\n{shown}\n{fence}"


def _turn_message(view: EpisodeView, turn: TurnView) -> dict[str, Any]:
    pending = turn.action is None and view.finished is None
    if pending:
        title = f"Turn {turn.index + 1} · thinking…"
        # Long runs collapsed as they stream: a turn of thousands of line breaks stays one short line.
        body = md_text(collapse_runs(turn.text)) if turn.text else "*waiting for the model…*"
    elif turn.action is None:  # the episode ended while this turn streamed (cancel, model error)
        title = f"Turn {turn.index + 1} · interrupted"
        body = "**What the model wrote before it stopped:**\n\n" + raw_text_markdown(turn.text)
    elif not turn.format_ok:
        title = f"Turn {turn.index + 1} · malformed"
        body = (
            f"**Format error:** {md_text(turn.error or 'malformed turn')}\n\n**What the model wrote** (line breaks "
            "shown as ⏎, long runs counted):\n\n" + raw_text_markdown(turn.text)
        )
    else:
        title = f"Turn {turn.index + 1} · {ACTION_NAMES.get(turn.action, turn.action)}"
        reason = md_text(turn.reason.strip()) if turn.reason.strip() else "*no reasoning given*"
        body = f"{reason}\n\n**Action:** {ACTION_NAMES.get(turn.action, turn.action)}"
        if turn.argument and turn.action != "image_search_whole":
            body += f" → {md_text(turn.argument)}"
    metadata: dict[str, Any] = {"title": title, "id": f"turn-{turn.index}", "status": "pending" if pending else "done"}
    if turn.latency_s is not None:
        metadata["duration"] = round(turn.latency_s, 2)
        metadata["log"] = f"{turn.tokens} tokens"
    return {"role": "assistant", "content": body, "metadata": metadata}


def _tool_message(tool: ToolView) -> dict[str, Any]:
    name = TOOL_NAMES.get(tool.kind, tool.kind)
    result = tool.result
    lines = []
    if tool.kind == "image_search_whole":
        lines.append("**Searching with:** the whole image")
    elif tool.kind == "image_search_region":
        lines.append(f"**Region:** {md_text(tool.argument)}")
    else:
        lines.append(f"**Query:** {md_text(tool.argument)}")
    metadata: dict[str, Any] = {"id": f"tool-{tool.call_index}"}
    if result is None:
        metadata.update(title=f"🔧 {name} · {tool.provider} · running…", status="pending")
        return {"role": "assistant", "content": "\n\n".join(lines), "metadata": metadata}
    if result.crop_box is not None and tool.kind == "image_search_region":
        box = result.crop_box
        where = (
            "no box above threshold, searched the whole image"
            if result.grounding_fallback
            else f"box ({box.x0}, {box.y0}, {box.x1}, {box.y1})"
        )
        score = f", score {result.grounding_score:.2f}" if result.grounding_score is not None else ""
        lines.append(f"**Grounding:** {md_text(where + score)}")
        if result.grounding_note:
            lines.append(f"*{md_text(result.grounding_note)}*")
    if result.error:
        lines.append(f"**Failed:** {md_text(result.error)}")
    else:
        lines.append(f"**{len(result.items)} results.** Summary the model received:")
        lines.append(md_text(result.summary) if result.summary else "*no summary (snippets only)*")
    state = "failed" if result.error else ("cache hit" if result.cache_hit else "live")
    metadata.update(
        title=f"🔧 {name} · {result.provider or tool.provider} · {state}",
        status="done",
        duration=round(result.latency_s, 2),
        log=f"provider {result.provider or tool.provider}; {'cache hit' if result.cache_hit else 'no cache hit'}",
    )
    return {"role": "assistant", "content": "\n\n".join(lines), "metadata": metadata}


def _final_markdown(view: EpisodeView) -> str:
    if view.answer is not None and (view.finished is None or view.finished.status == "answered"):
        return f"**Answer:** {md_text(view.answer)}"
    finished = view.finished
    assert finished is not None
    reason = f": {md_text(finished.reason)}" if finished.reason else ""
    return f"**No answer** · status **{md_text(finished.status)}**{reason}. {md_text(status_help(view))}"


# --- the image panel -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropPanel:
    """The input image with the crop box (scaled for display) and the crop itself in full resolution."""

    image: Image.Image | None
    boxes: tuple[tuple[tuple[int, int, int, int], str], ...]
    crop: Image.Image | None
    caption: str


# A crop smaller than this (its longer side, in pixels) is enlarged by a whole factor, without smoothing, so
# a few pixels fill the panel as blocks instead of a dot; its true size stays in the caption.
CROP_SHOWN_SIDE = 180  # the crop panel's height (ui.panel)
MAX_CROP_ZOOM = 16


def crop_caption(view: EpisodeView) -> str:
    """One line under the crop: what was sent to image search, box in original-image pixels."""
    if not view.episode_id:
        return ""  # no episode yet (or its start is still on the way): nothing to say about its image
    image = view.image
    if image is None:
        return "No image in this episode."
    caption = "No image search yet."
    for tool in view.tools:
        result = tool.result
        if result is not None and tool.kind == "image_search_whole":
            caption = "Whole-image search: the entire image was sent."
        elif result is not None and result.crop_box is not None and tool.kind == "image_search_region":
            box = result.crop_box
            caption = (
                f"Crop box ({box.x0}, {box.y0}, {box.x1}, {box.y1}) in original pixels: the crop is "
                f"{box.width}×{box.height} px of {image.width}×{image.height}."
            )
            size = result.crop_image.size if result.crop_image is not None else (box.width, box.height)
            zoom = crop_zoom(*size)
            if zoom > 1:
                caption += f" Shown enlarged ×{zoom}, without smoothing."
    return caption


def crop_zoom(width: int, height: int) -> int:
    """The whole factor a crop of this size is enlarged by for display (1: shown as it is)."""
    side = max(width, height, 1)
    return max(1, min(MAX_CROP_ZOOM, CROP_SHOWN_SIDE // side))


def zoomed(crop: Image.Image) -> Image.Image:
    """A small crop enlarged by `crop_zoom`, nearest-neighbour: every pixel becomes a block."""
    zoom = crop_zoom(crop.width, crop.height)
    if zoom == 1:
        return crop
    return crop.resize((crop.width * zoom, crop.height * zoom), Image.Resampling.NEAREST)


def crop_panel(view: EpisodeView, *, max_side: int = MAX_SHOWN_SIDE) -> CropPanel:
    """Boxes come from tool results in original-image pixels; they are scaled with the shown image."""
    image = view.image
    if image is None:
        return CropPanel(None, (), None, crop_caption(view))
    scale = min(1.0, max_side / max(image.width, image.height))
    shown = (
        image
        if scale == 1.0
        else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
        )
    )
    boxes: list[tuple[tuple[int, int, int, int], str]] = []
    crop = None
    for tool in view.tools:
        result = tool.result
        if result is None or result.crop_box is None or tool.kind != "image_search_region":
            continue
        box = result.crop_box
        label = f"crop: {truncate(tool.argument, 60)}"
        if result.grounding_fallback:
            label = "no box above threshold: whole image"
        elif result.grounding_score is not None:
            label += f" ({result.grounding_score:.2f})"
        boxes.append((_scale_box(box, scale, shown.size), label))
        crop = result.crop_image if result.crop_image is not None else _crop(image, box)
    return CropPanel(shown, tuple(boxes), zoomed(crop) if crop is not None else None, crop_caption(view))


def _scale_box(box: Box, scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    w, h = size
    x0 = min(max(0, round(box.x0 * scale)), w - 1)
    y0 = min(max(0, round(box.y0 * scale)), h - 1)
    x1 = min(max(x0 + 1, round(box.x1 * scale)), w)
    y1 = min(max(y0 + 1, round(box.y1 * scale)), h)
    return (x0, y0, x1, y1)


def _crop(image: Image.Image, box: Box) -> Image.Image | None:
    x0, y0 = max(0, box.x0), max(0, box.y0)
    x1, y1 = min(image.width, box.x1), min(image.height, box.y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return image.crop((x0, y0, x1, y1))


# --- result cards ----------------------------------------------------------------------------------


def result_cards_html(view: EpisodeView, *, snippet_chars: int = 280) -> str:
    """One section per finished tool call: result cards (title link, source, snippet, thumbnail) and the
    exact text the model read, in a collapsible block. All outside strings are escaped."""
    sections = []
    for tool in view.tools:
        result = tool.result
        if result is None:
            continue
        name = TOOL_NAMES.get(tool.kind, tool.kind)
        subject = "the whole image" if tool.kind == "image_search_whole" else f"“{truncate(tool.argument, 120)}”"
        flags = ["cache hit" if result.cache_hit else "live", f"{result.latency_s:.2f} s"]
        head = (
            f'<div class="dm-call-head"><b>Call {tool.call_index + 1} · {html_text(name)}</b> {html_text(subject)}'
            f' <span class="dm-muted">· {html_text(result.provider or tool.provider)} · {html_text(" · ".join(flags))}</span></div>'
        )
        if result.error:
            body = f'<div class="dm-error">Tool failed: {html_text(result.error)}</div>'
        elif not result.items:
            body = '<div class="dm-muted">No results.</div>'
        else:
            body = '<div class="dm-cards">' + "".join(_card(item, snippet_chars) for item in result.items) + "</div>"
        summary = ""
        if tool.information:
            summary = (
                '<details class="dm-info"><summary>What the model read</summary>'
                f'<pre class="dm-pre">{html_text(tool.information)}</pre></details>'
            )
        sections.append(f'<section class="dm-call">{head}{body}{summary}</section>')
    if not sections:
        return '<div class="dm-muted dm-empty">Search results appear here as cards.</div>'
    return '<div class="dm-results">' + "".join(sections) + "</div>"


def _card(item: Any, snippet_chars: int) -> str:
    thumb = http_url(item.thumbnail_url)
    img = (
        f'<img class="dm-thumb" src="{html_text(thumb)}" alt="" loading="lazy" referrerpolicy="no-referrer">'
        if thumb
        else '<div class="dm-thumb dm-nothumb"></div>'
    )
    url = http_url(item.url)
    source = item.source or (_host(url) if url else "")
    title = item.title or url or "(untitled)"
    return (
        f'<div class="dm-card">{img}<div class="dm-card-body">'
        f'<div class="dm-card-title">{html_link(url, truncate(title, 160))}</div>'
        f'<div class="dm-card-source">{html_text(truncate(source, 80))}</div>'
        f'<div class="dm-card-snippet">{html_text(truncate(item.snippet, snippet_chars))}</div>'
        "</div></div>"
    )


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


# --- counters and the answer -----------------------------------------------------------------------


def counters_html(view: EpisodeView, *, now: float | None = None) -> str:
    """Tokens, tool calls, image searches, turns and time against the episode's budgets."""
    if not view.episode_id:
        return '<div class="dm-counters dm-muted">Counters appear when an episode starts.</div>'
    if view.pending:
        return '<div class="dm-counters dm-muted">Not run yet: counters appear when the question is run.</div>'
    b = view.budgets
    items = [
        ("tokens", view.streamed_tokens, b.get("max_response_tokens")),
        ("tool calls", view.tool_calls, b.get("max_tool_calls")),
        ("image searches", view.image_searches, b.get("max_image_searches")),
        ("turns", len(view.turns), b.get("max_turns")),
    ]
    cells = []
    for label, used, limit in items:
        over = limit is not None and used >= limit
        of = f" / {limit}" if limit is not None else ""
        cells.append(f'<span class="dm-counter{" dm-spent" if over else ""}"><b>{used}{of}</b> {label}</span>')
    cells.append(f'<span class="dm-counter"><b>{view.elapsed_s(now):.1f} s</b> elapsed</span>')
    return '<div class="dm-counters">' + "".join(cells) + "</div>"


def status_help(view: EpisodeView) -> str:
    """What the episode's status means and what to do about it, in one or two sentences."""
    status = view.status
    if status == "error" and any(notice.kind == "model" for notice in view.notices):
        return (
            "The model endpoint failed. Check that the server is running and reachable (Settings → Endpoint), "
            "then ask again."
        )
    return STATUS_HELP.get(status, "").format(dialect=view.dialect or "dialect's")


def tools_off(view: EpisodeView) -> list[tuple[str, str]]:
    """(tool, why it was off) for each tool this episode ran without, from the tools it recorded at its start."""
    described = view.config.get("tools")
    if not isinstance(described, dict):
        return []
    names = {"text_search": "text search", "image_search": "image search", "grounding": "grounding (crops)"}
    return [
        (names.get(tool, tool), state[len("off: ") :])
        for tool, state in described.items()
        if isinstance(state, str) and state.startswith("off: ")
    ]


def _last_malformed(view: EpisodeView) -> TurnView | None:
    return next((turn for turn in reversed(view.turns) if turn.action is not None and not turn.format_ok), None)


def answer_html(view: EpisodeView) -> str:
    """The final answer, set apart; without one, why (status, reason, what to do); the gold answers when known;
    the tools the episode ran without."""
    if view.finished is None and view.answer is None:
        if not view.episode_id:
            return '<div class="dm-answer dm-muted">The final answer appears here.</div>'
        if view.pending:
            head = (
                '<div class="dm-answer-label">Not run yet · status pending</div>'
                f'<div class="dm-answer-text">{html_text(STATUS_HELP["pending"])}</div>'
            )
        elif view.stored_status == "running":
            head = (
                '<div class="dm-answer-label">Running · status running</div><div class="dm-answer-text">'
                "Still going: shown as recorded so far, refreshed every few seconds.</div>"
            )
        else:
            head = '<div class="dm-muted">Working…</div>'
        return f'<div class="dm-answer dm-status-{html_text(view.status)}">{head}{_gold(view)}{_tools_off(view)}</div>'
    status = view.status if view.finished else "answered"
    parts = [f'<div class="dm-answer dm-status-{html_text(status)}">']
    if view.answer is not None:
        parts.append(
            f'<div class="dm-answer-label">Final answer</div><div class="dm-answer-text">{html_text(view.answer)}</div>'
        )
    else:
        assert view.finished is not None
        reason = view.finished.reason
        parts.append(f'<div class="dm-answer-label">No answer · status {html_text(status)}</div>')
        if reason:
            parts.append(f'<div class="dm-answer-text">{html_text(reason)}</div>')
        parts.append(f'<div class="dm-answer-help">{html_text(status_help(view))}</div>')
        malformed = _last_malformed(view) if status == "format_error" else None
        if malformed is not None:
            parts.append(
                f'<div class="dm-muted">Turn {malformed.index + 1} as written:</div>'
                f'<pre class="dm-raw">{html_text(shown_raw_text(malformed.text, 300) or "(nothing)")}</pre>'
            )
    parts.append(_gold(view))
    if view.finished is not None:
        ok = "every turn well-formed" if view.finished.format_ok else "format not clean"
        parts.append(
            f'<div class="dm-muted">status {html_text(status)} · {ok} · episode {html_text(view.episode_id[:12])}</div>'
        )
    parts.append(_tools_off(view))
    parts.append("</div>")
    return "".join(parts)


def _gold(view: EpisodeView) -> str:
    if not view.gold_answers:
        return ""
    return f'<div class="dm-muted">Gold: {html_text(" | ".join(view.gold_answers))}</div>'


def _tools_off(view: EpisodeView) -> str:
    lines = "".join(f"<li>{html_text(tool)}: {html_text(why)}</li>" for tool, why in tools_off(view))
    return f'<div class="dm-tools-off">Off in this episode:<ul>{lines}</ul></div>' if lines else ""


@dataclass(frozen=True)
class Problem:
    """Why an episode cannot start (or stopped outside the loop), with what to do; `pending`: not a failure but
    a wait (the model loading). Shown in the answer box and as a plain message in the chat."""

    title: str
    text: str
    pending: bool = False


def problem_html(problem: Problem) -> str:
    kind = "dm-waiting" if problem.pending else "dm-problem"
    return (
        f'<div class="dm-answer {kind}"><div class="dm-answer-label">{html_text(problem.title)}</div>'
        f'<div class="dm-answer-text">{html_text(problem.text)}</div></div>'
    )


def problem_message(problem: Problem) -> dict[str, Any]:
    """The chat's copy of a problem: a plain message, open, not a collapsed block."""
    mark = "⏳" if problem.pending else "⚠"
    return {"role": "assistant", "content": f"**{mark} {md_text(problem.title)}.** {md_text(problem.text)}"}
