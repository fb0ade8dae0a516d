"""The tool interfaces the episode loop calls (DESIGN.md §3.4).

Tools are injected into `agent.loop.run_episode` through a `Toolbox`. Search tools are async (they do
I/O); grounding is sync (it is compute). Every implementation returns a result, never raises into the
loop; the loop still guards against bugs by turning any exception into an error result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

from agent.events import Box, ToolResult


@runtime_checkable
class TextSearchTool(Protocol):
    provider: str

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        """Search the web for `query`; `question` is the user's original question, for the summary."""
        ...


@runtime_checkable
class ImageSearchTool(Protocol):
    provider: str

    async def search_image(self, image: Image.Image, *, question: str) -> ToolResult:
        """Reverse-search `image` (the whole input image or a crop of it)."""
        ...


@dataclass(frozen=True)
class Grounding:
    """Where a referring expression was found. `box` is in original-image pixels, padding applied.

    When nothing scored above threshold, `fallback` is True and `box` covers the whole image.
    """

    box: Box
    score: float | None
    fallback: bool
    note: str = ""
    latency_s: float = 0.0
    error: str | None = None  # set when grounding itself failed (bad expression, model error)


@runtime_checkable
class Grounder(Protocol):
    name: str

    def ground(self, image: Image.Image, expression: str) -> Grounding: ...


@dataclass
class Toolbox:
    """The tools an episode may use. A missing tool answers with an error result the model reads.

    `off_reasons` says why a tool is off (e.g. "SERPAPI_API_KEY is not set: ..."), shown at start-up and
    given to the model when it calls that tool.
    """

    text_search: TextSearchTool | None = None
    image_search: ImageSearchTool | None = None
    grounder: Grounder | None = None
    off_reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """One line per tool: its provider, or why it is off."""
        return {
            "text_search": self.text_search.provider
            if self.text_search
            else "off: " + self.off_reasons.get("text_search", "not configured"),
            "image_search": self.image_search.provider
            if self.image_search
            else "off: " + self.off_reasons.get("image_search", "not configured"),
            "grounding": self.grounder.name
            if self.grounder
            else "off: " + self.off_reasons.get("grounding", "not configured"),
        }
