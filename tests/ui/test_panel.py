"""The live panel's frames (postprocess=False) equal what the components' own postprocess makes of the Traces
tab's values for the same view, at every event; the image panel is encoded once per image search's result
and the cards once per result, not per frame."""

import asyncio
import time

import gradio as gr

from agent.events import TextDelta, ToolFinished
from tests.traces.helpers import synthetic_episode
from ui.panel import LiveFrames, build_panel, encoded, panel_values
from ui.render import EpisodeView, Problem


def _panel():
    with gr.Blocks():
        return build_panel("t")


def _view_until(events, stop_index):
    view = EpisodeView()
    for event in events[:stop_index]:
        view.apply(event, now=0.0)
    return view


def _as_gradio_would(panel, view, problem=None):
    values = panel_values(view, problem=problem)
    return [encoded(component, value) for component, value in zip(panel.outputs, values, strict=True)]


def test_live_frames_equal_the_encoded_panel_at_every_event(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_000.0)  # the counters' elapsed time: the same in both frames
    panel = _panel()
    frames = LiveFrames(panel)
    events = synthetic_episode("e-frames")
    view = EpisodeView()

    async def check():
        for event in events:  # one frame per event: turns growing, tool blocks turning done, crop, cards, answer
            view.apply(event, now=0.0)
            assert await frames.next(view) == _as_gradio_would(panel, view)
        problem = Problem("The episode stopped", "tool bug")
        assert await frames.next(view, problem=problem) == _as_gradio_would(panel, view, problem)
        return await frames.next(view)

    last = asyncio.run(check())
    assert last[3]["annotations"] and last[4]["path"]  # the crop box and the crop went out as cached files


def test_frames_reuse_result_payloads_until_a_new_result_arrives():
    frames = LiveFrames(_panel())
    events = synthetic_episode("e-reuse")
    first_result = next(i for i, e in enumerate(events) if isinstance(e, ToolFinished))
    view = _view_until(events, first_result + 1)
    before = asyncio.run(frames.next(view))
    view.apply(TextDelta("e-reuse", 1, "more tokens"), now=0.0)
    during = asyncio.run(frames.next(view))
    assert all(during[i] is before[i] for i in (3, 4, 5, 6))  # images, caption, cards: not re-encoded
    assert during[0] != before[0]  # the chat did change
    second_result = next(i for i, e in enumerate(events) if isinstance(e, ToolFinished) and i > first_result)
    for event in events[first_result + 1 : second_result + 1]:
        view.apply(event, now=0.0)
    after = asyncio.run(frames.next(view))
    assert after[6] is not during[6] and "hit 1" in after[6]  # a text search's result: new cards
    assert all(after[i] is during[i] for i in (3, 4, 5))  # and the same image panel
