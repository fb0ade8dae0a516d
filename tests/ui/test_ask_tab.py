"""The Ask generator on the event loop: a model loaded on the first question shows its progress, then the
episode streams and is recorded; why an episode cannot start (nothing asked, an unusable image, a model that
cannot load or needs a GPU) is said in the answer box with what to do, never a traceback; an episode's frames
carry what the browser remembers of it (for reopening after a reload)."""

import asyncio

import gradio as gr

from agent.tools.base import Toolbox
from traces.queries import count_episodes, list_episodes
from ui.ask_tab import ask_episode
from ui.episode import set_runtime
from ui.panel import LiveFrames, build_panel
from ui.settings import app_config_from_args, build_parser
from ui.upload import Upload


def _app(model: str):
    args = build_parser().parse_args(
        ["--backend", "transformers", "--model", model, "--examples", "", "--db", ":memory:"]
    )
    return app_config_from_args(args)


def _frames():
    with gr.Blocks():
        return LiveFrames(build_panel("t"))


ASK, ANSWER, REMEMBERED = 7, 1, 9  # frame positions: the panel's 7 outputs, Ask, Stop, the browser's memory


def _ask(app, runtime, question="What is this?", image=None):
    async def collect():
        form = {"max_response_tokens": 24, "max_turns": 1}
        frames = ask_episode(app, runtime, _frames(), question, image, "", form, None)
        return [frame async for frame in frames]

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
    assert "Loading the model" in frames[0][ANSWER]  # in the answer box too, not only in the chat
    episodes = list_episodes(runtime.store).items  # the episode ran on the loaded model and was recorded, closed
    assert len(episodes) == 1 and episodes[0].status not in ("running", "interrupted")
    assert frames[-1][ASK]["interactive"] is True  # Ask is enabled again at the end
    # While it ran, the browser remembered it (to offer it again after a reload); at its end, nothing.
    assert any((f[REMEMBERED] or {}).get("episode_id") == episodes[0].id for f in frames)
    assert frames[-1][REMEMBERED] is None


def test_a_model_that_cannot_load_is_a_message_with_what_to_do(tmp_path, runtime_for):
    app = _app(str(tmp_path / "no-such-model"))
    runtime = _runtime(app, runtime_for)
    frames = _ask(app, runtime)
    last = _chat_text(frames[-1])
    assert "could not be loaded" in last and "Traceback" not in last
    answer = frames[-1][ANSWER]  # the answer box says it, with what to do
    assert "could not be loaded" in answer and "python -m agent tiny" in answer and "Traceback" not in answer
    assert count_episodes(runtime.store) == 0  # nothing ran, nothing was recorded


def test_a_7b_model_on_a_cpu_is_refused_in_the_answer_box_with_what_to_do(runtime_for):
    app = _app("Qwen/Qwen2.5-VL-7B-Instruct")
    runtime = _runtime(app, runtime_for)
    answer = _ask(app, runtime)[-1][ANSWER]
    assert "needs a GPU" in answer and "--backend openai" in answer and "vllm serve" in answer
    assert count_episodes(runtime.store) == 0


def test_nothing_asked_and_an_unusable_image_are_said_in_the_answer_box(tmp_path, runtime_for):
    app = _app(str(tmp_path / "unused-model"))
    runtime = _runtime(app, runtime_for)
    empty = _ask(app, runtime, "   ")[-1]
    assert "Nothing to ask" in empty[ANSWER] and "Type a question" in empty[ANSWER]
    assert empty[REMEMBERED] is None  # nothing runs: nothing to reopen after a reload
    fake = tmp_path / "upload-1234" / "holiday.jpg"
    fake.parent.mkdir()
    fake.write_text("this is not a picture")
    refused = _ask(app, runtime, image=Upload(str(fake), "holiday.jpg"))[-1][ANSWER]
    assert "Cannot start" in refused and "holiday.jpg" in refused and "not an image" in refused
    assert "JPEG, PNG" in refused and "upload-1234" not in refused  # what works; never the server's path
    assert count_episodes(runtime.store) == 0
