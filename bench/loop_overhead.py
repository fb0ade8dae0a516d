"""Per-turn cost of the episode loop itself: parsing, events, budget bookkeeping, message building.

Runs episodes against the scripted local chat-completions server through the real OpenAI backend and
subtracts the time spent waiting on the backend's stream (model decoding + HTTP) and inside the tools, so
what remains is the loop's own overhead. Target: median <= 3 ms per turn.
Prints its figures last as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from agent.events import (  # noqa: E402
    Box,  # noqa: E402
    EpisodeFinished,
    ResultItem,
    ToolResult,
)
from agent.loop import run_episode  # noqa: E402
from agent.models.openai_backend import OpenAIBackend  # noqa: E402
from agent.tools.base import Grounding, Toolbox  # noqa: E402
from tests.servers.chat_completions import scripted_chat_server  # noqa: E402

TURNS = [
    "<reason>I should identify the object first.</reason><img_search>the object in the middle</img_search>",
    "<reason>Now I need facts about it.</reason><text_search>history of the red square object</text_search>",
    "<reason>One more check.</reason><text_search>red square object designer</text_search>",
    "<reason>The results agree.</reason><answer>Kazimir Malevich</answer>",
]


class Excluded:
    """Accumulates time spent outside the loop (backend stream and tool bodies)."""

    def __init__(self) -> None:
        self.seconds = 0.0


class TimedBackend:
    def __init__(self, inner: OpenAIBackend, excluded: Excluded):
        self.inner, self.excluded = inner, excluded
        self.backend, self.model, self.endpoint = inner.backend, inner.model, inner.endpoint

    def stream(self, messages, **kw):
        start = time.perf_counter()
        iterator = iter(self.inner.stream(messages, **kw))
        self.excluded.seconds += time.perf_counter() - start
        while True:
            start = time.perf_counter()
            try:
                delta = next(iterator)
            except StopIteration:
                self.excluded.seconds += time.perf_counter() - start
                return
            self.excluded.seconds += time.perf_counter() - start
            yield delta


class InstantTools:
    provider = "instant"
    name = "instant-grounder"

    def __init__(self, excluded: Excluded):
        self.excluded = excluded

    async def search_text(self, query, *, question):
        return ToolResult(
            provider=self.provider,
            items=(ResultItem(title=query, snippet="s", url="https://example.org"),),
            summary="A summary. " * 10,
        )

    async def search_image(self, image, *, question):
        return ToolResult(provider=self.provider, items=(ResultItem(title="hit"),), summary="An image summary.")

    def ground(self, image, expression):
        return Grounding(box=Box(10, 10, 200, 200), score=0.9, fallback=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=40)
    args = parser.parse_args()
    image = Image.new("RGB", (640, 480), "red")
    per_turn_overhead = []
    per_turn_wall = []
    with scripted_chat_server(TURNS) as server:
        backend = OpenAIBackend("scripted-model", server.base_url)
        for i in range(args.episodes + 3):
            excluded = Excluded()
            tools = InstantTools(excluded)
            toolbox = Toolbox(text_search=tools, image_search=tools, grounder=tools)
            start = time.perf_counter()
            events = list(run_episode("Who painted this?", image, TimedBackend(backend, excluded), toolbox))
            wall = time.perf_counter() - start
            finished = events[-1]
            assert isinstance(finished, EpisodeFinished) and finished.status == "answered", finished
            if i >= 3:  # warm-up: imports, connection set-up
                per_turn_overhead.append((wall - excluded.seconds) / finished.turns)
                per_turn_wall.append(wall / finished.turns)
    median_ms = statistics.median(per_turn_overhead) * 1000
    print(
        json.dumps(
            {
                "bench": "loop_overhead",
                "episodes": args.episodes,
                "turns_per_episode": len(TURNS),
                "overhead_ms_per_turn_median": round(median_ms, 3),
                "overhead_ms_per_turn_p95": round(
                    sorted(per_turn_overhead)[int(0.95 * len(per_turn_overhead)) - 1] * 1000, 3
                ),
                "wall_ms_per_turn_median": round(statistics.median(per_turn_wall) * 1000, 3),
                "target_ms": 3.0,
                "meets_target": median_ms <= 3.0,
            }
        )
    )


if __name__ == "__main__":
    main()
