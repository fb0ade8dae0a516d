"""Page reading: hostile markup stripped, non-HTML refused, failures replaced by the next result, concurrency."""

from __future__ import annotations

import time

from agent.aio import run_sync
from agent.events import ResultItem
from agent.tools.http import HttpClient, HttpPolicy
from agent.tools.pages import PageFetcher, read_pages
from agent.tools.sanitise import clean_text, result_item, safe_url
from tests.agent.tools.conftest import LOOPBACK
from tests.servers.search_providers import Page

POLICY = HttpPolicy(timeout_s=2.0, retries=0, guard_addresses=True, allowed_networks=LOOPBACK, max_bytes=3_000_000)
HOSTILE_MARKERS = (
    "<",
    ">",
    "alert",
    "script",
    "onload",
    "onclick",
    "onerror",
    "document.cookie",
    "javascript:",
    "evil.example",
    "color: red",
)


def fetcher() -> PageFetcher:
    return PageFetcher(HttpClient("pages", POLICY))


def test_hostile_html_reaches_us_as_plain_text_only(web):
    text = run_sync(fetcher().fetch_text(web.url("/pages/hostile")))
    assert "suspension bridge spanning the Golden Gate strait" in text
    for marker in HOSTILE_MARKERS:
        assert marker not in text, marker


def test_non_html_content_is_refused_with_its_type(web):
    try:
        run_sync(fetcher().fetch_text(web.url("/pages/pdf")))
    except Exception as exc:
        assert "not a web page (application/pdf)" in str(exc)
    else:
        raise AssertionError("a PDF was read as a page")


def test_failed_pages_are_replaced_by_the_next_results(web):
    web.pages["p2"] = Page(b"%PDF", content_type="application/pdf")
    web.pages["p4"] = Page(b"gone", status=404)
    hits = [ResultItem(title=h.title, url=h.url) for h in web.hits]
    reading = run_sync(read_pages(fetcher(), hits, want=5))
    assert [i.title for i in reading.items] == ["Page 1", "Page 3", "Page 5", "Page 6", "Page 7"]
    assert all(i.page_text for i in reading.items)
    assert len(reading.failures) == 2 and "HTTP 404" in reading.failures[1].reason + reading.failures[0].reason


def test_five_pages_are_fetched_concurrently(web):
    for i in range(1, 6):
        web.pages[f"p{i}"] = Page(web.pages[f"p{i}"].body, delay_s=0.4)
    hits = [ResultItem(title=h.title, url=h.url) for h in web.hits[:5]]
    f = fetcher()
    run_sync(read_pages(f, hits[:1], want=1))  # warm up imports (trafilatura) outside the timing
    start = time.monotonic()
    reading = run_sync(read_pages(f, hits, want=5))
    assert len(reading.items) == 5
    assert time.monotonic() - start < 1.2  # sequential would be >= 2.0 s


def test_results_with_text_are_not_fetched(web):
    local = ResultItem(title="Doc", page_text="already here")
    reading = run_sync(read_pages(fetcher(), [local], want=5))
    assert reading.items == (local,) and not web.requests


def test_clean_text_removes_markup_and_decoded_markup():
    dirty = '<b onmouseover="x()">Bold</b> &lt;script&gt;alert(1)&lt;/script&gt; <style>p{}</style>tail\x00\x07'
    assert clean_text(dirty) == "Bold tail"


def test_clean_text_drops_format_and_private_characters_but_keeps_printable_unicode():
    assert clean_text("a\u200bb\u202ec\ue000d", keep_newlines=True) == "abcd"  # zero-width, bidi override, private use
    assert clean_text("Zürich — 東京\nline 2", keep_newlines=True) == "Zürich — 東京\nline 2"


def test_safe_url_keeps_only_plain_web_links():
    assert safe_url("https://example.org/a?b=1") == "https://example.org/a?b=1"
    for bad in (
        "javascript:alert(1)",
        "data:text/html,<script>",
        "file:///etc/passwd",
        "http://user:pw@host/",
        "https://exa mple.org",
        "/relative",
        42,
    ):
        assert safe_url(bad) == ""


def test_result_item_sanitises_every_field():
    item = result_item(
        title="<i>T</i>", url="javascript:x", snippet="<script>bad()</script>ok", thumbnail="data:image/png;base64,xx"
    )
    assert (item.title, item.url, item.snippet, item.thumbnail_url) == ("T", "", "ok", "")
