"""Brave Search API: GET {base}/res/v1/web/search?q=&count= with the key in `X-Subscription-Token`.
Hits are in `web.results` (`title`, `url`, `description` with <strong> markup, `thumbnail.src`,
`profile.name`). Errors: `{"type": "ErrorResponse", "error": {"status", "code", "detail"}}`."""

from __future__ import annotations

from agent.events import ResultItem
from agent.tools.http import HttpClient, HttpPolicy, ToolError, request_json
from agent.tools.sanitise import result_item

DEFAULT_BASE_URL = "https://api.search.brave.com"


class BraveSearch:
    name = "brave"

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_BASE_URL, policy: HttpPolicy = HttpPolicy()):
        self._api_key = api_key
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.http = HttpClient("brave", policy)

    async def search(self, query: str, *, count: int) -> list[ResultItem]:
        if not self._api_key:
            raise ToolError("BRAVE_API_KEY is not set: set it to use Brave Search")
        data = await request_json(
            self.http,
            "GET",
            f"{self.base_url}/res/v1/web/search",
            params={"q": query, "count": min(count, 20)},  # Brave caps count at 20
            headers={"X-Subscription-Token": self._api_key, "Accept": "application/json"},
            what="brave",
        )
        if not isinstance(data, dict):
            raise ToolError("brave: unexpected response (not a JSON object)")
        web = data.get("web") if isinstance(data.get("web"), dict) else {}
        hits = []
        for r in web.get("results") or []:
            if not isinstance(r, dict):
                continue
            thumb = r.get("thumbnail") if isinstance(r.get("thumbnail"), dict) else {}
            profile = r.get("profile") if isinstance(r.get("profile"), dict) else {}
            hits.append(
                result_item(
                    title=r.get("title"),
                    url=r.get("url"),
                    snippet=r.get("description"),
                    thumbnail=thumb.get("src"),
                    source=profile.get("name"),
                )
            )
        return [h for h in hits if h.url][:count]
