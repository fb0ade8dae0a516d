"""Serper (serper.dev): Google web results as JSON. POST {base}/search with the key in `X-API-KEY` and a
JSON body `{"q", "num"}`; hits are in `organic` (`title`, `link`, `snippet`, optional `imageUrl`).
Errors are JSON `{"message": "...", "statusCode": N}` (403 for a bad key)."""

from __future__ import annotations

from agent.events import ResultItem
from agent.tools.http import HttpClient, HttpPolicy, ToolError, request_json
from agent.tools.sanitise import result_item

DEFAULT_BASE_URL = "https://google.serper.dev"


class SerperSearch:
    name = "serper"

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_BASE_URL, policy: HttpPolicy = HttpPolicy()):
        self._api_key = api_key
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.http = HttpClient("serper", policy)

    async def search(self, query: str, *, count: int) -> list[ResultItem]:
        if not self._api_key:
            raise ToolError("SERPER_API_KEY is not set: set it to use Serper")
        data = await request_json(
            self.http,
            "POST",
            f"{self.base_url}/search",
            json_body={"q": query, "num": count},
            headers={"X-API-KEY": self._api_key},
            what="serper",
        )
        if not isinstance(data, dict):
            raise ToolError("serper: unexpected response (not a JSON object)")
        hits = [
            result_item(title=r.get("title"), url=r.get("link"), snippet=r.get("snippet"), thumbnail=r.get("imageUrl"))
            for r in data.get("organic") or []
            if isinstance(r, dict)
        ]
        return [h for h in hits if h.url][:count]
