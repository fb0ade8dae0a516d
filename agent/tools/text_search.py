"""The `<text_search>` tool: provider hits → top pages read concurrently (with fall-through) → summary.

This is the paper's pipeline. Providers (serpapi.py, serper.py, brave.py, searxng.py, local_corpus.py)
only turn a query into ranked `ResultItem`s; everything after that is shared here. The tool never
raises: a provider failure becomes a ToolResult with `error` naming the provider and the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

from agent.events import ResultItem, ToolResult
from agent.tools.http import ToolError
from agent.tools.pages import PageFetcher, PageReading, read_pages
from agent.tools.summarise import NoSummariser, Summariser, summarise_or_digest, summariser_settings


class SearchProvider(Protocol):
    name: str
    endpoint: str  # where hits come from (API base URL, corpus file): part of the cache key

    async def search(self, query: str, *, count: int) -> list[ResultItem]:
        """Ranked, sanitised hits (at most `count`); raises ToolError with a one-line reason."""
        ...


class WebTextSearch:
    """TextSearchTool over any SearchProvider.

    `top_k` pages are read (the paper uses 5); `candidates` hits are requested so failed pages can be
    replaced by the next result. With `fetcher=None` no page is fetched and snippets are summarised.
    """

    def __init__(
        self,
        provider: SearchProvider,
        *,
        fetcher: PageFetcher | None,
        summariser: Summariser | None = None,
        top_k: int = 5,
        candidates: int = 10,
    ):
        if top_k < 1 or candidates < top_k:
            raise ValueError("need 1 <= top_k <= candidates")
        self.source = provider
        self.provider = provider.name
        self.fetcher = fetcher
        self.summariser = summariser or NoSummariser()
        self.top_k = top_k
        self.candidates = candidates

    def cache_settings(self) -> dict[str, Any]:
        """Everything besides the request that changes a result (agent/tools/replay.py keys the cache on it):
        the provider and its endpoint, how many hits and pages, which pages may be read, and the summariser."""
        return {
            "provider": self.provider,
            "endpoint": self.source.endpoint,
            "top_k": self.top_k,
            "candidates": self.candidates,
            "pages": self.fetcher.cache_settings() if self.fetcher is not None else None,
            "summariser": summariser_settings(self.summariser),
        }

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        start = time.monotonic()
        query = query.strip()
        if not query:
            return ToolResult(
                provider=self.provider, error="empty search query: write the words to search for inside the tag"
            )
        try:
            hits = await self.source.search(query, count=self.candidates)
        except ToolError as exc:
            return ToolResult(provider=self.provider, error=exc.reason, latency_s=time.monotonic() - start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a parsing bug on an odd response must reach the model as a failure
            return ToolResult(
                provider=self.provider,
                error=f"{self.provider}: unexpected {type(exc).__name__}: {exc}",
                latency_s=time.monotonic() - start,
            )
        if not hits:
            return ToolResult(
                provider=self.provider, summary=f"No results for {query!r}.", latency_s=time.monotonic() - start
            )
        items, note = await self._read(hits)
        summary = await summarise_or_digest(self.summariser, question=question, query=query, items=items, kind="text")
        if note:
            summary = f"{summary}\n({note})" if summary else f"({note})"
        return ToolResult(provider=self.provider, items=items, summary=summary, latency_s=time.monotonic() - start)

    async def _read(self, hits: Sequence[ResultItem]) -> tuple[tuple[ResultItem, ...], str]:
        if self.fetcher is None:
            return tuple(hits[: self.top_k]), ""
        reading: PageReading = await read_pages(self.fetcher, hits, want=self.top_k)
        items = list(reading.items)
        if len(items) < self.top_k:
            # Fewer pages readable than wanted: keep the unread hits' snippets rather than nothing.
            read_urls = {i.url for i in items}
            items += [h for h in hits if h.url not in read_urls][: self.top_k - len(items)]
        note = ""
        if reading.failures:
            reasons = list(dict.fromkeys(f.reason for f in reading.failures))  # ten refusals read as one
            note = f"{len(reading.failures)} page(s) could not be read: " + "; ".join(reasons[:3])
        return tuple(items), note
