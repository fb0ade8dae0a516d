"""Google Cloud Vision web detection: reverse image search from image *bytes* (no public URL needed).

POST {base}/v1/images:annotate?key=KEY with `{"requests": [{"image": {"content": base64},
"features": [{"type": "WEB_DETECTION", "maxResults": N}]}]}`. The answer's `responses[0].webDetection`
has `bestGuessLabels`, `webEntities` (description, score), `pagesWithMatchingImages` (url, pageTitle
with <b> markup, full/partialMatchingImages) and `visuallySimilarImages`. A per-image failure comes as
`responses[0].error` ({code, message}) with HTTP 200; request-level failures as `{"error": {...}}`.
"""

from __future__ import annotations

import base64
from typing import Any

from PIL import Image

from agent.events import ResultItem
from agent.tools.http import HttpClient, HttpPolicy, ToolError, request_json
from agent.tools.image_search import jpeg_bytes
from agent.tools.sanitise import clean_text, result_item

DEFAULT_BASE_URL = "https://vision.googleapis.com"


def _first_url(page: dict[str, Any]) -> str:
    for key in ("fullMatchingImages", "partialMatchingImages"):
        for image in page.get(key) or []:
            if isinstance(image, dict) and isinstance(image.get("url"), str):
                return image["url"]
    return ""


def parse_web_detection(web: dict[str, Any], *, count: int) -> list[ResultItem]:
    hits: list[ResultItem] = []
    labels = [
        clean_text(g.get("label")) for g in web.get("bestGuessLabels") or [] if isinstance(g, dict) and g.get("label")
    ]
    entities = [
        f"{clean_text(e['description'])} ({float(e.get('score', 0)):.2f})"
        for e in web.get("webEntities") or []
        if isinstance(e, dict) and e.get("description")
    ]
    if labels or entities:
        # Web detection's main value is the entity names; they get their own leading item so the
        # summariser and the model see them even when no page matched.
        hits.append(
            result_item(
                title=f"Best guess: {', '.join(labels)}" if labels else "Web entities",
                snippet=("Web entities: " + ", ".join(entities[:8])) if entities else "",
                source="Cloud Vision",
            )
        )
    for page in web.get("pagesWithMatchingImages") or []:
        if isinstance(page, dict):
            hits.append(result_item(title=page.get("pageTitle"), url=page.get("url"), thumbnail=_first_url(page)))
    return [h for h in hits if h.url or h.source == "Cloud Vision"][:count]


class CloudVisionWebDetection:
    name = "cloud_vision"

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_BASE_URL, policy: HttpPolicy = HttpPolicy()):
        self._api_key = api_key
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.http = HttpClient("cloud_vision", policy)

    async def search(self, image: Image.Image, *, count: int) -> list[ResultItem]:
        if not self._api_key:
            raise ToolError("CLOUD_VISION_API_KEY is not set: set it to use Cloud Vision web detection")
        body = {
            "requests": [
                {
                    "image": {"content": base64.b64encode(jpeg_bytes(image)).decode("ascii")},
                    "features": [{"type": "WEB_DETECTION", "maxResults": max(count * 2, 10)}],
                }
            ]
        }
        data = await request_json(
            self.http,
            "POST",
            f"{self.base_url}/v1/images:annotate",
            params={"key": self._api_key},
            json_body=body,
            what="cloud_vision",
        )
        responses = data.get("responses") if isinstance(data, dict) else None
        if not isinstance(responses, list) or not responses or not isinstance(responses[0], dict):
            raise ToolError("cloud_vision: response has no `responses[0]`")
        first = responses[0]
        if isinstance(first.get("error"), dict):
            raise ToolError(
                f"cloud_vision: {clean_text(first['error'].get('message'), max_chars=300) or 'image rejected'}"
            )
        web = first.get("webDetection")
        return parse_web_detection(web, count=count) if isinstance(web, dict) else []
