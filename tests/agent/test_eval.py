"""The eval core: episodes through the real openai client against a scripted server, judged, N in flight."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from agent.eval import EvalItem, default_concurrency, item_key, keyed, run_eval
from agent.events import EpisodeFinished, EpisodeStarted
from agent.judge import Judge, RuleJudge
from agent.models.openai_backend import OpenAIBackend
from agent.tools.base import Toolbox
from tests.agent.conftest import RecordingTextSearch
from tests.servers.chat_completions import HTTPFailure, scripted_chat_server

SEARCH = "<reason>Let me look it up.</reason><text_search>{q}</text_search>"


def png(color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def question_of(body: dict) -> str:
    content = body["messages"][1]["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def model_turns(body: dict):
    """Search once, then answer "red" to colour questions and "blue" to anything else; "fail" questions 500."""
    question = question_of(body)
    if "fail" in question:
        return HTTPFailure(500, "model server down")
    if not any(m["role"] == "assistant" for m in body["messages"]):
        return SEARCH.format(q="colour of the thing")
    return "<reason>Found it.</reason><answer>" + ("red" if "colour" in question else "blue") + "</answer>"


def items(questions, golds=("red",), image=None) -> list[EvalItem]:
    return keyed(
        [(q, png() if image is None else image, tuple(golds), "test-source", n) for n, q in enumerate(questions)]
    )


class Events:
    """A thread-safe event sink."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def __call__(self, event):
        with self.lock:
            self.events.append(event)

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


def _eval(server, todo, **kwargs):
    sink = Events()
    outcomes = []
    kwargs.setdefault("judge", RuleJudge())
    kwargs.setdefault("concurrency", 4)
    result = run_eval(
        todo,
        backend=OpenAIBackend("scripted-model", server.base_url),
        toolbox=Toolbox(text_search=RecordingTextSearch()),
        on_event=sink,
        on_outcome=outcomes.append,
        **kwargs,
    )
    return result, outcomes, sink


def test_item_keys_depend_on_content_only():
    image = png()
    assert item_key("What is it?", image) == item_key(" What is it? ", bytes(image))
    assert item_key("What is it?", image) != item_key("What is it?", png("blue"))
    assert item_key("What is it?", "a/b.jpg") != item_key("What is it?", "c/b.jpg")
    keys = [i.key for i in keyed([("Q", None, ("a",), None, 1), ("Q", None, ("a",), None, 2)])]
    assert keys[1] == keys[0] + "-1"


def test_every_item_runs_once_is_judged_and_counted():
    todo = items(["What colour is it?", "What is it?", "Which colour dominates?", "Who made it?"])
    progress = []
    with scripted_chat_server(model_turns) as server:
        result, outcomes, sink = _eval(server, todo, on_progress=progress.append, config={"note": "kept"})
    assert result.stopped is None
    assert sorted(o.item.key for o in outcomes) == sorted(i.key for i in todo)
    verdicts = {o.item.question: o.judgement.verdict for o in outcomes}
    assert verdicts == {
        "What colour is it?": "correct",
        "What is it?": "incorrect",
        "Which colour dominates?": "correct",
        "Who made it?": "incorrect",
    }
    final = result.progress
    assert (final.done, final.total, final.correct, final.judged, final.unknown, final.errors) == (4, 4, 2, 4, 0, 0)
    assert final.accuracy == 0.5 and [p.done for p in progress] == [1, 2, 3, 4]
    started = sink.of(EpisodeStarted)
    assert len(started) == 4 and len(sink.of(EpisodeFinished)) == 4
    by_key = {e.config["item_key"]: e for e in started}
    assert set(by_key) == {i.key for i in todo}
    assert all(e.config["dataset"] == "test-source" and e.config["note"] == "kept" for e in started)
    assert all(e.gold_answers == ("red",) for e in started)


def test_finished_keys_are_skipped():
    todo = items(["What colour is it?", "What is it?", "Who made it?"])
    with scripted_chat_server(model_turns) as server:
        result, outcomes, _ = _eval(server, todo, done_keys={todo[0].key, todo[2].key})
    assert [o.item.key for o in outcomes] == [todo[1].key]
    assert result.progress.total == 1
    assert len(server.requests) == 2  # one episode: a search turn and an answer turn


def test_an_unreadable_image_is_an_error_episode_and_the_eval_goes_on(tmp_path):
    todo = [
        EvalItem("k-broken", "What colour is it?", b"definitely not an image", ("red",)),
        EvalItem("k-missing", "What colour is it?", str(tmp_path / "absent.jpg"), ("red",)),
        *items(["What colour is it?"]),
    ]
    with scripted_chat_server(model_turns) as server:
        result, outcomes, sink = _eval(server, todo, max_consecutive_failures=1)
    assert result.stopped is None  # image failures are not model failures
    by_key = {o.item.key: o for o in outcomes}
    for key, why in (("k-broken", "not an image"), ("k-missing", "no such file")):
        outcome = by_key[key]
        assert outcome.status == "error" and outcome.image_failed and outcome.judgement is None
        assert outcome.reason.startswith("image unreadable:") and why in outcome.reason
    assert by_key[todo[2].key].judgement.verdict == "correct"
    finished = {e.episode_id: e for e in sink.of(EpisodeFinished)}
    assert finished[by_key["k-broken"].episode_id].status == "error"
    started = {e.config["item_key"]: e for e in sink.of(EpisodeStarted)}
    assert started["k-missing"].image is None and started["k-missing"].gold_answers == ("red",)


def test_a_text_only_item_runs_without_an_image():
    todo = keyed([("What colour is it?", None, ("red",), None, 1)])
    with scripted_chat_server(model_turns) as server:
        _, outcomes, _ = _eval(server, todo)
    assert outcomes[0].status == "answered" and outcomes[0].judgement.verdict == "correct"


def test_the_model_endpoint_down_stops_the_eval_after_consecutive_failures():
    todo = items([f"Question {n}?" for n in range(30)])
    result, outcomes = run_eval_down(todo)
    assert result.stopped is not None and "failed 3 episodes in a row" in result.stopped
    assert "resume" in result.stopped
    assert 3 <= len(outcomes) <= 3 + 2  # the streak, plus what was in flight when it ended
    assert all(o.status in ("error", "cancelled") and o.judgement is None for o in outcomes)


def run_eval_down(todo):
    outcomes = []
    result = run_eval(
        todo,
        backend=OpenAIBackend("m", "http://127.0.0.1:9/v1"),
        toolbox=Toolbox(),
        judge=RuleJudge(),
        concurrency=2,
        on_outcome=outcomes.append,
        max_consecutive_failures=3,
    )
    return result, outcomes


def test_a_success_breaks_a_failure_streak():
    todo = items(["fail 1", "fail 2", "What colour?", "fail 3", "fail 4", "What colour now?"])
    with scripted_chat_server(model_turns) as server:
        result, outcomes, _ = _eval(server, todo, concurrency=1, max_consecutive_failures=3)
    assert result.stopped is None and len(outcomes) == 6
    assert [o.status for o in outcomes] == ["error", "error", "answered", "error", "error", "answered"]
    assert result.progress.errors == 4


def test_ctrl_c_cancels_episodes_in_flight_and_keeps_the_finished_ones():
    todo = items([f"What colour is thing {n}?" for n in range(12)])

    def interrupt_after_first(progress):
        if progress.done == 1:
            raise KeyboardInterrupt  # what the terminal's Ctrl-C raises in the thread waiting here

    with scripted_chat_server(model_turns, token_delay_s=0.05) as server:
        result, outcomes, sink = _eval(server, todo, concurrency=3, on_progress=interrupt_after_first)
    assert result.stopped == "interrupted"
    statuses = [o.status for o in outcomes]
    assert statuses.count("answered") >= 1 and len(outcomes) < 12
    assert set(statuses) <= {"answered", "cancelled"}
    # every episode that started also finished (none left dangling for the recorder)
    assert len(sink.of(EpisodeStarted)) == len(sink.of(EpisodeFinished)) == len(outcomes)


class CrashingJudge(Judge):
    name = "crashing"

    def describe(self):
        return {"kind": "test"}

    async def _judge(self, question, prediction, golds):
        raise RuntimeError("bug in the judge")


def test_a_judge_that_crashes_gives_unknown_not_a_lost_episode():
    todo = items(["What colour is it?"])
    with scripted_chat_server(model_turns) as server:
        result, outcomes, _ = _eval(server, todo, judge=CrashingJudge())
    judgement = outcomes[0].judgement
    assert judgement.verdict == "unknown" and "judge crashed: RuntimeError: bug in the judge" in judgement.reason
    assert result.progress.unknown == 1 and result.progress.judged == 0


@pytest.mark.parametrize(
    ("backend", "requested", "expected"), [("openai", None, 16), ("openai", 64, 64), ("transformers", 8, 1)]
)
def test_default_concurrency(backend, requested, expected):
    class Backend:
        pass

    b = Backend()
    b.backend = backend
    assert default_concurrency(b, requested) == expected
