"""The SQLite tool cache: millisecond repeats with no network, and byte-identical offline replay."""

from __future__ import annotations

import sqlite3
import time

import pytest
from PIL import Image

from agent.aio import run_sync
from agent.events import ToolResult
from agent.tools.cache import ToolCache, normalise_query, request_key, result_to_json, settings_key
from agent.tools.config import ToolConfig
from agent.tools.replay import CachedTextSearch, ReplayImageSearch, ReplayTextSearch, text_request
from agent.tools.wiring import build_toolbox
from tests.agent.tools.conftest import LOOPBACK
from tests.servers.search_providers import KEY, fake_web


def config(web, cache_path, **kw) -> ToolConfig:
    base = dict(
        text_search="searxng",
        searxng_base_url=web.base_url,
        allow_fetch_networks=LOOPBACK,
        cache_path=str(cache_path),
        grounding_model="off",
    )
    return ToolConfig(**{**base, **kw})


def test_repeat_is_served_from_cache_in_milliseconds_with_no_request(web, tmp_path):
    tool = build_toolbox(config(web, tmp_path / "c.db"), environ={}).text_search
    first = run_sync(tool.search_text("Page facts", question="Which page?"))
    sent = len(web.requests)
    start = time.perf_counter()
    again = run_sync(tool.search_text("  page   FACTS ", question="which page?"))
    elapsed = time.perf_counter() - start
    assert again.cache_hit and not first.cache_hit and len(web.requests) == sent
    assert elapsed < 0.05  # the bench measures the ≤ 5 ms target without test overhead
    assert result_to_json(again) == result_to_json(first)


def test_replay_is_byte_identical_with_the_network_gone(tmp_path):
    with fake_web() as web:
        tools = build_toolbox(
            config(web, tmp_path / "c.db", image_search="cloud_vision", cloud_vision_base_url=web.base_url),
            environ={"CLOUD_VISION_API_KEY": KEY},
        )
        live_text = run_sync(tools.text_search.search_text("page facts", question="Which page?"))
        image = Image.new("RGB", (32, 32), (1, 2, 3))
        live_image = run_sync(tools.image_search.search_image(image, question="What?"))
    stored = ToolCache(tmp_path / "c.db")
    rows = stored._db.execute("SELECT kind, result FROM tool_cache ORDER BY kind").fetchall()
    # The server is shut down: replay must answer from the cache alone.
    offline = build_toolbox(
        ToolConfig(
            text_search="replay", image_search="replay", cache_path=str(tmp_path / "c.db"), grounding_model="off"
        ),
        environ={},
    )
    replayed_text = run_sync(offline.text_search.search_text("Page Facts", question="which page?"))
    replayed_image = run_sync(offline.image_search.search_image(image.copy(), question="What?"))
    assert replayed_text.cache_hit and replayed_image.cache_hit
    assert (
        result_to_json(replayed_image).encode() == dict(rows)["image"].encode() == result_to_json(live_image).encode()
    )
    assert result_to_json(replayed_text).encode() == dict(rows)["text"].encode() == result_to_json(live_text).encode()
    assert replayed_text.items == live_text.items and replayed_text.summary == live_text.summary


def test_replay_of_an_unrecorded_request_is_an_error_not_a_fetch(tmp_path):
    cache = ToolCache(tmp_path / "c.db")
    assert "no recorded text search" in run_sync(ReplayTextSearch(cache).search_text("never", question="q")).error
    assert (
        "no recorded image search"
        in run_sync(ReplayImageSearch(cache).search_image(Image.new("RGB", (4, 4)), question="q")).error
    )


class Counting:
    provider = "counting"

    def __init__(self, result: ToolResult):
        self.result, self.calls = result, 0

    async def search_text(self, query, *, question):
        self.calls += 1
        return self.result


def test_errors_are_not_cached_and_other_settings_miss():
    cache = ToolCache(":memory:")
    failing = Counting(ToolResult(provider="counting", error="boom"))
    tool = CachedTextSearch(failing, cache, settings={})
    run_sync(tool.search_text("q", question="q"))
    run_sync(tool.search_text("q", question="q"))
    assert failing.calls == 2 and cache.count() == 0
    ok = Counting(ToolResult(provider="counting", summary="s"))
    run_sync(CachedTextSearch(ok, cache, settings={"top_k": 5}).search_text("q", question="q"))
    run_sync(CachedTextSearch(ok, cache, settings={"top_k": 3}).search_text("q", question="q"))
    assert ok.calls == 2  # recorded with top_k=5, asked with top_k=3: a miss


def test_summariser_fallbacks_are_not_cached():
    cache = ToolCache(":memory:")
    fallback = Counting(
        ToolResult(provider="counting", summary="(Summariser unavailable: down. Result snippets follow.)\n1. x")
    )
    tool = CachedTextSearch(fallback, cache, settings={})
    run_sync(tool.search_text("q", question="q"))
    assert cache.count() == 0


def test_query_normalisation():
    assert normalise_query("  Eiffel\tTOWER  ") == normalise_query("eiffel tower") == "eiffel tower"
    assert normalise_query("ｅｉｆｆｅｌ") == "eiffel"  # NFKC folds full-width forms


# --- the cache never answers for another request (issue 10 item 8) ---------------------------------------


def test_two_endpoints_make_two_entries_and_replay_serves_the_newest(tmp_path):
    path = tmp_path / "c.db"
    with fake_web() as first, fake_web() as second:
        one = build_toolbox(config(first, path), environ={}).text_search
        two = build_toolbox(config(second, path), environ={}).text_search
        run_sync(one.search_text("page facts", question="Which page?"))
        from_second = run_sync(two.search_text("page facts", question="Which page?"))
        assert not from_second.cache_hit and second.seen("/search")  # asked its own endpoint
        assert ToolCache(path).count() == 2
        sent = len(first.requests) + len(second.requests)
        assert run_sync(one.search_text("page facts", question="Which page?")).cache_hit
        assert run_sync(two.search_text("page facts", question="Which page?")).cache_hit
        assert len(first.requests) + len(second.requests) == sent
    replay = build_toolbox(ToolConfig(text_search="replay", cache_path=str(path), grounding_model="off"), environ={})
    replayed = run_sync(replay.text_search.search_text("page facts", question="which page?"))
    assert result_to_json(replayed) == result_to_json(from_second)


def test_a_result_made_under_one_fetch_policy_never_answers_another(web, tmp_path):
    path = tmp_path / "c.db"
    allowed = build_toolbox(config(web, path), environ={}).text_search
    private = build_toolbox(config(web, path, allow_private_fetch=True), environ={}).text_search
    assert not run_sync(allowed.search_text("page facts", question="q")).cache_hit
    pages = len(web.seen("/pages/"))
    assert not run_sync(private.search_text("page facts", question="q")).cache_hit
    assert len(web.seen("/pages/")) > pages and ToolCache(path).count() == 2


def test_pages_all_refused_are_not_cached_so_allowing_private_fetch_reads_them(web, tmp_path):
    path = tmp_path / "c.db"
    strict = build_toolbox(config(web, path, allow_fetch_networks=()), environ={}).text_search
    refused = run_sync(strict.search_text("page facts", question="q"))
    assert refused.ok and refused.items and not any(i.page_text for i in refused.items)
    assert "could not be read" in refused.summary and "loopback address" in refused.summary
    assert ToolCache(path).count() == 0  # the snippets-only fallback is not worth keeping
    assert not run_sync(strict.search_text("page facts", question="q")).cache_hit
    private = build_toolbox(config(web, path, allow_private_fetch=True), environ={}).text_search
    read = run_sync(private.search_text("page facts", question="q"))
    assert not read.cache_hit and all(i.page_text for i in read.items) and ToolCache(path).count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"searxng_base_url": "http://127.0.0.1:9/other"},
        {"top_k": 3},
        {"candidates": 8},
        {"fetch_pages": False},
        {"allow_private_fetch": True},
        {"allow_fetch_networks": ("10.0.0.0/8",)},
        {"page_max_chars": 500},
        {"page_timeout_s": 2.0},
        {"page_max_bytes": 1000},
        {"summariser": "openai", "summariser_base_url": "http://s/v1", "summariser_model": "a"},
    ],
)
def test_everything_that_changes_a_text_result_changes_its_cache_settings(tmp_path, change):
    base = dict(text_search="searxng", searxng_base_url="http://127.0.0.1:9", cache_path="", grounding_model="off")
    before = build_toolbox(ToolConfig(**base), environ={}).text_search.cache_settings()
    after = build_toolbox(ToolConfig(**{**base, **change}), environ={}).text_search.cache_settings()
    assert settings_key(before) != settings_key(after)


def test_the_summariser_model_and_endpoint_are_part_of_the_key():
    base = dict(
        text_search="searxng",
        searxng_base_url="http://127.0.0.1:9",
        summariser="openai",
        summariser_base_url="http://a/v1",
        summariser_model="m1",
        cache_path="",
        grounding_model="off",
    )
    keys = {
        settings_key(build_toolbox(ToolConfig(**{**base, **change}), environ={}).text_search.cache_settings())
        for change in ({}, {"summariser_model": "m2"}, {"summariser_base_url": "http://b/v1"})
    }
    assert len(keys) == 3


def test_a_cache_file_from_before_settings_were_keyed_still_replays_but_never_answers_live(tmp_path):
    path = tmp_path / "old.db"
    request = text_request("page facts", "q")
    stored = result_to_json(ToolResult(provider="searxng", summary="recorded long ago"))
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE tool_cache (key TEXT NOT NULL, provider TEXT NOT NULL, kind TEXT NOT NULL, request TEXT NOT NULL,"
        " result TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (key, provider));"
        "CREATE INDEX tool_cache_by_key ON tool_cache (key, created_at);"
    )
    db.execute(
        "INSERT INTO tool_cache VALUES (?, 'searxng', 'text', '{}', ?, 1.0)", (request_key("text", request), stored)
    )
    db.commit()
    db.close()
    cache = ToolCache(path)
    assert (
        cache.count() == 1
        and result_to_json(run_sync(ReplayTextSearch(cache).search_text("Page facts", question="q"))) == stored
    )
    live = Counting(ToolResult(provider="searxng", summary="fresh"))
    assert (
        run_sync(
            CachedTextSearch(live, cache, settings={"provider": "searxng"}).search_text("page facts", question="q")
        ).summary
        == "fresh"
    )
    assert live.calls == 1 and ToolCache(path).count() == 2  # reopening does not migrate twice
