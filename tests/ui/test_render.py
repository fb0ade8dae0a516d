"""ui/render.py: agent events → chat messages, crop panel, result cards, counters, answer (no server)."""

from PIL import Image

from agent.events import (
    ActionParsed,
    Answer,
    Box,
    BudgetExhausted,
    EpisodeFinished,
    EpisodeStarted,
    FormatError,
    ModelError,
    ResultItem,
    TextDelta,
    ToolFinished,
    ToolResult,
    ToolStarted,
    TurnStarted,
)
from ui.render import EpisodeView, answer_html, chat_messages, counters_html, crop_panel, fold, result_cards_html

EP = "ep1"
BUDGETS = {"max_image_searches": 1, "max_tool_calls": 10, "max_response_tokens": 8192, "max_turns": 16}
HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def started(image=None, **kw):
    return EpisodeStarted(
        EP, "Which bridge?", image, None, "m", "openai", "deepmmsearch", {"budgets": BUDGETS}, started_at=100.0, **kw
    )


def crop_episode(image):
    box = Box(100, 50, 300, 250)
    result = ToolResult(
        "cloud_vision",
        items=(
            ResultItem("Golden Gate", "A bridge", "https://example.org/gg", "https://example.org/t.jpg", "example.org"),
        ),
        summary="It is the Golden Gate Bridge.",
        latency_s=0.5,
        crop_box=box,
        crop_image=image.crop(box.as_tuple()),
        grounding_score=0.8,
    )
    return [
        started(image),
        TurnStarted(EP, 0),
        TextDelta(EP, 0, "<reason>look</reason>"),
        TextDelta(EP, 0, "<img_search>the bridge</img_search>"),
        ActionParsed(EP, 0, "image_search_region", "the bridge", "look", "raw", True, None, 12, 0.3),
        ToolStarted(EP, 0, 0, "image_search_region", "the bridge", "cloud_vision"),
        ToolFinished(
            EP,
            0,
            0,
            "image_search_region",
            "the bridge",
            result,
            "<information>It is the Golden Gate Bridge.</information>",
        ),
        TurnStarted(EP, 1),
        ActionParsed(EP, 1, "answer", "Golden Gate Bridge", "known", "raw", True, None, 8, 0.2),
        Answer(EP, 1, "Golden Gate Bridge"),
        EpisodeFinished(EP, "answered", "Golden Gate Bridge", 2, 1, 20, 3.5, True),
    ]


def test_streamed_text_shows_in_a_pending_turn_block():
    view = fold([started(), TurnStarted(EP, 0), TextDelta(EP, 0, "I think"), TextDelta(EP, 0, " more")])
    turn = chat_messages(view)[-1]
    assert turn["metadata"]["status"] == "pending"
    assert "I think more" in turn["content"]


def test_each_turn_and_tool_call_is_its_own_block_in_order():
    view = fold(crop_episode(Image.new("RGB", (800, 600))))
    titles = [(m.get("metadata") or {}).get("title", "") for m in chat_messages(view)]
    assert titles[1].startswith("Turn 1 · crop search")
    assert titles[2].startswith("🔧 crop search · cloud_vision · live")
    assert titles[3].startswith("Turn 2 · answer")
    assert chat_messages(view)[-1]["content"] == "**Answer:** Golden Gate Bridge"


def test_tool_block_reports_duration_provider_and_cache_hit():
    result = ToolResult("searxng", summary="s", cache_hit=True, latency_s=0.004)
    view = fold(
        [
            started(),
            TurnStarted(EP, 0),
            ToolStarted(EP, 0, 0, "text_search", "q", "searxng"),
            ToolFinished(EP, 0, 0, "text_search", "q", result, "info"),
        ]
    )
    tool = chat_messages(view)[-1]
    assert tool["metadata"]["status"] == "done"
    assert "cache hit" in tool["metadata"]["title"] and tool["metadata"]["duration"] == 0.0
    running = fold([started(), TurnStarted(EP, 0), ToolStarted(EP, 0, 0, "text_search", "q", "searxng")])
    assert chat_messages(running)[-1]["metadata"]["status"] == "pending"


def test_model_markup_in_chat_is_escaped_text():
    view = fold([started(), TurnStarted(EP, 0), TextDelta(EP, 0, HOSTILE + " [x](javascript:alert(3)) **b**")])
    content = chat_messages(view)[-1]["content"]
    assert "<img" not in content and "<script" not in content
    assert "](javascript" not in content and "**b**" not in content
    assert "&lt;img" in content


def test_crop_panel_scales_box_with_the_shown_image_and_keeps_the_crop():
    image = Image.new("RGB", (1536, 1152))
    box = Box(300, 150, 900, 750)
    result = ToolResult("cv", crop_box=box, crop_image=image.crop(box.as_tuple()), grounding_score=0.9)
    view = fold(
        [
            started(image),
            TurnStarted(EP, 0),
            ToolStarted(EP, 0, 0, "image_search_region", "x", "cv"),
            ToolFinished(EP, 0, 0, "image_search_region", "x", result, ""),
        ]
    )
    panel = crop_panel(view, max_side=768)
    assert panel.image.size == (768, 576)
    assert panel.boxes[0][0] == (150, 75, 450, 375)
    assert panel.crop.size == (600, 600)
    assert "(300, 150, 900, 750)" in panel.caption


def test_crop_panel_labels_a_grounding_fallback():
    image = Image.new("RGB", (100, 80))
    result = ToolResult("cv", crop_box=Box(0, 0, 100, 80), grounding_fallback=True)
    view = fold(
        [
            started(image),
            TurnStarted(EP, 0),
            ToolStarted(EP, 0, 0, "image_search_region", "x", "cv"),
            ToolFinished(EP, 0, 0, "image_search_region", "x", result, ""),
        ]
    )
    assert "no box above threshold" in crop_panel(view).boxes[0][1]
    assert crop_panel(view).crop.size == (100, 80)  # cut from the stored image when the event has none


def test_result_cards_escape_everything_and_allow_only_http_links():
    item = ResultItem(HOSTILE, HOSTILE, "javascript:alert(1)", "data:image/svg+xml,<svg onload=alert(1)>", HOSTILE)
    good = ResultItem("Good", "fine", "https://example.org/a?b=1&c=2", "https://example.org/t.jpg")
    result = ToolResult("p", items=(item, good))
    view = fold(
        [
            started(),
            TurnStarted(EP, 0),
            ToolStarted(EP, 0, 0, "text_search", HOSTILE, "p"),
            ToolFinished(EP, 0, 0, "text_search", HOSTILE, result, HOSTILE),
        ]
    )
    html = result_cards_html(view)
    assert "<img src=x" not in html and "<script" not in html and "javascript:" not in html and "data:image" not in html
    assert 'href="https://example.org/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer nofollow"' in html
    assert 'src="https://example.org/t.jpg"' in html
    assert "What the model read" in html


def test_counters_compare_usage_with_budgets():
    view = fold(crop_episode(Image.new("RGB", (64, 64))))
    html = counters_html(view)
    assert "20 / 8192" in html and "1 / 10" in html and "2 / 16" in html and "3.5 s" in html
    assert 'dm-spent"><b>1 / 1</b> image searches' in html


def test_answer_is_set_apart_with_gold_answers():
    view = fold(
        [
            started(gold_answers=("1937",)),
            Answer(EP, 0, "<b>1937</b>"),
            EpisodeFinished(EP, "answered", "<b>1937</b>", 1, 0, 5, 1.0, True),
        ]
    )
    html = answer_html(view)
    assert "Final answer" in html and "&lt;b&gt;1937&lt;/b&gt;" in html and "Gold: 1937" in html


def test_a_cancelled_episode_says_so_and_closes_its_streaming_turn():
    view = fold(
        [
            started(),
            TurnStarted(EP, 0),
            TextDelta(EP, 0, "half"),
            EpisodeFinished(EP, "cancelled", None, 1, 0, 3, 0.5, False, "cancelled by the user"),
        ]
    )
    messages = chat_messages(view)
    assert messages[-2]["metadata"]["title"].endswith("interrupted") and messages[-2]["metadata"]["status"] == "done"
    assert "cancelled" in messages[-1]["content"]
    assert "No answer" in answer_html(view)


def test_notices_for_budget_and_format_errors_appear_in_place():
    view = fold(
        [
            started(),
            TurnStarted(EP, 0),
            ActionParsed(EP, 0, "none", "", "", "junk", False, "no action tag", 3, 0.1),
            FormatError(EP, 0, "no action tag", "junk", 1),
            BudgetExhausted(EP, 0, "image_search", "image search already used"),
        ]
    )
    titles = [(m.get("metadata") or {}).get("title", "") for m in chat_messages(view)]
    assert titles[1] == "Turn 1 · malformed"
    assert titles[2] == "⚠ Malformed turn" and titles[3] == "⚠ Budget: image search"


def test_view_of_an_empty_episode_renders_placeholders():
    view = EpisodeView()
    assert chat_messages(view) == []
    assert "appear" in result_cards_html(view) and "appears" in answer_html(view)


def _malformed_episode(text: str) -> list:
    return [
        started(),
        TurnStarted(EP, 0),
        TextDelta(EP, 0, text),
        ActionParsed(EP, 0, "none", "", "", text, False, "empty turn", 2048, 9.0),
        FormatError(EP, 0, "empty turn", text, 0),
        EpisodeFinished(EP, "format_error", None, 1, 0, 2048, 9.0, False, "format retries spent"),
    ]


def test_a_malformed_turn_shows_what_the_model_wrote_with_whitespace_visible_and_runs_counted():
    view = fold(_malformed_episode("\n" * 2000 + "<reason>ok\tthen</reason>"))
    turn = chat_messages(view)[1]
    assert turn["metadata"]["title"] == "Turn 1 · malformed" and turn["metadata"]["log"] == "2048 tokens"
    assert "**Format error:** empty turn" in turn["content"]
    assert "```text\n⏎ ×2000\n<reason>ok⇥then</reason>\n```" in turn["content"]  # a code block: markup stays text
    answer = answer_html(view)  # the answer box says why, what to do, and what the model wrote
    assert "No answer · status format_error" in answer and "Dialect" in answer and "⏎ ×2000" in answer


def test_raw_text_cannot_close_its_code_block_early():
    text = "a ``` b ```` c"
    block = chat_messages(fold(_malformed_episode(text)))[1]["content"].split("\n\n")[-1]
    assert block.startswith("`````text\n") and block.endswith("\n`````") and text in block


def test_a_turn_streaming_thousands_of_newlines_stays_one_short_line():
    view = fold([started(), TurnStarted(EP, 0), TextDelta(EP, 0, "\n" * 5000)])
    assert chat_messages(view)[-1]["content"] == "⏎ ×5000\n"


def test_every_status_is_named_as_the_store_names_it_with_what_to_do():
    from traces.records import FINAL_STATUSES
    from ui.render import STATUS_HELP
    from ui.review import STATUS_FILTERS

    assert set(STATUS_HELP) == set(FINAL_STATUSES) | {"running", "pending"} == set(STATUS_FILTERS) - {"any"}
    for status in ("budget_exhausted", "error", "cancelled"):
        view = fold([started(), EpisodeFinished(EP, status, None, 1, 0, 5, 1.0, True, "why")])
        assert f"status {status}" in answer_html(view) and STATUS_HELP[status].split(".")[0] in answer_html(view)
        assert f"status **{status.replace('_', chr(92) + '_')}**: why" in chat_messages(view)[-1]["content"]
    failed = fold(
        [started(), ModelError(EP, 0, "http://h/v1", "refused"), EpisodeFinished(EP, "error", None, 1, 0, 0, 1, False)]
    )
    assert "model endpoint failed" in answer_html(failed) and "Settings → Endpoint" in answer_html(failed)


def test_an_imported_question_not_run_yet_is_pending_with_its_gold_answers_and_no_clock():
    view = fold([started(gold_answers=("Spain", "Kingdom of Spain"))], now=100.0)
    view.stored_status = "pending"
    answer = answer_html(view)
    assert "Not run yet · status pending" in answer and "Gold: Spain | Kingdom of Spain" in answer
    assert "Working" not in answer and view.elapsed_s(now=10_000.0) == 0.0
    assert "Not run yet" in counters_html(view) and "elapsed" not in counters_html(view)
    assert "pending" in chat_messages(view)[-1]["content"]
    view.stored_status = "running"
    assert "Running · status running" in answer_html(view) and "9900.0 s" in counters_html(view, now=10_000.0)


def test_tools_that_were_off_are_named_in_the_answer_box_with_what_to_set():
    tools = {"text_search": "off: SERPAPI_API_KEY is not set: set it", "image_search": "cloud_vision", "grounding": "g"}
    view = fold(
        [
            EpisodeStarted(EP, "q", None, None, "m", "b", "d", {"budgets": BUDGETS, "tools": tools}, started_at=1.0),
            EpisodeFinished(EP, "answered", "a", 1, 0, 5, 1.0, True),
        ]
    )
    answer = answer_html(view)
    assert "Off in this episode" in answer and "text search: SERPAPI_API_KEY is not set" in answer
    assert "image search" not in answer


def test_the_crop_caption_waits_for_the_episode_and_a_tiny_crop_is_enlarged_without_smoothing():
    assert crop_panel(EpisodeView()).caption == ""  # nothing started yet: no "No image" while it loads
    assert crop_panel(fold([started()])).caption == "No image in this episode."
    image = Image.new("RGB", (400, 300), (0, 0, 0))
    image.putpixel((101, 51), (255, 255, 255))
    box = Box(100, 50, 112, 59)  # 12×9 pixels
    result = ToolResult("cv", crop_box=box, crop_image=image.crop(box.as_tuple()))
    view = fold(
        [
            started(image),
            TurnStarted(EP, 0),
            ToolStarted(EP, 0, 0, "image_search_region", "x", "cv"),
            ToolFinished(EP, 0, 0, "image_search_region", "x", result, ""),
        ]
    )
    panel = crop_panel(view)
    assert panel.crop.size == (180, 135)  # ×15: fills the 180-px panel
    colours = {panel.crop.getpixel((x, y)) for x in range(15, 30) for y in range(15, 30)}
    assert colours == {(255, 255, 255)}  # one source pixel, one solid block: no smoothing
    assert panel.crop.getpixel((14, 14)) == (0, 0, 0)
    assert "12×9 px" in panel.caption and "enlarged ×15" in panel.caption


def test_a_problem_takes_the_answer_box_and_is_an_open_message_in_the_chat():
    from ui.render import Problem, problem_html, problem_message

    problem = Problem("Cannot start", "<b>x.jpg</b>: not an image; choose a photo")
    assert "Cannot start" in problem_html(problem) and "&lt;b&gt;x.jpg" in problem_html(problem)
    message = problem_message(problem)
    assert "metadata" not in message and "not an image" in message["content"]  # not a collapsed block
