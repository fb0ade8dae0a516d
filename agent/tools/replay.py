"""Cache in front of a live search tool, and replay tools that answer only from the cache (offline).

A live tool is answered from the cache only by an entry for the same request (normalised query or image
sha256, plus the user's question, because the summary answers it) made under the same settings: the tool's
`cache_settings()` (provider, endpoint, counts, page fetch policy, summariser and its model). Replay keys on
the request alone and serves whatever was recorded, newest first, so an eval or RL run can be repeated
offline with identical tool results without configuring the original provider or summariser.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from PIL import Image

from agent.events import ToolResult, image_sha256
from agent.tools.base import ImageSearchTool, TextSearchTool
from agent.tools.cache import ToolCache, normalise_query, result_from_json
from agent.tools.summarise import FALLBACK_PREFIX


def text_request(query: str, question: str) -> dict[str, str]:
    return {"query": normalise_query(query), "question": normalise_query(question)}


def image_request(image: Image.Image, question: str) -> dict[str, str]:
    return {"image_sha256": image_sha256(image), "question": normalise_query(question)}


def cacheable(result: ToolResult, settings: Mapping[str, Any]) -> bool:
    """Whether a fresh result may answer the next identical request. Not errors, not a summariser's snippet
    fallback, and not a result whose pages were to be read but none was (all refused, timed out or too big):
    those say more about the moment than about the request, so the next call tries again."""
    if not result.ok or result.cache_hit or result.summary.startswith(FALLBACK_PREFIX):
        return False
    reads_pages = settings.get("pages") is not None
    return not (reads_pages and result.items and not any(item.page_text for item in result.items))


async def _through_cache(
    cache: ToolCache,
    kind: str,
    request: Mapping[str, Any],
    settings: Mapping[str, Any],
    search: Callable[[], Awaitable[ToolResult]],
) -> ToolResult:
    start = time.monotonic()
    entry = cache.get(kind, request, settings)
    if entry is not None:
        return result_from_json(entry.result, latency_s=time.monotonic() - start)
    result = await search()
    if cacheable(result, settings):
        cache.put(kind, request, settings, result)
    return result


class CachedTextSearch:
    """Serves repeats from the cache in milliseconds with no network; records fresh successes.

    `settings` is what the inner tool's results depend on besides the request (WebTextSearch.cache_settings).
    """

    def __init__(self, inner: TextSearchTool, cache: ToolCache, *, settings: Mapping[str, Any]):
        self.inner = inner
        self.cache = cache
        self.settings = dict(settings)
        self.provider = inner.provider

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        request = text_request(query, question)
        return await _through_cache(
            self.cache, "text", request, self.settings, lambda: self.inner.search_text(query, question=question)
        )


class CachedImageSearch:
    """The same for reverse image search (ReverseImageSearch.cache_settings)."""

    def __init__(self, inner: ImageSearchTool, cache: ToolCache, *, settings: Mapping[str, Any]):
        self.inner = inner
        self.cache = cache
        self.settings = dict(settings)
        self.provider = inner.provider

    async def search_image(self, image: Image.Image, *, question: str) -> ToolResult:
        request = image_request(image, question)
        return await _through_cache(
            self.cache, "image", request, self.settings, lambda: self.inner.search_image(image, question=question)
        )


class ReplayTextSearch:
    """Answers text searches from the cache only; a request never recorded is an error, not a fetch."""

    provider = "replay"

    def __init__(self, cache: ToolCache):
        self.cache = cache

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        start = time.monotonic()
        entry = self.cache.latest("text", text_request(query, question))
        if entry is None:
            return ToolResult(
                provider=self.provider,
                error=f"replay: no recorded text search for {query!r} with this question in {self.cache.path}; record it first with a live provider",
                latency_s=time.monotonic() - start,
            )
        return result_from_json(entry.result, latency_s=time.monotonic() - start)


class ReplayImageSearch:
    provider = "replay"

    def __init__(self, cache: ToolCache):
        self.cache = cache

    async def search_image(self, image: Image.Image, *, question: str) -> ToolResult:
        start = time.monotonic()
        entry = self.cache.latest("image", image_request(image, question))
        if entry is None:
            return ToolResult(
                provider=self.provider,
                error=f"replay: no recorded image search for this image ({image.width}x{image.height}) and question in {self.cache.path}",
                latency_s=time.monotonic() - start,
            )
        return result_from_json(entry.result, latency_s=time.monotonic() - start)
