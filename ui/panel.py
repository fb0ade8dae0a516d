"""The episode panel: the components that show one episode, shared by the Ask and Traces tabs.

Both tabs build this same panel and fill it from the same render functions, so a stored episode looks
exactly like a live one: the Traces tab with `panel_values`, the Ask tab's stream with `PanelFrames`, which
encodes each frame itself and the heavy outputs (the annotated image, the crop) only when they change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.component_io import payload
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


def _image_values(view: EpisodeView) -> tuple[Any, Any, str]:
    """The annotated image, the crop and its caption: the slow part of a panel, composed from scratch."""
    panel = crop_panel(view)
    annotated = (panel.image, list(panel.boxes)) if panel.image is not None else None
    return annotated, panel.crop, panel.caption


def panel_values(view: EpisodeView, *, extra_messages: list[dict] | None = None) -> list[Any]:
    """Values for `EpisodePanel.outputs`, for an event that lets Gradio postprocess them (the Traces tab)."""
    annotated, crop, caption = _image_values(view)
    messages = chat_messages(view) + list(extra_messages or [])
    return [messages, answer_html(view), counters_html(view), annotated, crop, caption, result_cards_html(view)]


class PanelFrames:
    """The panel's frames for a streaming event registered with `postprocess=False` (the Ask tab).

    Each frame is encoded here with the components' own postprocess (ui.component_io says why), the chat
    message by message, reusing the encoding of messages unchanged since the last frame. What
    depends only on tool results (the two images, the caption, the cards) is rendered when a result
    arrives, not per frame; unchanged, the same payloads go out again (the images' files are already in
    Gradio's cache) and the stream's diff for them is empty. `gr.skip()` would not do: Gradio treats it as
    a component update and rebuilds the component and its config, API schemas included, on every frame.
    """

    def __init__(self, panel: EpisodePanel) -> None:
        self.panel = panel
        self._results_key: tuple | None = None
        self._from_results: tuple[Any, Any, str, str] = (None, None, "", "")
        self._chat_cache: list[tuple[dict, list[Any]]] = []  # (message, its encoding), by position

    def frame(self, view: EpisodeView, *, extra_messages: list[dict] | None = None) -> list[Any]:
        p = self.panel
        if results_key(view) != self._results_key:
            self._encode_results(view)
        annotated_out, crop_out, caption_out, cards_out = self._from_results
        messages = chat_messages(view) + list(extra_messages or [])
        return [
            self._chat_payload(messages),
            payload(p.answer, answer_html(view)),
            payload(p.counters, counters_html(view)),
            annotated_out,
            crop_out,
            caption_out,
            cards_out,
        ]

    def _chat_payload(self, messages: list[dict]) -> list[Any]:
        """`payload(chat, messages)`, encoding only the messages that changed since the last frame (the
        Chatbot's postprocess works message by message; mid-stream only the live turn changes)."""
        encoded: list[Any] = []
        cache: list[tuple[dict, list[Any]]] = []
        for i, message in enumerate(messages):
            if i < len(self._chat_cache) and self._chat_cache[i][0] == message:
                cache.append(self._chat_cache[i])
            else:
                cache.append((message, payload(self.panel.chat, [message])))
            encoded.extend(cache[-1][1])
        self._chat_cache = cache
        return encoded

    async def next_frame(self, view: EpisodeView, *, extra_messages: list[dict] | None = None) -> list[Any]:
        """`frame` for a generator on the event loop: a new result's images are composed and encoded (PNG
        into Gradio's cache) in a worker thread, so one episode's large image never stalls every page."""
        if results_key(view) != self._results_key:
            await asyncio.to_thread(
                self._encode_results, view
            )  # the view does not change meanwhile: its owner awaits this
        return self.frame(view, extra_messages=extra_messages)

    def _encode_results(self, view: EpisodeView) -> None:
        p = self.panel
        annotated, crop, caption = _image_values(view)
        self._from_results = (
            payload(p.image, annotated),
            payload(p.crop, crop),
            payload(p.crop_caption, caption),
            payload(p.cards, result_cards_html(view)),
        )
        self._results_key = results_key(view)
