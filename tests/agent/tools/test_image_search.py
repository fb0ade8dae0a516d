"""Reverse image search: SerpAPI Google Lens (via a published crop URL) and Cloud Vision (bytes)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from PIL import Image

from agent.aio import run_sync
from agent.tools.cloud_vision import CloudVisionWebDetection
from agent.tools.http import HttpPolicy
from agent.tools.image_search import ImagePublisher, ReverseImageSearch
from agent.tools.serpapi import SerpApiLens
from tests.servers.search_providers import KEY, Reply

API = HttpPolicy(timeout_s=2.0, retries=0)
IMAGE = Image.new("RGB", (64, 48), (10, 120, 200))


def test_lens_publishes_the_crop_and_sends_its_public_url(web, tmp_path: Path):
    publisher = ImagePublisher(tmp_path, "https://crops.example.org/c")
    result = run_sync(
        ReverseImageSearch(SerpApiLens(KEY, publisher, base_url=web.base_url, policy=API)).search_image(
            IMAGE, question="What is this?"
        )
    )
    assert result.ok and len(result.items) == 5 and result.items[0].title == "Page 1"
    assert result.items[0].thumbnail_url.endswith("/thumbs/p1.jpg")
    sent = web.seen("/search.json")[0].query
    assert sent["engine"] == ["google_lens"] and sent["url"][0].startswith("https://crops.example.org/c/")
    name = sent["url"][0].rsplit("/", 1)[1]
    assert Image.open(tmp_path / name).size == (64, 48)


def test_lens_without_a_public_base_url_says_what_to_set(web, tmp_path: Path):
    result = run_sync(
        ReverseImageSearch(SerpApiLens(KEY, ImagePublisher(tmp_path, ""), base_url=web.base_url)).search_image(
            IMAGE, question="q"
        )
    )
    assert "PUBLIC_BASE_URL" in result.error and not web.requests


def test_cloud_vision_sends_bytes_and_reads_web_detection(web):
    result = run_sync(
        ReverseImageSearch(CloudVisionWebDetection(KEY, base_url=web.base_url, policy=API)).search_image(
            IMAGE, question="q"
        )
    )
    assert result.ok and result.provider == "cloud_vision"
    assert (
        result.items[0].title == "Best guess: golden gate bridge"
        and "Golden Gate Bridge (0.92)" in result.items[0].snippet
    )
    assert result.items[1].title == "Page 1"  # the <b> markup of pageTitle is gone
    body = json.loads(web.seen("/v1/images:annotate")[0].body)
    assert body["requests"][0]["features"][0]["type"] == "WEB_DETECTION"
    assert base64.b64decode(body["requests"][0]["image"]["content"])[:2] == b"\xff\xd8"  # JPEG bytes


def test_cloud_vision_errors_in_both_of_its_formats(web):
    bad_key = run_sync(
        ReverseImageSearch(CloudVisionWebDetection("nope", base_url=web.base_url, policy=API)).search_image(
            IMAGE, question="q"
        )
    )
    assert "API key not valid" in bad_key.error
    web.script("/v1/images:annotate", Reply(200, {"responses": [{"error": {"code": 3, "message": "Bad image data."}}]}))
    per_image = run_sync(
        ReverseImageSearch(CloudVisionWebDetection(KEY, base_url=web.base_url, policy=API)).search_image(
            IMAGE, question="q"
        )
    )
    assert per_image.error == "cloud_vision: Bad image data."


def test_zero_area_image_is_refused():
    result = run_sync(
        ReverseImageSearch(CloudVisionWebDetection(KEY, base_url="http://127.0.0.1:9")).search_image(
            Image.new("RGB", (0, 0)), question="q"
        )
    )
    assert "zero area" in result.error
