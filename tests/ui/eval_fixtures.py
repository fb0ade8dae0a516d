"""Eval runs for the Compare tab's tests, recorded the way `python -m agent eval` records them: the real eval
harness (agent.eval.run_eval) over the real loop, judged by the rule judge, written by traces.eval_runs.

Two "models" answer the same questions: `direct` answers at once (right on even questions, wrong on odd ones);
`searcher` crops, searches text, then answers (right on questions divisible by 3). So their verdicts flip both
ways, and the searcher's trajectories have a crop box, a crop and result cards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from agent.eval import keyed, run_eval
from agent.judge import RuleJudge
from agent.models.base import Delta
from tests.traces.helpers import jpeg_bytes, toolbox
from traces.eval_runs import WholeEpisodes, open_eval_run, record_outcome, set_run_judge
from traces.recorder import Recorder
from traces.store import TraceStore

CROP = "<reason>I should look closer at the tower.</reason><img_search>the tall tower</img_search>"
SEARCH = "<reason>The crop shows a tower; search who built it.</reason><text_search>tower {n} architect</text_search>"
ANSWER = "<reason>That settles it.</reason><answer>{answer}</answer>"


def question_number(messages: Sequence[dict]) -> int:
    first = messages[1]["content"]
    text = first if isinstance(first, str) else " ".join(p.get("text", "") for p in first if isinstance(p, dict))
    return int(text.split("number ", 1)[1].split("?", 1)[0])


@dataclass
class QuestionScript:
    """A model backend whose turns depend on the question (its number) and on how many turns came before."""

    style: str  # "direct" | "searcher"
    model: str = ""
    backend: str = "openai"  # lets the eval run several episodes at once
    endpoint: str = "scripted"

    def __post_init__(self) -> None:
        self.model = self.model or f"{self.style}-model"

    def stream(self, messages, *, max_new_tokens: int, stop, cancel: threading.Event | None = None) -> Iterator[Delta]:
        n = question_number(messages)
        done = sum(1 for m in messages if m["role"] == "assistant")
        if self.style == "direct":
            text = ANSWER.format(answer="Gustave Eiffel" if n % 2 == 0 else "Nobody")
        elif done == 0:
            text = CROP
        elif done == 1:
            text = SEARCH.format(n=n)
        else:
            text = ANSWER.format(answer="Gustave Eiffel" if n % 3 == 0 else "Someone else")
        for i in range(0, len(text), 16):
            yield Delta(text[i : i + 16], tokens=4)


def questions(count: int, *, start: int = 0):
    return keyed(
        [
            (f"Who built the tower in photo number {n}?", jpeg_bytes(n), ("Gustave Eiffel",), f"source{n % 2}", n)
            for n in range(start, start + count)
        ]
    )


def record_eval_run(store: TraceStore, name: str, style: str, count: int = 8, *, start: int = 0) -> int:
    """Run `count` questions through the eval harness with the `style` model; returns the eval run's id."""
    backend = QuestionScript(style)
    judge = RuleJudge()
    run = open_eval_run(
        store, name, model=backend.model, backend=backend.backend, dialect="deepmmsearch", dataset="towers", config={}
    )
    set_run_judge(store, run.run_id, judge.describe())
    recorder = Recorder(store, run_kind="eval", run_id=run.run_id)
    try:
        outcome = run_eval(
            questions(count, start=start),
            backend=backend,
            toolbox=toolbox(),
            judge=judge,
            concurrency=4,
            on_event=WholeEpisodes(recorder),
            on_outcome=lambda o: record_outcome(store, o),
        )
    finally:
        recorder.close()
    assert outcome.stopped is None and outcome.progress.done == count
    return run.run_id
