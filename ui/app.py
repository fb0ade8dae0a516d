"""Assemble the app: open the store, set up the runtime, build the tabs, and mount everything on one server.

Importing this module is cheap (Gradio, SQLAlchemy, Pillow); torch and transformers load only when the
first question needs a local model, so the page is up within seconds of launch.
"""

import importlib.util
import logging
import sys
import tempfile
from pathlib import Path

import gradio as gr

from traces.annotations import get_label_set, set_label_set
from traces.errors import NotFoundError
from traces.store import TraceStore
from ui.ask_tab import build_ask_tab
from ui.assets import CSS, KEYBOARD_JS
from ui.compare_tab import build_compare_tab
from ui.episode import set_runtime
from ui.examples import load_examples
from ui.runtime import Runtime
from ui.settings import DEFAULT_LABELS, AppConfig
from ui.traces_tab import TRACES_CONCURRENCY, build_traces_tab
from ui.train_tab import build_train_tab

log = logging.getLogger("ui")
TITLE = "DeepMMSearch-R1 studio"


def open_runtime(app: AppConfig) -> Runtime:
    from traces.background import BackgroundRecorder
    from traces.recorder import Recorder
    from traces.store import open_store

    store = open_store(app.db)
    # Many episodes stream at once here: their threads must not wait on the store (traces.background).
    recorder = BackgroundRecorder(Recorder(store, run_kind="demo", run_name="app"))
    return Runtime(
        launch_model=app.model,
        launch_tools=app.tools,
        store=store,
        recorder=recorder,
        allow_large_cpu=app.allow_large_cpu,
        max_episodes=app.max_concurrent_episodes,
    )


def ensure_labels(store: TraceStore, app: AppConfig) -> tuple[str, ...]:
    """The label set annotators use: given with --labels, else the store's, else the built-in default."""
    if app.labels:
        try:
            current = get_label_set(store, app.label_set).labels
        except NotFoundError:
            current = ()
        if tuple(current) != tuple(app.labels):
            set_label_set(store, app.label_set, app.labels)
        return app.labels
    try:
        return tuple(get_label_set(store, app.label_set).labels)
    except NotFoundError:
        set_label_set(store, app.label_set, DEFAULT_LABELS, "built-in labels of the app")
        return DEFAULT_LABELS


def build_blocks(app: AppConfig, runtime: Runtime) -> gr.Blocks:
    set_runtime(runtime)
    examples = load_examples(app.examples, runtime.store, Path(tempfile.gettempdir()) / "dmm-examples")
    labels = ensure_labels(runtime.store, app)
    with gr.Blocks(title=TITLE, fill_width=True) as demo:
        with gr.Row():
            gr.Markdown(
                f"## {TITLE}\nAsk a question about an image and watch the agent reason, search the web, crop and answer. "
                "Every episode is recorded for review in the Traces tab."
            )
            if app.oauth:
                gr.LoginButton(size="sm")
        with gr.Tabs() as tabs:
            with gr.Tab("Ask", id="ask") as ask_tab:
                ask = build_ask_tab(app, runtime, examples)
            with gr.Tab("Traces", id="traces") as traces_tab:
                traces = build_traces_tab(app, runtime.store, labels)
            with gr.Tab("Train", id="train") as train_tab:
                train = build_train_tab(app, runtime.store, train_tab)
            with gr.Tab("Compare", id="compare") as compare_tab:
                build_compare_tab(runtime.store, compare_tab)
        refresh_fn, refresh_inputs, refresh_outputs = traces["refresh"]
        traces_tab.select(
            refresh_fn, refresh_inputs, refresh_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False
        )
        # The Train tab refreshes its jobs every few seconds while it is shown, not behind other tabs.
        for other in (ask_tab, traces_tab, compare_tab):
            other.select(lambda: gr.Timer(active=False), None, train["timer"], api_name=False)
        # A GRPO job's "open its rollouts" shows the Traces tab filtered to the job's rollout run (the run filter
        # is the last of the Traces tab's filter inputs).
        rollout_btn, rollout_choice = train["rollouts"]
        rollout_btn.click(
            lambda run: (gr.Tabs(selected="traces"), run, gr.Timer(active=False)),
            [rollout_choice],
            [tabs, refresh_inputs[-1], train["timer"]],
            api_name=False,
        ).then(refresh_fn, refresh_inputs, refresh_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False)
        whoami, who = traces["who"]
        demo.load(whoami, None, who, api_name=False)
        # A page reloaded while its episode ran offers to reopen it, live, in the Traces tab.
        offer_reopen, remembered, offer_outputs, reopen_btn = ask["reopen"]
        demo.load(offer_reopen, remembered, offer_outputs, api_name=False)
        open_requested, goto, opened = traces["open"]
        reopen_btn.click(
            lambda value: (gr.Tabs(selected="traces"), (value or {}).get("episode_id")),
            remembered,
            [tabs, goto],
            api_name=False,
        ).then(open_requested, goto, opened, concurrency_limit=TRACES_CONCURRENCY, api_name=False)
    # Episodes have their own concurrency limit (ask_tab); everything else gets a few workers of its own.
    demo.queue(default_concurrency_limit=TRACES_CONCURRENCY, max_size=256)
    return demo


def mark_matplotlib_absent() -> None:
    """Gradio wraps every function call, each streamed frame included, in a matplotlib backend switch
    that imports matplotlib. Where it is not installed, every call paid for a failed import (a scan of
    sys.path), twice a frame. None in sys.modules is Python's own mark for "not importable": the
    import then fails at once. Nothing changes where matplotlib is installed."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def create_server(app: AppConfig, runtime: Runtime | None = None):
    """A FastAPI app serving the Gradio UI at / and published crops (for Google Lens) at app.crops_route."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    mark_matplotlib_absent()
    runtime = runtime or open_runtime(app)
    demo = build_blocks(app, runtime)
    # Sync generators run in worker threads: enough for every running episode plus the Traces tab.
    demo.max_threads = max(40, app.max_concurrent_episodes + 2 * TRACES_CONCURRENCY)
    server = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    crop_dir = Path(app.tools.crop_dir or "runs/crops")
    crop_dir.mkdir(parents=True, exist_ok=True)
    server.mount(app.crops_route, StaticFiles(directory=crop_dir), name="crops")
    return gr.mount_gradio_app(
        server,
        demo,
        path="/",
        auth=list(app.auth) or None,
        auth_message="Sign in to ask questions and annotate traces." if app.auth else None,
        css=CSS,
        head=KEYBOARD_JS,
        footer_links=["api"],
        server_name=app.host,
        server_port=app.port,
        ssr_mode=False,
    ), demo
