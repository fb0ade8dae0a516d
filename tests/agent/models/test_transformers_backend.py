"""The real transformers backend on a tiny random Qwen2.5-VL built locally (no hub, no GPU)."""

import threading

import pytest
from PIL import Image

from agent.events import ActionParsed, EpisodeFinished, TextDelta
from agent.loop import Budgets, run_episode
from agent.models.base import BackendError
from agent.models.transformers_backend import TransformersBackend, _first_stop_end


@pytest.fixture(scope="module")
def backend(tiny_vlm_dir):
    b = TransformersBackend(str(tiny_vlm_dir), device="cpu")
    b.load()
    return b


def _messages(image):
    return [
        {"role": "system", "content": "You are tested."},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Question: what?"}]},
    ]


def test_loads_from_a_local_directory_with_from_pretrained(backend):
    assert backend.loaded and backend.device == "cpu"
    assert 100_000 < backend.parameter_count() < 2_000_000


def test_image_becomes_vision_tokens_bounded_by_max_pixels(backend):
    inputs = backend.prepare(_messages(Image.new("RGB", (800, 600), "blue")))
    t, h, w = inputs["image_grid_thw"][0].tolist()
    assert t == 1 and h * w * 14 * 14 <= 112 * 112  # the tiny processor's max_pixels
    image_token = backend._loaded[1].image_token_id
    assert int((inputs["input_ids"] == image_token).sum()) == h * w // 4


def test_stream_yields_deltas_counting_every_token(backend):
    deltas = list(backend.stream(_messages(Image.new("RGB", (64, 64))), max_new_tokens=7, stop=[]))
    assert sum(d.tokens for d in deltas) == 7


def test_generation_stops_right_after_a_stop_string(backend):
    messages = _messages(Image.new("RGB", (64, 64)))
    free = list(backend.stream(messages, max_new_tokens=30, stop=[]))  # greedy: the same text every time
    text = "".join(d.text for d in free)
    assert len(text) >= 6, "tiny model produced too little text to test stopping"
    stop = text[2:5]
    cut = text.index(stop) + len(stop)
    stopped = list(backend.stream(messages, max_new_tokens=30, stop=[stop]))
    assert "".join(d.text for d in stopped) == text[:cut]
    assert sum(d.tokens for d in stopped) < 30


def test_cancel_stops_generation(backend):
    cancel = threading.Event()
    cancel.set()
    deltas = list(backend.stream(_messages(Image.new("RGB", (64, 64))), max_new_tokens=200, stop=[], cancel=cancel))
    assert sum(d.tokens for d in deltas) <= 2


def test_first_stop_end_picks_the_earliest_stop():
    assert _first_stop_end("<a>x</answer> tail </b>", ["</b>", "</answer>"]) == len("<a>x</answer>")
    assert _first_stop_end("none here", ["</b>"]) is None


def test_missing_model_is_a_clear_backend_error(tmp_path):
    b = TransformersBackend(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(BackendError, match="cannot load model.*python -m agent tiny"):
        b.load()


def test_a_whole_episode_runs_through_the_tiny_model(backend):
    image = Image.new("RGB", (96, 80), "green")
    events = list(
        run_episode("What colour is this?", image, backend, budgets=Budgets(max_turn_tokens=16, max_response_tokens=64))
    )
    finished = events[-1]
    assert isinstance(finished, EpisodeFinished)
    # Random weights produce no protocol: every turn is a format error until the retry or token budget ends it.
    assert finished.status in ("format_error", "budget_exhausted")
    assert finished.response_tokens == sum(e.tokens for e in events if isinstance(e, ActionParsed))
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta) and e.turn_index == 0)
    assert streamed == next(e for e in events if isinstance(e, ActionParsed)).raw_text
