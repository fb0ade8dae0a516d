"""The episode panel: the components that show one episode, shared by the Ask, Traces and Compare tabs.

Each tab builds this same panel and fills it from the same render functions, so a stored episode looks
exactly like a live one: the Traces and Compare tabs with `panel_values`, the Ask tab's stream with `LiveFrames`.

The Ask tab's streaming event is registered with `postprocess=False`, and `LiveFrames` encodes each frame
with the components' own `postprocess`: Gradio would run each output's postprocess in a worker thread of
its own, nine thread hops a frame, and under load (bench/app_load.py, 20 sessions) that tripled the
per-token overhead (p95 157-286 ms against 42-92 ms). The outputs that depend only on tool results (the
annotated image, the crop, its caption, the cards) are encoded when such a result arrives, not per frame: an
image given anew is encoded anew (the annotated image plus a PNG mask per box). `gr.skip()` would not do:
Gradio turns it into a component update and rebuilds the component on every frame (p95 over 600 ms).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.data_classes import GradioModel, GradioRootModel

from ui.render import (
    EpisodeView,
    Problem,
    answer_html,
    chat_messages,
    counters_html,
    crop_panel,
    problem_html,
    problem_message,
    result_cards_html,
)


@dataclass
class EpisodePanel:
    chat: gr.Chatbot
    answer: gr.HTML
    counters: gr.HTML
    image: gr.AnnotatedImage
    crop: gr.Image
    crop_caption: gr.Markdown
    cards: gr.HTML

    @property
    def outputs(self) -> list[Any]:
        return [self.chat, self.answer, self.counters, self.image, self.crop, self.crop_caption, self.cards]


def _html(elem_id: str, value: str = "") -> gr.HTML:
    # js_on_load=None: the default adds a click handler; we want a passive display of escaped HTML.
    return gr.HTML(value, elem_id=elem_id, js_on_load=None)


def build_panel(prefix: str, *, chat_height: int = 560) -> EpisodePanel:
    """Create the panel's components in the current Blocks context. `prefix` keeps element ids unique."""
    empty = EpisodeView()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            chat = gr.Chatbot(
                label="Episode",
                elem_id=f"{prefix}-chat",
                height=chat_height,
                sanitize_html=True,
                render_markdown=True,
                allow_tags=False,  # model output may contain <reason> etc.: show it as text, keep no tags
                latex_delimiters=[],
                feedback_options=None,
                group_consecutive_messages=False,
                layout="panel",
                buttons=["copy_all"],
            )
        with gr.Column(scale=2, min_width=300):
            answer = _html(f"{prefix}-answer", answer_html(empty))
            counters = _html(f"{prefix}-counters", counters_html(empty))
            # JPEG: a photo encodes in a few milliseconds, where Gradio's default WebP takes a tenth of a second.
            image = gr.AnnotatedImage(
                label="Image and crop box", elem_id=f"{prefix}-image", color_map={}, height=360, format="jpeg"
            )
            with gr.Row():
                crop = gr.Image(
                    label="Crop sent to image search",
                    elem_id=f"{prefix}-crop",
                    height=180,
                    interactive=False,
                    type="pil",
                    format="jpeg",
                )
            crop_caption = gr.Markdown("", elem_id=f"{prefix}-crop-caption")
    cards = _html(f"{prefix}-cards", result_cards_html(empty))
    return EpisodePanel(chat, answer, counters, image, crop, crop_caption, cards)


def image_key(view: EpisodeView) -> tuple:
    """Changes exactly when the image panel (annotated image, crop, caption) changes: a new image, or the
    result of an image search."""
    done = tuple(t.call_index for t in view.tools if t.result is not None and t.kind.startswith("image_search"))
    return (view.episode_id, id(view.image), done)


def cards_key(view: EpisodeView) -> tuple:
    """Changes exactly when the result cards change: any tool result."""
    return (view.episode_id, tuple(t.call_index for t in view.tools if t.result is not None))


def text_values(view: EpisodeView, *, problem: Problem | None = None) -> list[Any]:
    """The chat, the answer and the counters: what changes with every streamed token. A `problem` (why the
    episode cannot start, or stopped outside the loop) takes the answer box and ends the chat."""
    if problem is None:
        return [chat_messages(view), answer_html(view), counters_html(view)]
    return [chat_messages(view) + [problem_message(problem)], problem_html(problem), counters_html(view)]


def image_values(view: EpisodeView) -> list[Any]:
    """The annotated image, the crop and its caption: what changes only with an image search's result."""
    panel = crop_panel(view)
    annotated = (panel.image, list(panel.boxes)) if panel.image is not None else None
    return [annotated, panel.crop, panel.caption]


def panel_values(view: EpisodeView, *, problem: Problem | None = None) -> list[Any]:
    """Values for `EpisodePanel.outputs`, for an event that lets Gradio postprocess them (the Traces tab)."""
    return text_values(view, problem=problem) + image_values(view) + [result_cards_html(view)]


def encoded(component: gr.components.Component, value: Any) -> Any:
    """What Gradio itself sends to the page for `value`: the component's postprocess, serialised."""
    out = component.postprocess(value)
    return out.model_dump() if isinstance(out, GradioModel | GradioRootModel) else out


class LiveFrames:
    """The encoded frames of one streaming episode, for an event registered with `postprocess=False`.

    The chat, answer and counters are encoded every frame; the image panel when an image search returns,
    in a worker thread (composing and encoding a large image must not stall the event loop that serves
    every page); the cards when any result arrives. Otherwise the same payloads go out again, and the
    stream's diff for them is empty."""

    def __init__(self, panel: EpisodePanel) -> None:
        self.panel = panel
        self._image_key: tuple | None = None
        self._image: list[Any] = []
        self._cards_key: tuple | None = None
        self._cards: list[Any] = []

    def _encode(self, components: list[Any], values: list[Any]) -> list[Any]:
        return [encoded(component, value) for component, value in zip(components, values, strict=True)]

    async def next(self, view: EpisodeView, *, problem: Problem | None = None) -> list[Any]:
        outputs = self.panel.outputs
        if image_key(view) != self._image_key:
            # The view does not change meanwhile: its owner awaits this.
            self._image = await asyncio.to_thread(lambda: self._encode(outputs[3:6], image_values(view)))
            self._image_key = image_key(view)
        if cards_key(view) != self._cards_key:
            self._cards = self._encode(outputs[6:], [result_cards_html(view)])
            self._cards_key = cards_key(view)
        return self._encode(outputs[:3], text_values(view, problem=problem)) + self._image + self._cards
