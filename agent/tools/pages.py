"""Fetch result pages and turn them into plain text: concurrent, bounded, SSRF-guarded, markup-free.

`read_pages` implements the paper's pipeline step: read the top results' pages concurrently and, when a
page fails (timeout, too big, not HTML, refused address), fall through to the next result until `want`
pages are read or the results run out. Text extraction is trafilatura (main content, boilerplate
dropped), run in a worker thread so five extractions do not serialise the event loop; its output then
passes `clean_text`, because trafilatura keeps escaped markup such as "&lt;script&gt;" as literal text.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.events import ResultItem
from agent.tools.http import HttpClient, ToolError
from agent.tools.sanitise import clean_text, safe_url

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain",)


@dataclass(frozen=True)
class PageFailure:
    url: str
    reason: str


@dataclass(frozen=True)
class PageReading:
    """The outcome of reading pages for a result list."""

    items: tuple[ResultItem, ...]  # results whose page was read, in rank order, page_text filled
    failures: tuple[PageFailure, ...]  # results tried and given up on, in the order they failed


def html_to_text(html: bytes | str, *, url: str | None = None) -> str:
    """Main text of an HTML page (trafilatura), falling back to all visible text for tiny pages."""
    import trafilatura  # imported lazily: it pulls lxml and justext, which a CLI listing tools never needs

    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, favor_recall=True)
    if not text:
        # Very short pages have no "main content" for trafilatura; html2txt still drops script/style.
        text = trafilatura.html2txt(html)
    return clean_text(text or "", keep_newlines=True)


class PageFetcher:
    """Reads one page as text through a guarded HttpClient (its policy sets timeout, size cap, redirects
    and which addresses are allowed)."""

    def __init__(self, http: HttpClient, *, max_chars: int = 12_000):
        self.http = http
        self.max_chars = max_chars

    def cache_settings(self) -> dict[str, Any]:
        """What decides which pages are read and how much of each: the whole policy (address guard and its
        allowed networks, timeout, size cap, redirects) and the text kept. Part of the text search cache key,
        so a result whose pages the guard refused is not served once private fetching is allowed."""
        return {**dataclasses.asdict(self.http.policy), "max_chars": self.max_chars}

    async def fetch_text(self, url: str) -> str:
        if not safe_url(url):
            raise ToolError(f"refused URL {url[:200]!r}: only plain http(s) links are fetched")
        response = await self.http.request(
            "GET", url, what=f"page {url[:120]}", headers={"Accept": "text/html,application/xhtml+xml,text/plain;q=0.8"}
        )
        if response.status >= 400:
            raise ToolError(f"page {url[:120]}: HTTP {response.status}", status=response.status)
        kind = response.content_type
        if kind in HTML_TYPES or (
            not kind and response.body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))
        ):
            text = await asyncio.to_thread(html_to_text, response.body, url=response.url)
        elif kind in TEXT_TYPES:
            text = clean_text(response.text(), keep_newlines=True)
        else:
            raise ToolError(
                f"page {url[:120]}: not a web page ({kind or 'no content type'}); only HTML and plain text are read"
            )
        if not text.strip():
            raise ToolError(f"page {url[:120]}: no readable text")
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1].rstrip() + "…"
        return text


async def read_pages(fetcher: PageFetcher, candidates: Sequence[ResultItem], *, want: int) -> PageReading:
    """Read up to `want` pages concurrently, replacing each failure with the next candidate.

    Candidates that already carry page text (the local corpus) count as read without a fetch; candidates
    without a URL are skipped. At most `want` fetches are in flight at any time.
    """
    read: dict[int, ResultItem] = {}
    failures: list[PageFailure] = []
    queue = list(enumerate(candidates))
    in_flight: dict[asyncio.Task[str], int] = {}

    def start_more() -> None:
        while queue and len(read) + len(in_flight) < want:
            index, item = queue.pop(0)
            if item.page_text:
                read[index] = item
            elif item.url:
                in_flight[asyncio.ensure_future(fetcher.fetch_text(item.url))] = index

    start_more()
    try:
        while in_flight:
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                index = in_flight.pop(task)
                item = candidates[index]
                try:
                    read[index] = dataclasses.replace(item, page_text=task.result())
                except ToolError as exc:
                    failures.append(PageFailure(item.url, exc.reason))
                except Exception as exc:  # a parser bug on one page must not lose the other four
                    failures.append(PageFailure(item.url, f"{type(exc).__name__}: {exc}"))
            start_more()
    finally:
        for task in in_flight:  # cancelled from outside (user stop): do not leave fetches running
            task.cancel()
    return PageReading(items=tuple(read[i] for i in sorted(read)), failures=tuple(failures))
