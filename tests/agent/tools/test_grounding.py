"""Grounding DINO through the same loading code as the real checkpoint, with a tiny random model."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.events import Box
from agent.tools.grounding import GroundingDinoGrounder, GroundingSettings, finalize_box, normalise_expression

IMAGE = Image.new("RGB", (320, 240), (180, 40, 40))


@pytest.fixture(scope="module")
def grounder(tiny_grounding_dir) -> GroundingDinoGrounder:
    return GroundingDinoGrounder(
        GroundingSettings(model=str(tiny_grounding_dir), box_threshold=0.0, text_threshold=0.0, device="cpu")
    )


def test_tiny_model_loads_through_the_real_path_and_gives_a_box_in_original_pixels(grounder):
    g = grounder.ground(IMAGE, "The red car")
    assert g.error is None and not g.fallback and g.score is not None
    assert 0 <= g.box.x0 < g.box.x1 <= 320 and 0 <= g.box.y0 < g.box.y1 <= 240
    assert g.box.width >= 32 and g.box.height >= 32  # min size
    processor, model, device = grounder.load()
    assert type(model).__name__ == "GroundingDinoForObjectDetection" and device == "cpu"
    assert type(processor.image_processor).__name__ == "GroundingDinoImageProcessorPil"


def test_same_input_same_box(grounder):
    assert grounder.ground(IMAGE, "red car").box == grounder.ground(IMAGE, "red car").box


def test_no_box_above_threshold_falls_back_to_the_whole_image(tiny_grounding_dir):
    strict = GroundingDinoGrounder(GroundingSettings(model=str(tiny_grounding_dir), box_threshold=1.0, device="cpu"))
    g = strict.ground(IMAGE, "a dog")
    assert g.fallback and g.error is None and g.box == Box(0, 0, 320, 240) and "above the box threshold 1" in g.note


def test_empty_expression_is_an_error_without_running_the_model(grounder):
    g = grounder.ground(IMAGE, "  . ")
    assert g.error.startswith("empty referring expression") and g.latency_s < 0.01


def test_an_unloadable_model_is_an_error_result(tmp_path):
    g = GroundingDinoGrounder(GroundingSettings(model=str(tmp_path / "missing"))).ground(IMAGE, "car")
    assert g.error.startswith("grounding failed: could not load grounding model") and g.fallback


def test_cpu_downscale_caps_the_processor_size(tiny_grounding_dir):
    g = GroundingDinoGrounder(
        GroundingSettings(model=str(tiny_grounding_dir), device="cpu", cpu_short_side=128, cpu_long_side=200)
    )
    assert g.load()[0].image_processor.size["shortest_edge"] == 128


def test_padding_and_min_size():
    assert finalize_box((100, 100, 200, 150), 320, 240, padding=0.1, min_size=1) == Box(90, 95, 210, 155)
    assert finalize_box((10, 10, 12, 12), 320, 240, padding=0.0, min_size=32) == Box(0, 0, 32, 32)
    assert finalize_box((300, 230, 330, 250), 320, 240, padding=0.0, min_size=1) == Box(300, 230, 320, 240)  # clipped


@pytest.mark.parametrize(
    "raw", [(50, 50, 50, 80), (50, 80, 90, 60), (400, 10, 450, 50), (-50, -50, -1, -1), (float("nan"), 0, 10, 10)]
)
def test_zero_area_or_outside_boxes_are_rejected(raw):
    assert finalize_box(raw, 320, 240, padding=0.1, min_size=32) is None


def test_expressions_are_normalised_for_grounding_dino():
    assert normalise_expression("  The Red   CAR. ") == "the red car."
    assert normalise_expression("") == ""


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        GroundingSettings(box_threshold=1.5)
