"""The live panel's frames (postprocess=False) equal what Gradio sends for the Traces tab's values, and what
depends only on tool results is encoded once per result, not per frame."""

import gradio as gr
import pytest
from PIL import Image

from agent.events import TextDelta, ToolFinished
from tests.traces.helpers import synthetic_episode
from ui.component_io import payload, preprocessed
from ui.panel import PanelFrames, build_panel, panel_values
from ui.render import EpisodeView, chat_messages


def _panel():
    with gr.Blocks():
        return build_panel("t")


def _view_until(events, stop_index):
    view = EpisodeView()
    for event in events[:stop_index]:
        view.apply(event, now=0.0)
    return view


def test_live_frames_equal_what_gradio_sends_for_the_same_view():
    panel = _panel()
    events = synthetic_episode("e-frames")
    view = _view_until(events, len(events))  # the whole episode: crop box, cards, answer
    live = PanelFrames(panel).frame(view)
    gradio = [payload(component, value) for component, value in zip(panel.outputs, panel_values(view), strict=True)]
    assert live == gradio
    assert live[3]["annotations"] and live[4]["path"]  # the crop box and the crop went out as cached files


def test_frames_reuse_result_payloads_until_a_new_result_arrives():
    panel = _panel()
    frames = PanelFrames(panel)
    events = synthetic_episode("e-reuse")
    first_result = next(i for i, e in enumerate(events) if isinstance(e, ToolFinished))
    view = _view_until(events, first_result + 1)
    before = frames.frame(view)
    view.apply(TextDelta("e-reuse", 1, "more tokens"), now=0.0)
    during = frames.frame(view)
    assert all(during[i] is before[i] for i in (3, 4, 5, 6))  # images, caption, cards: not re-encoded
    assert during[0] != before[0]  # the chat did change
    second_result = next(i for i, e in enumerate(events) if isinstance(e, ToolFinished) and i > first_result)
    for event in events[first_result + 1 : second_result + 1]:
        view.apply(event, now=0.0)
    after = frames.frame(view)
    assert after[6] is not during[6] and "hit 1" in after[6]


def test_a_streamed_chat_is_encoded_as_a_whole_chat_would_be_at_every_frame():
    panel = _panel()
    frames = PanelFrames(panel)
    events = synthetic_episode("e-chat")
    view = EpisodeView()
    for event in events:  # one frame per event: turns growing, tool blocks turning done, the answer
        view.apply(event, now=0.0)
        assert frames.frame(view)[0] == payload(panel.chat, chat_messages(view))
    notice = {"role": "assistant", "content": "stopped", "metadata": {"title": "⚠ x", "status": "done"}}
    assert frames.frame(view, extra_messages=[notice])[0] == payload(panel.chat, chat_messages(view) + [notice])


def test_inputs_are_preprocessed_as_gradio_would(tmp_path):
    with gr.Blocks():
        number = gr.Number(3, precision=0)
        dropdown = gr.Dropdown(["a", "b"], value="a")
        image = gr.Image(type="filepath")
        text = gr.Textbox()
    assert preprocessed(number, 3.0) == 3 and isinstance(preprocessed(number, 3.0), int)
    assert preprocessed(text, "hi") == "hi"
    assert preprocessed(image, None) is None
    upload = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(upload)
    assert preprocessed(image, {"path": str(upload), "meta": {"_type": "gradio.FileData"}}).endswith(".png")
    with pytest.raises(gr.Error):
        preprocessed(dropdown, "not a choice")
