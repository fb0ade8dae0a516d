"""OpenAI-compatible chat completions over httpx with SSE streaming (vLLM, SGLang, hosted APIs).

Images travel as `image_url` parts holding data URIs. Stop strings are sent to the server; vLLM and
OpenAI drop the matched stop string from the text, so when the server reports which one matched
(vLLM's `stop_reason`) it is appended back, and the loop restores an unterminated action tag otherwise.
Every failure becomes a BackendError that names the endpoint and says what to do.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from PIL import Image

from agent.models.base import BackendError, Delta, Message, map_image_parts
from agent.tls import shared_ssl_context
from agent.tools.http import provider_message

# Above this many pixels images are sent as JPEG: PNG data URIs of photos run to megabytes.
PNG_PIXEL_LIMIT = 1024 * 1024


def image_data_uri(image: Image.Image, max_pixels: int | None = None) -> str:
    if max_pixels and image.width * image.height > max_pixels:
        scale = (max_pixels / (image.width * image.height)) ** 0.5
        image = image.resize(
            (max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.Resampling.BICUBIC
        )
    buf = io.BytesIO()
    if image.width * image.height > PNG_PIXEL_LIMIT:
        image.convert("RGB").save(buf, format="JPEG", quality=92)
        mime = "image/jpeg"
    else:
        image.save(buf, format="PNG")
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


# Every turn resends the whole conversation, image included; encoding it once per image (not per turn)
# keeps the per-turn cost flat. PIL images are unhashable, so entries are keyed by id() and hold a weak
# reference that proves the id still names the same image; the cache never keeps an image alive.
_URI_CACHE: dict[int, tuple[weakref.ref, int | None, str]] = {}
_URI_CACHE_SIZE = 32


def _cached_data_uri(image: Image.Image, max_pixels: int | None) -> str:
    hit = _URI_CACHE.get(id(image))
    if hit is not None and hit[0]() is image and hit[1] == max_pixels:
        return hit[2]
    uri = image_data_uri(image, max_pixels)
    if len(_URI_CACHE) >= _URI_CACHE_SIZE:
        _URI_CACHE.pop(next(iter(_URI_CACHE)))
    _URI_CACHE[id(image)] = (weakref.ref(image), max_pixels, uri)
    return uri


def to_openai_messages(messages: Sequence[Message], max_pixels: int | None = None) -> list[dict[str, Any]]:
    return map_image_parts(
        messages, lambda image: {"type": "image_url", "image_url": {"url": _cached_data_uri(image, max_pixels)}}
    )


def _sse_lines(response: httpx.Response) -> Iterator[str]:
    """The response's lines, split here rather than by httpx's text and line decoders: a streamed token is
    one short chunk, and those two extra layers of generators were a measurable part of its cost under
    load. Handles CRLF and LF endings, chunks that end mid-line, and UTF-8 split across chunks."""
    pending = b""
    for chunk in response.iter_bytes():
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", errors="replace")


class OpenAIBackend:
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_pixels: int | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 120.0,
        extra_body: dict[str, Any] | None = None,
    ):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key  # never logged, never put into events
        self.temperature = temperature
        self.top_p = top_p
        self.max_pixels = max_pixels
        self.extra_body = dict(extra_body or {})
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = httpx.Client(timeout=self._timeout, follow_redirects=False, verify=shared_ssl_context())

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def close(self) -> None:
        self._client.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages, self.max_pixels),
            "max_tokens": max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra_body,
        }
        if stop:
            body["stop"] = list(stop)
        counted = 0
        finished = False
        try:
            with self._client.stream("POST", self.endpoint, json=body, headers=self._headers()) as response:
                if response.status_code >= 400:
                    response.read()
                    raise BackendError(self.endpoint, _http_error(response, self.model))
                for line in _sse_lines(response):
                    if cancel is not None and cancel.is_set():
                        return
                    if not line.startswith("data:"):
                        continue  # SSE comments, keep-alives, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError:
                        raise BackendError(self.endpoint, f"the stream sent invalid JSON: {data[:80]!r}") from None
                    if "error" in chunk or chunk.get("object") == "error":  # vLLM's shape, and its older one
                        detail = provider_message(data.encode()) or data[:200]
                        raise BackendError(self.endpoint, f"server error mid-stream: {detail}")
                    usage = chunk.get("usage")
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            counted += 1
                            yield Delta(text, 1)
                        if choice.get("finish_reason"):
                            finished = True
                            stop_reason = choice.get("stop_reason")
                            if isinstance(stop_reason, str) and stop_reason in stop:
                                yield Delta(stop_reason, 0)
                    if usage and usage.get("completion_tokens") is not None:
                        # Servers stream several tokens per chunk at times: settle the count with usage.
                        correction = int(usage["completion_tokens"]) - counted
                        counted += correction
                        if correction:
                            yield Delta("", correction)
        except BackendError:
            raise
        except httpx.ConnectError as exc:
            raise BackendError(
                self.endpoint, f"cannot connect ({exc}); is the server running and --base-url right?"
            ) from None
        except httpx.TimeoutException as exc:
            raise BackendError(
                self.endpoint, f"timed out ({type(exc).__name__}); the server is overloaded or unreachable"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise BackendError(self.endpoint, f"the stream was cut before the response finished ({exc})") from None
        except httpx.HTTPError as exc:
            raise BackendError(self.endpoint, f"HTTP failure: {type(exc).__name__}: {exc}") from None
        if not finished:
            raise BackendError(
                self.endpoint, "the stream ended before the response finished (no finish_reason or [DONE])"
            )


def _http_error(response: httpx.Response, model: str) -> str:
    # The server's own words (vLLM's `error.message`, FastAPI's `detail`...), else the start of its body.
    detail = provider_message(response.content) or response.text[:200].strip() or response.reason_phrase
    status = response.status_code
    if status in (401, 403):
        return f"HTTP {status} unauthorised ({detail}); set OPENAI_API_KEY to the server's key"
    if status == 404 and detail == "Not Found":  # FastAPI's answer for a path it has no route for
        return f"HTTP 404 ({detail}): no chat completions here; check the base URL (it usually ends in /v1)"
    if status == 404:
        return f"HTTP 404 ({detail}); check that the server serves model {model!r} (GET /v1/models lists them)"
    if status == 429:
        return f"HTTP 429 rate limited ({detail}); retry later or lower concurrency"
    return f"HTTP {status} ({detail})"
