"""`python -m agent search …` through agent.search_cli.main, against the fake web and a local corpus."""

from __future__ import annotations

import io
import json

from PIL import Image

from agent.search_cli import main
from tests.servers.search_providers import KEY


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


def test_text_search_with_searxng_prints_results_summary_and_timing(web, tmp_path):
    argv = [
        "text",
        "page facts",
        "--provider",
        "searxng",
        "--searxng-base-url",
        web.base_url,
        "--allow-fetch-network",
        "127.0.0.0/8",
        "--tool-cache",
        str(tmp_path / "c.db"),
        "--grounding-model",
        "off",
    ]
    code, text = run(argv)
    assert (
        code == 0
        and "provider: searxng  [ok, live," in text
        and "1. Page 1" in text
        and "summary:" in text
        and "[page text:" in text
    )
    code, text = run(argv + ["--json"])
    data = json.loads(text)
    assert code == 0 and data["result"]["cache_hit"] is True and data["result"]["items"][0]["title"] == "Page 1"


def test_text_search_with_the_local_corpus(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"title": "Eiffel Tower", "text": "Completed in 1889 in Paris."}) + "\n")
    code, text = run(["build-corpus", str(docs), str(tmp_path / "corpus.db")])
    assert code == 0 and "1 documents indexed" in text
    code, text = run(
        ["text", "eiffel", "--provider", "local", "--corpus", str(tmp_path / "corpus.db"), "--tool-cache", "", "--json"]
    )
    assert code == 0 and json.loads(text)["result"]["items"][0]["title"] == "Eiffel Tower"


def test_a_provider_without_its_key_exits_1_with_the_reason(monkeypatch):
    monkeypatch.delenv("SERPAPI_API_KEY", raising=False)
    code, text = run(["text", "x", "--provider", "serpapi", "--tool-cache", ""])
    assert code == 1 and "SERPAPI_API_KEY is not set" in text


def test_image_search_of_a_grounded_region(web, tmp_path, monkeypatch, tiny_grounding_dir):
    monkeypatch.setenv("CLOUD_VISION_API_KEY", KEY)
    path = tmp_path / "img.png"
    Image.new("RGB", (200, 150), (0, 90, 200)).save(path)
    argv = [
        "image",
        str(path),
        "--region",
        "the bridge",
        "--provider",
        "cloud_vision",
        "--cloud-vision-base-url",
        web.base_url,
        "--grounding-model",
        str(tiny_grounding_dir),
        "--box-threshold",
        "0",
        "--text-threshold",
        "0",
        "--tool-cache",
        "",
        "--save-crop",
        str(tmp_path / "crop.png"),
        "--json",
    ]
    code, text = run(argv)
    data = json.loads(text)
    assert code == 0 and data["result"]["provider"] == "cloud_vision" and data["result"]["grounding_fallback"] is False
    x0, y0, x1, y1 = data["result"]["crop_box"]
    assert Image.open(tmp_path / "crop.png").size == (x1 - x0, y1 - y0)


def test_bad_usage_and_unreadable_images_exit_2(tmp_path):
    assert run(["image", str(tmp_path / "missing.png")])[0] == 2
    assert run(["nonsense"])[0] == 2
