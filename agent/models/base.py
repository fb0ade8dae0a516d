"""What the episode loop needs from a model: stream text deltas for a chat, stop at action tags."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# A chat message: {"role": "system"|"user"|"assistant", "content": str | list[part]}, where a part is
# {"type": "text", "text": str} or {"type": "image", "image": PIL.Image.Image}.
Message = dict[str, Any]


def map_image_parts(messages: Sequence[Message], image_part: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """Copy of `messages` in which every image part is replaced by `image_part(image)`: each backend
    carries images its own way (data URIs, or placeholders plus a separate image list)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
        else:
            parts = [
                image_part(p["image"]) if p.get("type") == "image" else {"type": "text", "text": p["text"]}
                for p in content
            ]
            out.append({"role": message["role"], "content": parts})
    return out


def split_images(messages: Sequence[Message]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Chat-template messages with image parts as placeholders, and the images in order (what a processor takes)."""
    images: list[Any] = []

    def placeholder(image: Any) -> dict[str, Any]:
        images.append(image)
        return {"type": "image"}

    return map_image_parts(messages, placeholder), images


@dataclass(frozen=True)
class Delta:
    """A piece of streamed output and how many response tokens it accounts for."""

    text: str
    tokens: int = 0


class BackendError(RuntimeError):
    """The model endpoint failed; the message names the endpoint and says what to do."""

    def __init__(self, endpoint: str, message: str):
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint
        self.message = message


@runtime_checkable
class ModelBackend(Protocol):
    backend: str  # "transformers" | "openai"
    model: str  # hub id, local path or served model name
    endpoint: str  # where errors come from: a URL, or the local device

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta]:
        """Yield deltas of one assistant turn. Output ends at (and includes, where the server allows) the
        first stop string. Raises BackendError on endpoint failures."""
        ...
