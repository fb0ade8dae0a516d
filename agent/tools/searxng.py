"""SearXNG (self-hosted metasearch, no key): GET {base}/search?q=...&format=json.

The instance must list `json` under `search.formats` in settings.yml, otherwise it answers 403; we say so.
Hits are in `results` (`url`, `title`, `content`, `engine`, optional `thumbnail`/`img_src`); engines that
failed are listed in `unresponsive_engines` as [name, reason] pairs, which we report when nothing came back.
"""

from __future__ import annotations

from agent.events import ResultItem
from agent.tools.http import HttpClient, HttpPolicy, ToolError, request_json
from agent.tools.sanitise import result_item


class SearxngSearch:
    name = "searxng"

    def __init__(
        self, base_url: str, *, policy: HttpPolicy = HttpPolicy(), language: str = "en", categories: str = "general"
    ):
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.language = language
        self.categories = categories
        self.http = HttpClient("searxng", policy)

    async def search(self, query: str, *, count: int) -> list[ResultItem]:
        params = {"q": query, "format": "json", "language": self.language, "categories": self.categories}
        try:
            data = await request_json(
                self.http, "GET", f"{self.base_url}/search", params=params, what=f"searxng {self.base_url}"
            )
        except ToolError as exc:
            if exc.status == 403:
                raise ToolError(
                    f"searxng {self.base_url}: HTTP 403; enable the JSON API by adding `json` to search.formats in settings.yml",
                    status=403,
                ) from None
            raise
        if not isinstance(data, dict):
            raise ToolError("searxng: unexpected response (not a JSON object)")
        hits = [
            result_item(
                title=r.get("title"),
                url=r.get("url"),
                snippet=r.get("content"),
                thumbnail=r.get("thumbnail") or r.get("img_src"),
                source=r.get("engine"),
            )
            for r in data.get("results") or []
            if isinstance(r, dict)
        ]
        hits = [h for h in hits if h.url][:count]
        unresponsive = [e for e in data.get("unresponsive_engines") or [] if isinstance(e, list | tuple) and e]
        if not hits and unresponsive:
            detail = "; ".join(f"{e[0]}: {e[1] if len(e) > 1 else 'no answer'}" for e in unresponsive[:4])
            raise ToolError(f"searxng: no results and its engines failed ({detail})")
        return hits
