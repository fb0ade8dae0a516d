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
