"""The episode panel: the components that show one episode, shared by the Ask and Traces tabs.

Both tabs build this same panel and fill it from the same render functions, so a stored episode looks
exactly like a live one: the Traces tab with `panel_values`, the Ask tab's stream with `LiveFrames`.

The Ask tab's streaming event is registered with `postprocess=False`, and `LiveFrames` encodes each frame
with the components' own `postprocess`: Gradio would run each output's postprocess in a worker thread of
its own, nine thread hops a frame, and under load (bench/app_load.py, 20 sessions) that tripled the
per-token overhead (p95 230-280 ms against 42-92 ms). The outputs that depend only on tool results (the
annotated image, the crop, its caption, the cards) are encoded when a result arrives, not per frame: an
image given anew is encoded anew (the annotated image as WebP plus a PNG mask per box). `gr.skip()` would
not do: Gradio turns it into a component update and rebuilds the component on every frame (p95 over 600 ms).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.data_classes import GradioModel, GradioRootModel

from ui.render import (
    EpisodeView,
    answer_html,
    chat_messages,
    counters_html,
    crop_panel,
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
            image = gr.AnnotatedImage(label="Image and crop box", elem_id=f"{prefix}-image", color_map={}, height=360)
            with gr.Row():
                crop = gr.Image(
                    label="Crop sent to image search",
                    elem_id=f"{prefix}-crop",
                    height=180,
                    interactive=False,
                    type="pil",
                )
            crop_caption = gr.Markdown("", elem_id=f"{prefix}-crop-caption")
    cards = _html(f"{prefix}-cards", result_cards_html(empty))
    return EpisodePanel(chat, answer, counters, image, crop, crop_caption, cards)


def results_key(view: EpisodeView) -> tuple:
    """Changes exactly when what depends on tool results changes: the image panel and the result cards."""
    done = tuple(tool.call_index for tool in view.tools if tool.result is not None)
    return (view.episode_id, id(view.image), done)


def text_values(view: EpisodeView, *, extra_messages: list[dict] | None = None) -> list[Any]:
    """The chat, the answer and the counters: what changes with every streamed token."""
    messages = chat_messages(view) + list(extra_messages or [])
    return [messages, answer_html(view), counters_html(view)]


def result_values(view: EpisodeView) -> list[Any]:
    """The annotated image, the crop, its caption and the result cards: what changes only with a tool result."""
    panel = crop_panel(view)
    annotated = (panel.image, list(panel.boxes)) if panel.image is not None else None
    return [annotated, panel.crop, panel.caption, result_cards_html(view)]


def panel_values(view: EpisodeView, *, extra_messages: list[dict] | None = None) -> list[Any]:
    """Values for `EpisodePanel.outputs`, for an event that lets Gradio postprocess them (the Traces tab)."""
    return text_values(view, extra_messages=extra_messages) + result_values(view)


def encoded(component: gr.components.Component, value: Any) -> Any:
    """What Gradio itself sends to the page for `value`: the component's postprocess, serialised."""
    out = component.postprocess(value)
    return out.model_dump() if isinstance(out, GradioModel | GradioRootModel) else out


class LiveFrames:
    """The encoded frames of one streaming episode, for an event registered with `postprocess=False`.

    The chat, answer and counters are encoded every frame; the result outputs when a result arrives, in a
    worker thread (composing and encoding a large image must not stall the event loop that serves every
    page), and otherwise the same payloads go out again: the stream's diff for them is empty."""

    def __init__(self, panel: EpisodePanel) -> None:
        self.panel = panel
        self._shown: tuple | None = None
        self._results: list[Any] = []

    def _encode(self, components: list[Any], values: list[Any]) -> list[Any]:
        return [encoded(component, value) for component, value in zip(components, values, strict=True)]

    async def next(self, view: EpisodeView, *, extra_messages: list[dict] | None = None) -> list[Any]:
        outputs = self.panel.outputs
        if results_key(view) != self._shown:
            # The view does not change meanwhile: its owner awaits this.
            self._results = await asyncio.to_thread(lambda: self._encode(outputs[3:], result_values(view)))
            self._shown = results_key(view)
        return self._encode(outputs[:3], text_values(view, extra_messages=extra_messages)) + self._results
