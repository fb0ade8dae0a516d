"""The Ask generator on the event loop: a model loaded on the first question shows its progress, then the
episode streams and is recorded; a model that cannot load is a readable message, not a traceback."""

import asyncio

import gradio as gr

from agent.tools.base import Toolbox
from traces.queries import count_episodes, list_episodes
from ui.ask_tab import ask_episode
from ui.episode import set_runtime
from ui.panel import LiveFrames, build_panel
from ui.settings import app_config_from_args, build_parser


def _app(model: str):
    args = build_parser().parse_args(
        ["--backend", "transformers", "--model", model, "--examples", "", "--db", ":memory:"]
    )
    return app_config_from_args(args)


def _frames():
    with gr.Blocks():
        return LiveFrames(build_panel("t"))


def _ask(app, runtime, question="What is this?"):
    async def collect():
        form = {"max_response_tokens": 24, "max_turns": 1}
        return [frame async for frame in ask_episode(app, runtime, _frames(), question, None, "", form, None)]

    return asyncio.run(collect())


def _chat_text(frame) -> str:
    return " ".join(str(m.get("content")) + str((m.get("metadata") or {}).get("title")) for m in frame[0])


def _runtime(app, runtime_for):
    runtime = runtime_for(app, build_tools=lambda config, **_: Toolbox())  # no tools: the model answers alone
    set_runtime(runtime)
    return runtime


def test_the_first_question_loads_the_model_visibly_then_streams_the_episode(tiny_vlm_dir, runtime_for):
    app = _app(str(tiny_vlm_dir))
    runtime = _runtime(app, runtime_for)
    frames = _ask(app, runtime)
    assert "Loading the model" in _chat_text(frames[0])
    episodes = list_episodes(runtime.store).items  # the episode ran on the loaded model and was recorded, closed
    assert len(episodes) == 1 and episodes[0].status not in ("running", "interrupted")
    assert frames[-1][-2]["interactive"] is True  # Ask is enabled again at the end


def test_a_model_that_cannot_load_is_a_message_with_what_to_do(tmp_path, runtime_for):
    app = _app(str(tmp_path / "no-such-model"))
    runtime = _runtime(app, runtime_for)
    frames = _ask(app, runtime)
    last = _chat_text(frames[-1])
    assert "could not be loaded" in last and "Traceback" not in last
    assert count_episodes(runtime.store) == 0  # nothing ran, nothing was recorded
