import asyncio
from dataclasses import dataclass, field

import pytest
from PIL import Image

from agent.events import Box, ResultItem, ToolResult
from agent.tools.base import Grounding


@dataclass
class RecordingTextSearch:
    """A stand-in web search: the loop tests exercise the loop, the tools have their own tests."""

    provider: str = "test-text"
    queries: list[str] = field(default_factory=list)
    delay_s: float = 0.0

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        self.queries.append(query)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return ToolResult(
            provider=self.provider,
            items=(ResultItem(title=f"About {query}", snippet="snippet", url="https://example.org"),),
            summary=f"Summary for {query}.",
        )


@dataclass
class RecordingImageSearch:
    provider: str = "test-image"
    sizes: list[tuple[int, int]] = field(default_factory=list)

    async def search_image(self, image: Image.Image, *, question: str) -> ToolResult:
        self.sizes.append(image.size)
        return ToolResult(
            provider=self.provider,
            items=(ResultItem(title="A red square", url="https://example.org/sq"),),
            summary="It is a red square.",
        )


@dataclass
class FixedGrounder:
    box: Box = Box(10, 20, 50, 60)
    name: str = "fixed-grounder"

    def ground(self, image: Image.Image, expression: str) -> Grounding:
        return Grounding(box=self.box, score=0.9, fallback=False)


@pytest.fixture
def image():
    return Image.new("RGB", (120, 90), "red")
