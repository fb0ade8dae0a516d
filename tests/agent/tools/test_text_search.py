"""Every text provider against its real JSON format on 127.0.0.1, through the whole pipeline."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agent.aio import run_sync
from agent.models.base import Delta
from agent.tools.brave import BraveSearch
from agent.tools.http import HttpClient, HttpPolicy
from agent.tools.pages import PageFetcher
from agent.tools.searxng import SearxngSearch
from agent.tools.serpapi import SerpApiSearch
from agent.tools.serper import SerperSearch
from agent.tools.summarise import ModelSummariser, OpenAIChatSummariser
from agent.tools.text_search import WebTextSearch
from tests.agent.tools.conftest import LOOPBACK
from tests.servers.search_providers import KEY, Reply

API = HttpPolicy(timeout_s=2.0, retries=1, backoff_s=0.05, max_retry_wait_s=2.0)
PAGES = HttpPolicy(timeout_s=2.0, retries=0, guard_addresses=True, allowed_networks=LOOPBACK)

PROVIDERS = {
    "serpapi": (lambda web, key: SerpApiSearch(key, base_url=web.base_url, policy=API), "/search.json"),
    "serper": (lambda web, key: SerperSearch(key, base_url=web.base_url, policy=API), "/search"),
    "brave": (lambda web, key: BraveSearch(key, base_url=web.base_url, policy=API), "/res/v1/web/search"),
    "searxng": (lambda web, key: SearxngSearch(web.base_url, policy=API), "/search"),
}


def tool(provider, *, fetch=True, summariser=None) -> WebTextSearch:
    fetcher = PageFetcher(HttpClient("pages", PAGES)) if fetch else None
    return WebTextSearch(provider, fetcher=fetcher, summariser=summariser)


@pytest.mark.parametrize("name", PROVIDERS)
def test_provider_results_pages_and_summary(web, name):
    make, _ = PROVIDERS[name]
    result = run_sync(tool(make(web, KEY)).search_text("page facts", question="Which page?"))
    assert result.ok, result.error
    assert result.provider == name
    assert [i.title for i in result.items] == [f"Page {n}" for n in range(1, 6)]
    assert all("fact number" in i.page_text for i in result.items)
    assert result.items[0].url == web.url("/pages/p1")
    assert "Snippet of page 1." in result.summary
    assert "<" not in result.items[0].snippet  # Brave's <strong> markup is gone


@pytest.mark.parametrize("name", ["serpapi", "serper", "brave"])
def test_bad_key_gives_the_providers_own_error(web, name):
    make, _ = PROVIDERS[name]
    result = run_sync(tool(make(web, "wrong")).search_text("q", question="q"))
    expected = {"serpapi": "Invalid API key", "serper": "Unauthorized", "brave": "subscription token is invalid"}[name]
    assert (
        not result.ok
        and result.error.startswith(name)
        and expected in result.error
        and "check the API key" in result.error
    )


@pytest.mark.parametrize("name", ["serpapi", "serper", "brave"])
def test_missing_key_is_reported_with_the_variable(web, name):
    make, _ = PROVIDERS[name]
    result = run_sync(tool(make(web, "")).search_text("q", question="q"))
    assert f"{name.upper()}_API_KEY is not set" in result.error and not web.requests


@pytest.mark.parametrize("name", PROVIDERS)
def test_invalid_json_is_an_error_result(web, name):
    make, route = PROVIDERS[name]
    web.script(route, Reply(200, b"{not json", content_type="application/json"))
    result = run_sync(tool(make(web, KEY)).search_text("q", question="q"))
    assert "not valid JSON" in result.error


@pytest.mark.parametrize("name", PROVIDERS)
def test_429_then_success_and_persistent_500(web, name):
    make, route = PROVIDERS[name]
    web.script(route, Reply(429, {"error": "rate"}, headers=(("Retry-After", "0"),)))
    assert run_sync(tool(make(web, KEY), fetch=False).search_text("q", question="q")).ok
    web.script(route, Reply(500, {"error": "Internal"}), Reply(502, b"bad gateway", content_type="text/plain"))
    result = run_sync(tool(make(web, KEY), fetch=False).search_text("q", question="q"))
    assert "server error (HTTP 502)" in result.error and "after 2 attempts" in result.error


def test_provider_timeout_is_bounded(web):
    web.script("/search", Reply(200, {}, delay_s=3.0))
    provider = SearxngSearch(web.base_url, policy=HttpPolicy(timeout_s=0.4, retries=0))
    result = run_sync(tool(provider).search_text("q", question="q"))
    assert "timed out" in result.error and result.latency_s < 1.5


def test_searxng_without_json_format_says_how_to_enable_it(web):
    web.script("/search", Reply(403, b"Forbidden", content_type="text/html"))
    result = run_sync(tool(SearxngSearch(web.base_url, policy=API)).search_text("q", question="q"))
    assert "search.formats" in result.error


def test_serpapi_no_results_is_an_empty_answer_not_a_failure(web):
    web.hits = []
    result = run_sync(tool(SerpApiSearch(KEY, base_url=web.base_url, policy=API)).search_text("zzz", question="q"))
    assert result.ok and result.items == () and "No results" in result.summary


def test_empty_query_is_refused_without_a_request(web):
    result = run_sync(tool(SearxngSearch(web.base_url, policy=API)).search_text("   ", question="q"))
    assert "empty search query" in result.error and not web.requests


def test_private_result_pages_are_skipped_and_reported(web):
    web.hits[1] = type(web.hits[1])("Metadata", "http://169.254.169.254/latest/meta-data/")
    result = run_sync(tool(SearxngSearch(web.base_url, policy=API)).search_text("q", question="q"))
    assert result.ok and "Metadata" not in [i.title for i in result.items]
    assert "link-local address 169.254.169.254" in result.summary


def test_openai_compatible_summariser_gets_the_pages(web):
    summariser = OpenAIChatSummariser(web.url("/v1"), "qwen-summary")
    result = run_sync(
        tool(SearxngSearch(web.base_url, policy=API), summariser=summariser).search_text(
            "page facts", question="Which page?"
        )
    )
    assert result.summary.startswith("Summary: [1] Page 1")
    request = web.seen("/v1/chat/completions")[0]
    assert (
        b"Page 1 fact number 0" in request.body
        and b"about 10-12 sentences" in request.body
        and b"Which page?" in request.body
    )


def test_a_failing_summariser_falls_back_to_snippets(web):
    web.script(
        "/v1/chat/completions",
        Reply(500, {"error": {"message": "model overloaded"}}),
        Reply(500, {"error": {"message": "model overloaded"}}),
    )
    summariser = OpenAIChatSummariser(web.url("/v1"), "m", policy=HttpPolicy(timeout_s=2.0, retries=1, backoff_s=0.01))
    result = run_sync(
        tool(SearxngSearch(web.base_url, policy=API), summariser=summariser).search_text("q", question="q")
    )
    assert result.ok and "Summariser unavailable" in result.summary and "model overloaded" in result.summary
    assert "1. Page 1" in result.summary


class ScriptedBackend:
    """A ModelBackend that streams a fixed summary and records the prompt (not a model test)."""

    backend, model, endpoint = "transformers", "scripted", "local"

    def __init__(self) -> None:
        self.seen = []

    def stream(self, messages, *, max_new_tokens, stop, cancel: threading.Event | None = None) -> Iterator[Delta]:
        self.seen.append(messages)
        yield Delta("The pages say <b>Page 1</b> ", 3)
        yield Delta("is first.", 2)


def test_the_agents_own_model_can_summarise(web):
    backend = ScriptedBackend()
    result = run_sync(
        tool(SearxngSearch(web.base_url, policy=API), summariser=ModelSummariser(backend)).search_text(
            "q", question="Which?"
        )
    )
    assert result.summary == "The pages say Page 1 is first."
    assert "Which?" in backend.seen[0][-1]["content"]
