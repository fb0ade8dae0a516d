"""Test helpers: a scripted model and tools that drive the real agent loop, and synthetic event streams."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from agent.events import (
    ActionParsed,
    Answer,
    Box,
    EpisodeFinished,
    EpisodeStarted,
    Event,
    ResultItem,
    TextDelta,
    ToolFinished,
    ToolResult,
    ToolStarted,
    TurnStarted,
    image_sha256,
)
from agent.models.base import Delta
from agent.tools.base import Grounding, Toolbox
from traces import Recorder
from traces.annotations import annotate
from traces.verdicts import set_judgement


def make_image(seed: int = 0, size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (seed * 37 % 256, 90, 160))
    ImageDraw.Draw(image).rectangle((10, 10, 40, 30), fill=(250, 250, seed % 256))
    return image


def jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    make_image(seed).save(buf, format="JPEG")
    return buf.getvalue()


def fvqa_row(i: int, image: bytes | None = None) -> dict:
    """A row in the FVQA / veRL question-set layout (as lmms-lab/FVQA's parquet has it)."""
    return {
        "prompt": [{"role": "user", "content": f"<image>Question {i}?"}],
        "images": [{"bytes": image or jpeg_bytes(i)}],
        "reward_model": {
            "ground_truth": f"answer {i}",
            "candidate_answers": json.dumps([f"alias {i}"]),
            "style": "rule",
        },
        "data_source": "fvqa_test",
        "image_urls": None,
    }


@dataclass
class ScriptedModel:
    """A model backend that streams fixed assistant turns, a few characters per delta."""

    turns: Sequence[str]
    model: str = "scripted-vlm"
    backend: str = "transformers"
    endpoint: str = "cpu"
    calls: int = 0

    def stream(
        self, messages, *, max_new_tokens: int, stop: Sequence[str], cancel: threading.Event | None = None
    ) -> Iterator[Delta]:  # noqa: ANN001
        text = self.turns[min(self.calls, len(self.turns) - 1)]
        self.calls += 1
        for i in range(0, len(text), 7):
            yield Delta(text[i : i + 7], tokens=1)


@dataclass
class FakeTextSearch:
    provider: str = "fake-web"
    queries: list[str] = field(default_factory=list)

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        self.queries.append(query)
        return ToolResult(
            self.provider,
            items=(
                ResultItem(
                    "Eiffel Tower - Wikipedia",
                    "wrought-iron lattice tower",
                    "https://en.wikipedia.org/wiki/Eiffel_Tower",
                ),
            ),
            summary=f"The tower in question ({query}) was designed by Gustave Eiffel's company.",
            latency_s=0.01,
        )


@dataclass
class FakeImageSearch:
    provider: str = "fake-lens"

    async def search_image(self, image: Image.Image, *, question: str) -> ToolResult:
        return ToolResult(
            self.provider,
            items=(ResultItem("Tower photo", "a tall tower", "https://example.org/t", "https://example.org/t.jpg"),),
            summary="This looks like the Eiffel Tower.",
        )


@dataclass
class FakeGrounder:
    name: str = "fake-dino"

    def ground(self, image: Image.Image, expression: str) -> Grounding:
        return Grounding(Box(5, 6, 50, 40), 0.8, False)


def toolbox() -> Toolbox:
    return Toolbox(text_search=FakeTextSearch(), image_search=FakeImageSearch(), grounder=FakeGrounder())


CROP_THEN_TEXT_THEN_ANSWER = (
    "<reason>I need to identify the tower.</reason><img_search>the tall tower</img_search>",
    "<reason>Now find who built it.</reason><text_search>Eiffel Tower architect</text_search>",
    "<reason>The results say Gustave Eiffel's company.</reason><answer>Gustave Eiffel</answer>",
)


def synthetic_episode(
    episode_id: str | None = None,
    *,
    image: Image.Image | None = None,
    turns: int = 3,
    question: str = "Who built this tower?",
) -> list[Event]:
    """A hand-built but loop-shaped event stream: tool turns (crop, then text searches), then an answer."""
    eid = episode_id or uuid.uuid4().hex
    image = image if image is not None else make_image()
    events: list[Event] = [
        EpisodeStarted(
            eid,
            question,
            image,
            image_sha256(image),
            "scripted-vlm",
            "transformers",
            "deepmmsearch",
            {"dataset": "synthetic"},
            ("Gustave Eiffel",),
            time.time(),
        )
    ]
    for t in range(turns - 1):
        kind = "image_search_region" if t == 0 else "text_search"
        arg = "the tower" if t == 0 else f"tower architect {t}"
        tag = "img_search" if t == 0 else "text_search"
        raw = f"<reason>step {t}</reason><{tag}>{arg}</{tag}>"
        events += [TurnStarted(eid, t), TextDelta(eid, t, raw[:10]), TextDelta(eid, t, raw[10:])]
        events.append(ActionParsed(eid, t, kind, arg, f"step {t}", raw, True, None, 12, 0.05))
        events.append(ToolStarted(eid, t, t, kind, arg, "fake"))
        crop = image.crop((5, 6, 50, 40)) if t == 0 else None
        result = ToolResult(
            "fake",
            (ResultItem(f"hit {t}", "snippet", "https://example.org"),),
            f"summary {t}",
            crop_box=Box(5, 6, 50, 40) if t == 0 else None,
            crop_image=crop,
            latency_s=0.02,
        )
        events.append(ToolFinished(eid, t, t, kind, arg, result, f"summary {t}"))
    last = turns - 1
    raw = "<reason>done</reason><answer>Gustave Eiffel</answer>"
    events += [
        TurnStarted(eid, last),
        TextDelta(eid, last, raw),
        ActionParsed(eid, last, "answer", "Gustave Eiffel", "done", raw, True, None, 8, 0.04),
        Answer(eid, last, "Gustave Eiffel"),
    ]
    events.append(EpisodeFinished(eid, "answered", "Gustave Eiffel", turns, turns - 1, 12 * (turns - 1) + 8, 0.5, True))
    return events


def direct_episode(eid: str, question: str = "What is this?", answer: str = "A cat") -> list:
    """An episode answered in one turn, without a tool."""
    events = synthetic_episode(eid, turns=1, question=question)
    events[-3] = dataclasses.replace(events[-3], argument=answer)
    return [dataclasses.replace(e, final_answer=answer) if e.type == "episode_finished" else e for e in events]


def text_only_episode(eid: str, n: int, question: str = "Which year was it built?") -> list:
    """`n` text searches, each with a new query, then the answer."""
    start, *rest = synthetic_episode(eid, turns=1, question=question)
    events = [start]
    for t in range(n):
        arg = f"built year query {t}"
        events += [
            TurnStarted(eid, t),
            ActionParsed(
                eid,
                t,
                "text_search",
                arg,
                "r",
                f"<reason>r</reason><text_search>{arg}</text_search>",
                True,
                None,
                5,
                0.1,
            ),
            ToolStarted(eid, t, t, "text_search", arg, "fake"),
            ToolFinished(eid, t, t, "text_search", arg, ToolResult("fake", summary="1889"), "1889"),
        ]
    events += [
        TurnStarted(eid, n),
        ActionParsed(eid, n, "answer", "1889", "r", "<reason>r</reason><answer>1889</answer>", True, None, 5, 0.1),
    ]
    events.append(EpisodeFinished(eid, "answered", "1889", n + 1, n, 20, 2.0 + n, True))
    return events


def whole_image_episode(eid: str) -> list:
    """One whole-image search, then the answer."""
    start = synthetic_episode(eid, turns=1)[0]
    return [
        dataclasses.replace(start, question="Where was this photo taken?"),
        TurnStarted(eid, 0),
        ActionParsed(
            eid,
            0,
            "image_search_whole",
            "<img>",
            "r",
            "<reason>r</reason><img_search><img></img_search>",
            True,
            None,
            5,
            0.1,
        ),
        ToolStarted(eid, 0, 0, "image_search_whole", "<img>", "fake"),
        ToolFinished(eid, 0, 0, "image_search_whole", "<img>", ToolResult("fake", summary="Paris"), "Paris"),
        TurnStarted(eid, 1),
        ActionParsed(eid, 1, "answer", "Paris", "r", "<reason>r</reason><answer>Paris</answer>", True, None, 5, 0.1),
        EpisodeFinished(eid, "answered", "Paris", 2, 1, 10, 1.0, True),
    ]


def populate_two_runs(store):
    """Run "a" (eval): direct, text1, text3, whole, mixed (crop + text searches); text1 judged correct, text3
    incorrect, direct annotated correct. Run "b" (demo): "other" (another model and dialect, so a run of its own)
    and "running" (stopped at its crop search)."""
    rec = Recorder(store, run_kind="eval", run_name="a")
    for events in (
        direct_episode("direct"),
        text_only_episode("text1", 1),
        text_only_episode("text3", 3),
        whole_image_episode("whole"),
        synthetic_episode("mixed", turns=3),
    ):
        for e in events:
            rec(e)
    other = Recorder(store, run_kind="demo", run_name="b")
    for e in [
        dataclasses.replace(ev, dialect="mmsearch-r1", model="other-model") if ev.type == "episode_started" else ev
        for ev in direct_episode("other", "Who painted this?", "Monet")
    ]:
        other(e)
    for e in synthetic_episode("running", turns=3)[:6]:  # up to the crop ToolStarted
        other(e)
    set_judgement(store, "text1", "correct", "", "llm")
    set_judgement(store, "text3", "incorrect", "", "llm")
    annotate(store, "direct", "ana", correct=True, approved=True)
    return store
