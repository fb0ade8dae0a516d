"""Cache in front of a live search tool, and replay tools that answer only from the cache (offline).

The cache key is the normalised request: query (or image sha256) plus the user's question, because the
summary answers that question. Settings that shape a result (result count, summariser) are stored with
the entry: a live tool treats an entry recorded under other settings as a miss, while replay serves
whatever was recorded, so an eval or RL run can be repeated offline with identical tool results without
configuring the original summariser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
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


def _cacheable(result: ToolResult) -> bool:
    return result.ok and not result.cache_hit and not result.summary.startswith(FALLBACK_PREFIX)


def _settings_match(stored_request: str, settings: Mapping[str, Any]) -> bool:
    stored = json.loads(stored_request)
    return all(stored.get(k) == v for k, v in settings.items())


class CachedTextSearch:
    """Serves repeats from the cache in milliseconds with no network; records fresh successes."""

    def __init__(self, inner: TextSearchTool, cache: ToolCache, *, settings: Mapping[str, Any] | None = None):
        self.inner = inner
        self.cache = cache
        self.settings = dict(settings or {})
        self.provider = inner.provider

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        start = time.monotonic()
        request = text_request(query, question)
        entry = self.cache.get("text", request, self.provider)
        if entry is not None and _settings_match(entry.request, self.settings):
            return result_from_json(entry.result, latency_s=time.monotonic() - start)
        result = await self.inner.search_text(query, question=question)
        if _cacheable(result):
            self.cache.put("text", request, result, settings=self.settings)
        return result


class CachedImageSearch:
    def __init__(self, inner: ImageSearchTool, cache: ToolCache, *, settings: Mapping[str, Any] | None = None):
        self.inner = inner
        self.cache = cache
        self.settings = dict(settings or {})
        self.provider = inner.provider

    async def search_image(self, image: Image.Image, *, question: str) -> ToolResult:
        start = time.monotonic()
        request = image_request(image, question)
        entry = self.cache.get("image", request, self.provider)
        if entry is not None and _settings_match(entry.request, self.settings):
            return result_from_json(entry.result, latency_s=time.monotonic() - start)
        result = await self.inner.search_image(image, question=question)
        if _cacheable(result):
            self.cache.put("image", request, result, settings=self.settings)
        return result


class ReplayTextSearch:
    """Answers text searches from the cache only; a request never recorded is an error, not a fetch."""

    provider = "replay"

    def __init__(self, cache: ToolCache):
        self.cache = cache

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        start = time.monotonic()
        entry = self.cache.get("text", text_request(query, question), None)
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
        entry = self.cache.get("image", image_request(image, question), None)
        if entry is None:
            return ToolResult(
                provider=self.provider,
                error=f"replay: no recorded image search for this image ({image.width}x{image.height}) and question in {self.cache.path}",
                latency_s=time.monotonic() - start,
            )
        return result_from_json(entry.result, latency_s=time.monotonic() - start)
