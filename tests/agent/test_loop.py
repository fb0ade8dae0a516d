"""The episode loop driven through the real OpenAI-compatible client against a scripted local server."""

import threading

import pytest

from agent.events import (
    ActionParsed,
    Answer,
    BudgetExhausted,
    EpisodeFinished,
    EpisodeStarted,
    FormatError,
    ModelError,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnStarted,
)
from agent.loop import Budgets, run_episode
from agent.models.openai_backend import OpenAIBackend
from agent.tools.base import Toolbox
from tests.agent.conftest import FixedGrounder, RecordingImageSearch, RecordingTextSearch
from tests.servers.chat_completions import CutStream, HTTPFailure, scripted_chat_server

TEXT = "<reason>I need facts.</reason><text_search>red square meaning</text_search>"
CROP = "<reason>Look at the corner.</reason><img_search>the top left corner</img_search>"
WHOLE = "<reason>What is it?</reason><img_search><img></img_search>"
ANSWER = "<reason>Now I know.</reason><answer>a red square</answer>"


def _tools():
    return Toolbox(text_search=RecordingTextSearch(), image_search=RecordingImageSearch(), grounder=FixedGrounder())


def _run(turns, image, tools=None, budgets=Budgets(), **kw):
    with scripted_chat_server(turns) as server:
        backend = OpenAIBackend("scripted-model", server.base_url)
        events = list(run_episode("What is this?", image, backend, tools or _tools(), budgets=budgets, **kw))
        return events, server


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def test_text_search_then_crop_search_then_answer(image):
    tools = _tools()
    events, server = _run([TEXT, CROP, ANSWER], image, tools)
    assert isinstance(events[0], EpisodeStarted) and events[0].image_sha256
    finished = events[-1]
    assert isinstance(finished, EpisodeFinished)
    assert (finished.status, finished.final_answer, finished.turns, finished.tool_calls) == (
        "answered",
        "a red square",
        3,
        2,
    )
    assert finished.format_ok
    assert [e.kind for e in _of(events, ActionParsed)] == ["text_search", "image_search_region", "answer"]
    crop = _of(events, ToolFinished)[1]
    assert crop.result.crop_box.as_tuple() == (10, 20, 50, 60)
    assert crop.result.crop_image.size == (40, 40)
    assert tools.image_search.sizes == [(40, 40)]
    assert tools.text_search.queries == ["red square meaning"]
    # Streaming: the model's text arrives as several deltas per turn and reassembles exactly.
    first_turn = "".join(e.text for e in _of(events, TextDelta) if e.turn_index == 0)
    assert first_turn == TEXT and len([e for e in _of(events, TextDelta) if e.turn_index == 0]) > 3
    # The model saw the tool result inside <information> in its next user turn, image in the first.
    second = server.requests[1]["messages"]
    assert (
        second[-1]["role"] == "user"
        and "<information>Summary for red square meaning.</information>" in second[-1]["content"][0]["text"]
    )
    assert second[1]["content"][0]["type"] == "image_url" and second[1]["content"][0]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )
    assert server.requests[0]["stop"] == ["</text_search>", "</img_search>", "</answer>"]


def test_event_order_per_turn(image):
    events, _ = _run([WHOLE, ANSWER], image)
    kinds = [type(e).__name__ for e in events if not isinstance(e, TextDelta)]
    assert kinds == [
        "EpisodeStarted",
        "TurnStarted",
        "ActionParsed",
        "ToolStarted",
        "ToolFinished",
        "TurnStarted",
        "ActionParsed",
        "Answer",
        "EpisodeFinished",
    ]
    whole = _of(events, ToolFinished)[0]
    assert whole.result.crop_box.as_tuple() == (0, 0, 120, 90)


def test_second_image_search_is_refused_and_the_model_told(image):
    events, server = _run([WHOLE, CROP, ANSWER], image)
    refused = _of(events, BudgetExhausted)
    assert [b.budget for b in refused] == ["image_search"]
    assert len(_of(events, ToolStarted)) == 1
    assert "already used your one image search" in server.requests[2]["messages"][-1]["content"][0]["text"]
    assert events[-1].status == "answered"


def test_tool_call_budget_warns_then_ends_on_repeated_overuse(image):
    budgets = Budgets(max_tool_calls=2)
    events, server = _run([TEXT, TEXT, TEXT, TEXT, ANSWER], image, budgets=budgets)
    assert len(_of(events, ToolStarted)) == 2
    assert [b.budget for b in _of(events, BudgetExhausted)] == ["tool_calls", "tool_calls", "tool_calls"]
    assert "last tool call" in server.requests[2]["messages"][-1]["content"][0]["text"]
    assert events[-1].status == "budget_exhausted"


def test_response_token_budget_ends_the_episode(image):
    events, _ = _run([TEXT, TEXT, TEXT, ANSWER], image, budgets=Budgets(max_response_tokens=12))
    assert events[-1].status == "budget_exhausted"
    assert events[-1].response_tokens >= 12
    assert _of(events, BudgetExhausted)[-1].budget == "response_tokens"


def test_turn_cap_ends_the_episode(image):
    events, _ = _run([TEXT] * 5, image, budgets=Budgets(max_turns=3))
    assert events[-1].status == "budget_exhausted" and events[-1].turns == 3


def test_malformed_turn_gets_a_retry_with_the_reason(image):
    events, server = _run(["I think it's red.", ANSWER], image)
    errors = _of(events, FormatError)
    assert len(errors) == 1 and errors[0].retries_left == 2
    assert "did not follow the required format" in server.requests[1]["messages"][-1]["content"][0]["text"]
    assert events[-1].status == "answered"
    assert not events[-1].format_ok  # s_fmt is 0 for the episode


def test_repeated_malformed_turns_end_with_format_error(image):
    events, _ = _run(["nope", "<answer>x</answer>", "<reason>r</reason>"], image, budgets=Budgets(max_format_retries=2))
    assert len(_of(events, FormatError)) == 3
    assert events[-1].status == "format_error" and "malformed" in events[-1].reason


def test_missing_tool_answers_with_an_error_the_model_reads(image):
    tools = Toolbox(off_reasons={"text_search": "SERPAPI_API_KEY is not set"})
    events, server = _run([TEXT, ANSWER], image, tools)
    result = _of(events, ToolFinished)[0].result
    assert result.error and "SERPAPI_API_KEY" in result.error
    assert "SERPAPI_API_KEY" in server.requests[1]["messages"][-1]["content"][0]["text"]
    assert events[-1].status == "answered"


def test_a_crashing_tool_becomes_an_error_result(image):
    class Broken:
        provider = "broken"

        async def search_text(self, query, *, question):
            raise RuntimeError("kaboom")

    events, _ = _run([TEXT, ANSWER], image, Toolbox(text_search=Broken()))
    assert "kaboom" in _of(events, ToolFinished)[0].result.error
    assert events[-1].status == "answered"


def test_region_search_without_image_is_an_error_result():
    events, _ = _run([CROP, ANSWER], None)
    assert "no image" in _of(events, ToolFinished)[0].result.error


@pytest.mark.parametrize(
    "turn,needle",
    [
        (HTTPFailure(500, "engine died"), "HTTP 500"),
        (CutStream("<reason>a b c d", after_words=2), "cut"),
        (HTTPFailure(401, "bad key"), "OPENAI_API_KEY"),
    ],
)
def test_endpoint_failures_end_with_an_error_event_naming_the_endpoint(image, turn, needle):
    events, server = _run([turn], image)
    error = _of(events, ModelError)[0]
    assert error.endpoint == server.base_url + "/chat/completions"
    assert needle in error.message
    assert events[-1].status == "error"


def test_wrong_model_name_and_dead_endpoint_are_clear_errors(image):
    with scripted_chat_server([ANSWER]) as server:
        events = list(run_episode("q", image, OpenAIBackend("no-such-model", server.base_url)))
    assert "does not exist" in _of(events, ModelError)[0].message
    events = list(run_episode("q", image, OpenAIBackend("m", "http://127.0.0.1:9/v1")))
    assert "cannot connect" in _of(events, ModelError)[0].message and events[-1].status == "error"


def test_cancel_flag_stops_mid_stream(image):
    cancel = threading.Event()
    seen = []
    with scripted_chat_server([TEXT, ANSWER], token_delay_s=0.01) as server:
        for event in run_episode("q", image, OpenAIBackend("scripted-model", server.base_url), _tools(), cancel=cancel):
            seen.append(event)
            if isinstance(event, TextDelta):
                cancel.set()
    assert seen[-1].status == "cancelled"
    assert not _of(seen, ToolStarted)


def test_closing_the_generator_reports_cancelled_to_on_event(image):
    finished = []
    with scripted_chat_server([TEXT, ANSWER]) as server:
        events = run_episode(
            "q",
            image,
            OpenAIBackend("scripted-model", server.base_url),
            _tools(),
            on_event=lambda e: finished.append(e) if isinstance(e, EpisodeFinished) else None,
        )
        for event in events:
            if isinstance(event, TurnStarted) and event.turn_index == 1:
                events.close()
                break
    assert [f.status for f in finished] == ["cancelled"]


def test_on_event_sees_exactly_the_yielded_events(image):
    seen = []
    events, _ = _run([TEXT, ANSWER], image, on_event=seen.append)
    assert seen == events
    assert _of(events, Answer)[0].text == "a red square"


def test_mmsearch_r1_dialect_refuses_image_search_after_round_one(image):
    turns = [TEXT, "<reason>now the image</reason><search><img></search>", ANSWER]
    events, server = _run(turns, image, dialect="mmsearch-r1")
    assert [b.budget for b in _of(events, BudgetExhausted)] == ["image_search"]
    assert server.requests[1]["messages"][-1]["content"][0]["text"].startswith("Searched results: <information>")
    assert events[-1].status == "answered"


def test_an_action_whose_stop_string_the_server_dropped_is_sent_back_closed(image):
    stripped = TEXT.removesuffix("</text_search>")  # what vLLM streams when it drops the matched stop string
    events, server = _run([stripped, ANSWER], image)
    parsed = _of(events, ActionParsed)
    assert parsed[0].raw_text == TEXT and parsed[0].format_ok
    second_request = server.requests[1]["messages"]
    assert second_request[2] == {"role": "assistant", "content": [{"type": "text", "text": TEXT}]}
