"""The `<img_search>` tool: reverse image search on the whole image or a crop, top 5 hits, 4-5 sentence
summary. Providers (serpapi.py's Lens, cloud_vision.py) turn an image into ranked ResultItems.

Lens only accepts an image URL, so `ImagePublisher` writes the image as `<sha256>.png` into a folder
that the user serves at a public base URL (the app, a bucket, any static server) and returns the URL.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from agent.events import ResultItem, ToolResult, image_png_bytes, image_sha256
from agent.tools.http import ToolError
from agent.tools.summarise import NoSummariser, Summariser, summarise_or_digest, summariser_settings

MAX_UPLOAD_SIDE = 1600  # larger images are downscaled before upload: reverse search gains nothing above this


class ImageProvider(Protocol):
    name: str
    endpoint: str  # the API base URL: part of the cache key

    async def search(self, image: Image.Image, *, count: int) -> list[ResultItem]:
        """Ranked, sanitised visual matches (at most `count`); raises ToolError with a one-line reason."""
        ...


def upload_ready(image: Image.Image, *, max_side: int = MAX_UPLOAD_SIDE) -> Image.Image:
    image = image.convert("RGB") if image.mode != "RGB" else image
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def jpeg_bytes(image: Image.Image, *, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    upload_ready(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class ImagePublisher:
    """Writes images where a web server publishes them; returns their public URL."""

    def __init__(self, directory: str | Path, public_base_url: str):
        self.directory = Path(directory)
        self.public_base_url = public_base_url.rstrip("/")

    def publish(self, image: Image.Image) -> str:
        if not self.public_base_url:
            raise ToolError(
                "Google Lens needs the image at a public URL: set --public-base-url (PUBLIC_BASE_URL) to the address "
                f"where {self.directory} is served, or use --image-search cloud_vision, which takes image bytes"
            )
        ready = upload_ready(image)
        name = f"{image_sha256(ready)}.png"  # content-addressed: the same crop is written once
        path = self.directory / name
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(image_png_bytes(ready))
            tmp.replace(path)  # atomic: a server never serves half a file
        return f"{self.public_base_url}/{name}"


class ReverseImageSearch:
    """ImageSearchTool over any ImageProvider."""

    def __init__(self, provider: ImageProvider, *, summariser: Summariser | None = None, top_k: int = 5):
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        self.source = provider
        self.provider = provider.name
        self.summariser = summariser or NoSummariser()
        self.top_k = top_k

    def cache_settings(self) -> dict[str, Any]:
        """Everything besides the request that changes a result (agent/tools/replay.py keys the cache on it)."""
        return {
            "provider": self.provider,
            "endpoint": self.source.endpoint,
            "top_k": self.top_k,
            "summariser": summariser_settings(self.summariser),
        }

    async def search_image(self, image: Image.Image, *, question: str) -> ToolResult:
        start = time.monotonic()
        if image.width < 1 or image.height < 1:
            return ToolResult(
                provider=self.provider, error=f"cannot search an image of zero area ({image.width}x{image.height})"
            )
        try:
            hits = (await self.source.search(image, count=self.top_k))[: self.top_k]
        except ToolError as exc:
            return ToolResult(provider=self.provider, error=exc.reason, latency_s=time.monotonic() - start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # parsing bug on an odd response: the model reads it as a failure
            return ToolResult(
                provider=self.provider,
                error=f"{self.provider}: unexpected {type(exc).__name__}: {exc}",
                latency_s=time.monotonic() - start,
            )
        if not hits:
            return ToolResult(
                provider=self.provider,
                summary="Reverse image search found no matching pages.",
                latency_s=time.monotonic() - start,
            )
        summary = await summarise_or_digest(self.summariser, question=question, query="", items=hits, kind="image")
        return ToolResult(
            provider=self.provider, items=tuple(hits), summary=summary, latency_s=time.monotonic() - start
        )
