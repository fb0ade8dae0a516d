"""SerpAPI: Google web search (`engine=google`) and Google Lens reverse image search (`engine=google_lens`).

Docs: https://serpapi.com/search-api and https://serpapi.com/google-lens-api. Both answer JSON; failures
come as `{"error": "..."}` (with HTTP 401 for a bad key, 429 when out of searches) and an empty search as
HTTP 200 with an `error` saying Google returned no results, which we treat as zero hits, not a failure.
Lens takes an image *URL*, so crops are first published under a public base URL (image_search.py).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from agent.events import ResultItem
from agent.tools.http import HttpClient, HttpPolicy, ToolError, request_json
from agent.tools.image_search import ImagePublisher
from agent.tools.sanitise import result_item

DEFAULT_BASE_URL = "https://serpapi.com"


def _check(data: Any, what: str) -> dict[str, Any] | None:
    """The response dict, None for "no results", or ToolError for SerpAPI's own error."""
    if not isinstance(data, dict):
        raise ToolError(f"{what}: unexpected response (not a JSON object)")
    error = data.get("error")
    if isinstance(error, str) and error:
        if "returned any results" in error:  # "Google hasn't returned any results for this query."
            return None
        raise ToolError(f"{what}: {error[:300]}")
    return data


class SerpApiSearch:
    """Google web results through SerpAPI."""

    name = "serpapi"

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_BASE_URL, policy: HttpPolicy = HttpPolicy()):
        self._api_key = api_key
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.http = HttpClient("serpapi", policy)

    async def search(self, query: str, *, count: int) -> list[ResultItem]:
        if not self._api_key:
            raise ToolError("SERPAPI_API_KEY is not set: set it to use SerpAPI")
        params = {"engine": "google", "q": query, "num": count, "api_key": self._api_key, "output": "json"}
        data = _check(
            await request_json(self.http, "GET", f"{self.base_url}/search.json", params=params, what="serpapi"),
            "serpapi",
        )
        if data is None:
            return []
        hits = [
            result_item(
                title=r.get("title"),
                url=r.get("link"),
                snippet=r.get("snippet"),
                thumbnail=r.get("thumbnail"),
                source=r.get("source"),
            )
            for r in data.get("organic_results") or []
            if isinstance(r, dict)
        ]
        return [h for h in hits if h.url][:count]


class SerpApiLens:
    """Google Lens visual matches through SerpAPI; the image must be reachable at a public URL."""

    name = "serpapi"

    def __init__(
        self,
        api_key: str,
        publisher: ImagePublisher,
        *,
        base_url: str = DEFAULT_BASE_URL,
        policy: HttpPolicy = HttpPolicy(),
    ):
        self._api_key = api_key
        self.publisher = publisher
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.http = HttpClient("serpapi google_lens", policy)

    async def search(self, image: Image.Image, *, count: int) -> list[ResultItem]:
        if not self._api_key:
            raise ToolError("SERPAPI_API_KEY is not set: set it to use Google Lens through SerpAPI")
        image_url = self.publisher.publish(image)
        params = {"engine": "google_lens", "url": image_url, "api_key": self._api_key, "hl": "en", "output": "json"}
        data = _check(
            await request_json(
                self.http, "GET", f"{self.base_url}/search.json", params=params, what="serpapi google_lens"
            ),
            "serpapi google_lens",
        )
        if data is None:
            return []
        hits: list[ResultItem] = []
        # Lens puts its identification ("this is the Eiffel Tower") in knowledge_graph when it has one.
        for kg in data.get("knowledge_graph") or []:
            if isinstance(kg, dict):
                hits.append(
                    result_item(
                        title=kg.get("title"),
                        url=kg.get("link"),
                        snippet=kg.get("subtitle"),
                        thumbnail=kg.get("thumbnail"),
                        source="Google Lens",
                    )
                )
        for match in data.get("visual_matches") or []:
            if isinstance(match, dict):
                hits.append(
                    result_item(
                        title=match.get("title"),
                        url=match.get("link"),
                        thumbnail=match.get("thumbnail"),
                        source=match.get("source"),
                    )
                )
        return [h for h in hits if h.url][:count]
