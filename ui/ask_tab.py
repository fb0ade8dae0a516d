"""The Ask tab: pick or upload an image, ask, and watch the episode stream; Stop cancels it.

Why an episode cannot start (nothing asked, an unusable image, a model that cannot load) is shown in the
answer box. The episode a page started is remembered in the browser (gr.BrowserState): reloading the page
mid-episode does not stop it, and the reloaded page offers to reopen it, live, in the Traces tab.

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
from traces.errors import NotFoundError
from traces.queries import load_episode
from ui.episode import EpisodeCrashed, EpisodeRequest, event_batches, run_whole_episode
from ui.errors import friendly_error
from ui.examples import Example, no_examples_hint
from ui.panel import EpisodePanel, LiveFrames, build_panel
from ui.render import EpisodeView, Problem
from ui.runtime import Runtime
from ui.safe import md_text, truncate
from ui.settings import BUDGET_FIELDS, AppConfig, public_settings, resolve_settings
from ui.settings_panel import SettingsPanel, build_settings_panel
from ui.upload import Upload, uploaded_image

# The GPU-bound path: every Ask click shares this queue, so its concurrency limit caps episodes running at once.
EPISODE_CONCURRENCY_ID = "episodes"
ASK_LABEL, STOP_LABEL = "Ask", "Stop"


def build_ask_tab(app: AppConfig, runtime: Runtime, examples: list[Example]) -> dict[str, Any]:
    # The episode this browser started last, while it runs: {"episode_id", "question"} (or None).
    remembered = gr.BrowserState(None, storage_key="dmm-ask-running-episode")
    with gr.Row(visible=False, elem_id="ask-reopen-row") as reopen_row:
        reopen_note = gr.Markdown("", elem_id="ask-reopen-note")
        reopen = gr.Button("Reopen in Traces", size="sm", scale=0, elem_id="ask-reopen")
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
            else:
                gr.Markdown(no_examples_hint(), elem_id="ask-no-examples")
    settings: SettingsPanel = build_settings_panel(app)
    panel: EpisodePanel = build_panel("ask")

    # A hand-edited question or a new upload is no longer the example: forget its gold answers.
    question.input(lambda: "", None, gold, queue=False)
    image.upload(lambda: "", None, gold, queue=False)

    # Inputs as a set: Gradio passes one {component: value} dict, so the settings panel can grow freely.
    inputs = {question, image, gold, *settings.components}

    async def run(values: dict, request: gr.Request) -> AsyncIterator[list[Any]]:
        # The event does not preprocess (ui.upload says why the image must reach us unopened): every other
        # input goes through its component's own preprocess here, as Gradio would have done.
        def given(component: Any) -> Any:
            return component.preprocess(values[component])

        form = {key: given(component) for key, component in zip(settings.keys, settings.components, strict=True)}
        frames = LiveFrames(panel)
        async for frame in ask_episode(
            app,
            runtime,
            frames,
            given(question),
            uploaded_image(values[image]),
            given(gold),
            form,
            request,
        ):
            yield frame

    outputs = [*panel.outputs, ask, stop, remembered]
    streaming = dict(
        inputs=inputs,
        outputs=outputs,
        concurrency_limit=app.max_concurrent_episodes,
        concurrency_id=EPISODE_CONCURRENCY_ID,
        show_progress="hidden",
        preprocess=False,  # the image reaches us unopened (ui.upload); `run` preprocesses the other inputs
        postprocess=False,  # frames are encoded by LiveFrames: ui.panel says why
    )
    event = ask.click(run, api_name="ask", **streaming)
    question.submit(run, api_name=False, **streaming)
    # Asking again answers the offer to reopen the earlier episode.
    for trigger in (ask.click, question.submit):
        trigger(lambda: gr.Row(visible=False), None, reopen_row, queue=False, api_name=False)

    def stop_episode(request: gr.Request) -> Any:
        runtime.cancel(request.session_hash or "")
        return gr.update(interactive=False, value="Stopping…")

    # Unqueued: Stop must answer at once even when every worker is busy with episodes.
    stop.click(stop_episode, None, stop, queue=False, api_name="stop")

    def offer_reopen(value: Any) -> tuple[Any, str]:
        """On page load: the episode this browser was watching, if the page went away while it ran."""
        episode_id = value.get("episode_id") if isinstance(value, dict) else None
        if not isinstance(episode_id, str) or not episode_id:
            return gr.Row(visible=False), ""
        try:
            summary = load_episode(runtime.store, episode_id).summary
        except NotFoundError:
            return gr.Row(visible=False), ""
        return gr.Row(visible=True), reopen_note_markdown(summary.status, summary.question)

    return {
        "event": event,
        "panel": panel,
        "settings": settings,
        # For ui.app: the offer is made on page load; the button opens the episode in the Traces tab.
        "reopen": (offer_reopen, remembered, [reopen_row, reopen_note], reopen),
    }


def reopen_note_markdown(status: str, question: str) -> str:
    """The line offering to reopen the episode a reloaded page was showing."""
    asked = f"“{md_text(truncate(question, 120))}”"
    if status == "running":
        return f"⏳ The episode you started before this page was reloaded is still running: {asked}."
    return (
        f"The episode you started before this page was reloaded has finished (status **{md_text(status)}**): {asked}."
    )


def _buttons(running: bool) -> list[Any]:
    return [gr.update(interactive=not running), gr.update(interactive=running, value=STOP_LABEL)]


# Between an episode's first and last frames the buttons get their labels as plain values. An update would
# make Gradio rebuild both buttons' config on every frame; an unchanged value leaves the stream's diff empty,
# so the page keeps what it shows (a "Stopping…" label included).
_BUTTONS_AS_THEY_ARE = [ASK_LABEL, STOP_LABEL]


async def _problem_only(frames: LiveFrames, problem: Problem, *, running: bool = False) -> list[Any]:
    """Clear the panel and show one problem in the answer box (and the chat)."""
    return await frames.next(EpisodeView(), problem=problem) + _buttons(running)


async def ask_episode(
    app: AppConfig,
    runtime: Runtime,
    frames: LiveFrames,
    question: str,
    image: Upload | None,
    gold_json: str,
    form: dict[str, Any],
    request: gr.Request | None,
) -> AsyncIterator[list[Any]]:
    """The Ask generator: validate, load the model if needed (visibly), then stream the episode.

    Each frame is the panel, the two buttons and what the browser remembers: the episode while it runs
    ({"episode_id", "question"}: a reloaded page offers to reopen it), None otherwise. (It is the last output
    of the /ask API too: an API client learns the episode's id.)
    It runs on the event loop (ui.episode.event_batches says why), so whatever blocks (opening the image,
    loading the model, encoding result images) goes to a worker thread.
    """
    question = (question or "").strip()
    if not question:
        problem = Problem("Nothing to ask", "Type a question (and usually upload an image), then press Ask.")
        yield await _problem_only(frames, problem) + [None]
        return
    try:
        pil_image, (model_cfg, tool_cfg, budgets) = await asyncio.to_thread(
            lambda: (
                load_image(image.source, name=image.name) if image is not None else None,
                resolve_settings(app, form),
            )
        )
        gold = tuple(json.loads(gold_json)) if gold_json else ()
    except Exception as exc:
        yield await _problem_only(frames, Problem("Cannot start", friendly_error(exc))) + [None]
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
            problem = Problem("Loading the model…", text, pending=True)
            yield await _problem_only(frames, problem, running=True) + [None]
            await asyncio.wait({loading}, timeout=1.0)
        if loading.exception() is not None:
            problem = Problem("The model could not be loaded", friendly_error(loading.exception()))
            yield await _problem_only(frames, problem) + [None]
            return

    # An episode whose page was reloaded runs on and holds its slot: wait for it, in view if it takes a while
    # (a moment's wait is usually the previous episode of this page letting go of its slot).
    waiting_since = time.monotonic()
    while runtime.slots_busy():
        if time.monotonic() - waiting_since > 0.5:
            problem = Problem(
                "Waiting for a free slot",
                "Episodes already use every slot (one may have been started from a page since reloaded or "
                "closed; it runs to its end). This one starts as soon as a slot is free.",
                pending=True,
            )
            yield await _problem_only(frames, problem, running=True) + [None]
        await asyncio.sleep(0.25)

    session = (request.session_hash if request is not None else None) or "anonymous"
    req = EpisodeRequest(
        question=question,
        image=pil_image,
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
    running = {"episode_id": req.episode_id, "question": question[:200]}
    view = EpisodeView()
    yield await frames.next(view) + _buttons(True) + [running]
    try:
        # aclosing: when the page goes away, the batches close at once (the episode itself runs on, recorded).
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
                if view.finished is not None:
                    yield await frames.next(view) + _buttons(False) + [None]
                else:
                    yield await frames.next(view) + _BUTTONS_AS_THEY_ARE + [running]
    except EpisodeCrashed as exc:
        problem = Problem("The episode stopped", str(exc))
        yield await frames.next(view, problem=problem) + _buttons(False) + [None]
    finally:
        runtime.finish_episode(session, req.episode_id)
    if view.finished is None:  # defensive: the stream ended without a closing event
        yield await frames.next(view) + _buttons(False) + [None]


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # marks it retrieved: no "exception was never retrieved" noise when nobody waited
