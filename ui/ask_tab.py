"""The Ask tab: pick or upload an image, ask, and watch the episode stream; Stop cancels it.

The callbacks only wire components: rendering is ui.render (through ui.panel), running is ui.episode.
(No `from __future__ import annotations` here: Gradio reads the gr.Request hint at runtime.)
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import gradio as gr

from agent.images import load_image
from ui.episode import EpisodeCrashed, EpisodeRequest, event_batches, run_whole_episode
from ui.errors import friendly_error
from ui.examples import Example
from ui.panel import EpisodePanel, LiveFrames, build_panel
from ui.render import EpisodeView, notice_message
from ui.runtime import Runtime
from ui.settings import BUDGET_FIELDS, AppConfig, public_settings, resolve_settings
from ui.settings_panel import SettingsPanel, build_settings_panel

# The GPU-bound path: every Ask click shares this queue, so its concurrency limit caps episodes running at once.
EPISODE_CONCURRENCY_ID = "episodes"
ASK_LABEL, STOP_LABEL = "Ask", "Stop"


def build_ask_tab(app: AppConfig, runtime: Runtime, examples: list[Example]) -> dict[str, Any]:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=280):
            image = gr.Image(
                label="Image", type="filepath", elem_id="ask-input-image", height=260, sources=["upload", "clipboard"]
            )
        with gr.Column(scale=3, min_width=320):
            question = gr.Textbox(
                label="Question", placeholder="What is this building dedicated to?", lines=2, elem_id="ask-question"
            )
            gold = gr.Textbox(visible=False, elem_id="ask-gold")  # gold answers of a picked example (JSON list)
            with gr.Row():
                ask = gr.Button(ASK_LABEL, variant="primary", elem_id="ask-button")
                stop = gr.Button(STOP_LABEL, variant="stop", interactive=False, elem_id="stop-button")
            if examples:
                gr.Examples(
                    examples=[[ex.question, ex.image_path, json.dumps(list(ex.gold_answers))] for ex in examples],
                    inputs=[question, image, gold],
                    label="Example questions (gold answers are shown next to the model's answer)",
                    examples_per_page=10,
                )
    settings: SettingsPanel = build_settings_panel(app)
    panel: EpisodePanel = build_panel("ask")

    # A hand-edited question or a new upload is no longer the example: forget its gold answers.
    question.input(lambda: "", None, gold, queue=False)
    image.upload(lambda: "", None, gold, queue=False)

    # Inputs as a set: Gradio passes one {component: value} dict, so the settings panel can grow freely.
    inputs = {question, image, gold, *settings.components}

    async def run(values: dict, request: gr.Request) -> AsyncIterator[list[Any]]:
        form = {key: values[component] for key, component in zip(settings.keys, settings.components, strict=True)}
        frames = LiveFrames(panel)
        async for frame in ask_episode(
            app, runtime, frames, values[question], values[image], values[gold], form, request
        ):
            yield frame

    outputs = [*panel.outputs, ask, stop]
    streaming = dict(
        inputs=inputs,
        outputs=outputs,
        concurrency_limit=app.max_concurrent_episodes,
        concurrency_id=EPISODE_CONCURRENCY_ID,
        show_progress="hidden",
        postprocess=False,  # frames are encoded by LiveFrames: ui.panel says why
    )
    event = ask.click(run, api_name="ask", **streaming)
    question.submit(run, api_name=False, **streaming)

    def stop_episode(request: gr.Request) -> Any:
        runtime.cancel(request.session_hash or "")
        return gr.update(interactive=False, value="Stopping…")

    # Unqueued: Stop must answer at once even when every worker is busy with episodes.
    stop.click(stop_episode, None, stop, queue=False, api_name="stop")
    return {"event": event, "panel": panel, "settings": settings}


def _buttons(running: bool) -> list[Any]:
    return [gr.update(interactive=not running), gr.update(interactive=running, value=STOP_LABEL)]


# Between an episode's first and last frames the buttons get their labels as plain values. An update would
# make Gradio rebuild both buttons' config on every frame; an unchanged value leaves the stream's diff empty,
# so the page keeps what it shows (a "Stopping…" label included).
_BUTTONS_AS_THEY_ARE = [ASK_LABEL, STOP_LABEL]


async def _message_only(frames: LiveFrames, message: dict, *, running: bool = False) -> list[Any]:
    """Clear the panel and show one message in the chat."""
    return await frames.next(EpisodeView(), extra_messages=[message]) + _buttons(running)


async def ask_episode(
    app: AppConfig,
    runtime: Runtime,
    frames: LiveFrames,
    question: str,
    image_path: str | None,
    gold_json: str,
    form: dict[str, Any],
    request: gr.Request | None,
) -> AsyncIterator[list[Any]]:
    """The Ask generator: validate, load the model if needed (visibly), then stream the episode.

    It runs on the event loop (ui.episode.event_batches says why), so whatever blocks (opening the image,
    loading the model, encoding result images) goes to a worker thread.
    """
    question = (question or "").strip()
    if not question:
        yield await _message_only(
            frames, notice_message("⚠ Nothing to ask", "Type a question (and usually upload an image) first.")
        )
        return
    try:
        image, (model_cfg, tool_cfg, budgets) = await asyncio.to_thread(
            lambda: (load_image(image_path) if image_path else None, resolve_settings(app, form))
        )
        gold = tuple(json.loads(gold_json)) if gold_json else ()
    except Exception as exc:
        yield await _message_only(frames, notice_message("⚠ Cannot start", friendly_error(exc)))
        return

    if model_cfg.backend == "transformers" and runtime.cached_backend(model_cfg) is None:
        loading = asyncio.ensure_future(asyncio.to_thread(runtime.backend, model_cfg))
        loading.add_done_callback(_retrieve)  # the page may be gone before the load ends
        start = time.monotonic()
        while not loading.done():
            text = (
                f"Loading {model_cfg.model} (first question only; later questions reuse it). "
                f"{time.monotonic() - start:.0f} s so far. A 7B model takes about a minute on a GPU."
            )
            yield await _message_only(frames, notice_message("⏳ Loading the model…", text, pending=True), running=True)
            await asyncio.wait({loading}, timeout=1.0)
        if loading.exception() is not None:
            yield await _message_only(
                frames, notice_message("⚠ The model could not be loaded", friendly_error(loading.exception()))
            )
            return

    session = (request.session_hash if request is not None else None) or "anonymous"
    req = EpisodeRequest(
        question=question,
        image=image,
        model=model_cfg,
        tools=tool_cfg,
        budgets=budgets,
        gold_answers=gold,
        settings={
            **public_settings(tool_cfg, budgets),
            "budgets_form": {k: form.get(k) for k in BUDGET_FIELDS},
        },
    )
    cancel = runtime.start_episode(session, req.episode_id)
    view = EpisodeView()
    yield await frames.next(view) + _buttons(True)
    try:
        # aclosing: when the page goes away, the batches close (and cancel the episode) at once, not at garbage collection.
        batches = event_batches(
            lambda: run_whole_episode(req),
            cancel=cancel,
            record=runtime.record,
            record_and_wait=runtime.record_and_wait,
        )
        async with aclosing(batches):
            async for batch in batches:
                for event in batch:
                    view.apply(event)
                yield await frames.next(view) + (_buttons(False) if view.finished is not None else _BUTTONS_AS_THEY_ARE)
    except EpisodeCrashed as exc:
        yield await frames.next(view, extra_messages=[notice_message("⚠ The episode stopped", str(exc))]) + _buttons(
            False
        )
    finally:
        runtime.finish_episode(session, req.episode_id)
    if view.finished is None:  # defensive: the stream ended without a closing event
        yield await frames.next(view) + _buttons(False)


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # marks it retrieved: no "exception was never retrieved" noise when nobody waited
