"""python app.py's start-up: what exists at start-up is frozen for the garbage collector before the server
takes its first request, and a setting that unlocks a public app is warned about."""

import gc
import logging

import uvicorn

import app


def test_startup_objects_are_frozen_before_the_server_starts(tmp_path, monkeypatch, caplog):
    served = {}

    def run(server, **kwargs):  # stands in for uvicorn.run: the moment the server would start accepting
        served["frozen"] = gc.get_freeze_count()
        served["host"] = kwargs["host"]

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.chdir(tmp_path)
    gc.unfreeze()
    argv = ["--db", str(tmp_path / "t.db"), "--examples", "", "--backend", "openai", "--tool-cache", ""]
    try:
        with caplog.at_level(logging.WARNING, logger="app"):
            assert app.main([*argv, "--host", "0.0.0.0", "--unlock-settings"]) == 0
    finally:
        gc.unfreeze()
    assert served["frozen"] > 10_000 and served["host"] == "0.0.0.0"  # Gradio, the app and the toolbox
    assert "--unlock-settings" in caplog.text


def test_startup_says_which_search_tools_are_off_and_what_turns_each_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(uvicorn, "run", lambda server, **kwargs: None)
    monkeypatch.chdir(tmp_path)
    for var in ("SERPAPI_API_KEY", "SERPER_API_KEY", "BRAVE_API_KEY", "SEARXNG_BASE_URL", "CLOUD_VISION_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    argv = ["--db", str(tmp_path / "t.db"), "--examples", "", "--backend", "openai", "--tool-cache", ""]
    try:
        with caplog.at_level(logging.WARNING, logger="app"):
            assert app.main(argv) == 0
    finally:
        gc.unfreeze()
    assert "Both search tools are off" in caplog.text
    assert "Text search is off: no text search provider is configured: set SERPAPI_API_KEY" in caplog.text
    assert (
        "Image search is off: no reverse image search provider is configured: set CLOUD_VISION_API_KEY" in caplog.text
    )
