"""Pure helpers of the app: escaping, settings, pre-flight checks, examples, review forms, the episode driver."""

import asyncio
import threading
import time

import pytest

from agent.config import ModelConfig
from agent.events import EpisodeFinished, EpisodeStarted, TextDelta, TurnStarted
from traces.records import AnnotationRecord
from ui.episode import EpisodeCrashed, event_batches, frame_interval
from ui.errors import UserFacingError, friendly_error
from ui.preflight import approx_billions, model_problem
from ui.review import AnnotationForm, annotation_fields, form_from_annotation, history_markdown, make_filter, neighbour
from ui.safe import html_link, http_url, md_text
from ui.settings import BUDGET_FIELDS, app_config_from_args, build_parser, parse_auth, resolve_settings


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        "//evil.org",
        "https://u:p@host/",
        'https://a.org/"onload=x',
        "ftp://a.org",
        "",
    ],
)
def test_unsafe_urls_are_refused(url):
    assert http_url(url) == ""
    assert "<a" not in html_link(url, "x")


def test_md_text_renders_markdown_and_html_inert():
    text = md_text("# h\n*a* [l](https://x.org) <b>&amp; $$x$$")
    assert "<b>" not in text and "\\#" in text and "\\[" in text and "&lt;b&gt;&amp;amp;" in text and "\\$\\$" in text


def _app(*flags):
    parser = build_parser()
    return app_config_from_args(parser.parse_args(["--examples", "", *flags]))


def test_app_flags_follow_design_entry_point():
    app = _app(
        "--host",
        "0.0.0.0",
        "--port",
        "9999",
        "--db",
        "x.db",
        "--model",
        "m",
        "--backend",
        "openai",
        "--base-url",
        "http://h:1/v1",
        "--dialect",
        "mmsearch-r1",
        "--text-search",
        "searxng",
    )
    assert (app.host, app.port, app.db, app.model.model, app.model.backend, app.model.base_url, app.model.dialect) == (
        "0.0.0.0",
        9999,
        "x.db",
        "m",
        "openai",
        "http://h:1/v1",
        "mmsearch-r1",
    )
    assert app.tools.text_search == "searxng" and app.max_concurrent_episodes == 32
    assert _app().max_concurrent_episodes == 1  # a local model runs one episode at a time


def test_settings_panel_values_override_launch_config():
    app = _app("--backend", "openai")
    model, tools, budgets = resolve_settings(
        app, {"dialect": "mmsearch-r1", "box_threshold": 0.5, "max_tool_calls": 3.0, "model": "other"}
    )
    assert (
        model.dialect == "mmsearch-r1"
        and model.model == "other"
        and tools.box_threshold == 0.5
        and budgets.max_tool_calls == 3
    )


def test_locked_settings_keep_model_endpoint_and_providers():
    app = _app("--backend", "openai", "--lock-settings")
    model, tools, _ = resolve_settings(
        app, {"base_url": "http://evil.example/v1", "model": "x", "text_search": "off", "box_threshold": 0.2}
    )
    assert (
        model.base_url == app.model.base_url
        and model.model == app.model.model
        and tools.text_search == app.tools.text_search
    )
    assert tools.box_threshold == 0.2


@pytest.mark.parametrize(
    "form",
    [
        {"dialect": "nope"},
        {"base_url": "file:///etc/passwd"},
        {"box_threshold": 2},
        {"max_turns": "many"},
        {"max_turns": 0},
    ],
)
def test_invalid_settings_give_a_readable_error(form):
    with pytest.raises(UserFacingError):
        resolve_settings(_app(), form)


def test_budget_fields_exist_in_the_loop_budgets():
    from agent.loop import Budgets

    assert set(BUDGET_FIELDS) <= set(Budgets.__dataclass_fields__)


def test_auth_parsing():
    assert parse_auth("a:b,c:d:e") == (("a", "b"), ("c", "d:e"))
    with pytest.raises(ValueError):
        parse_auth("nopassword")


def test_seven_b_on_cpu_is_refused_with_advice():
    problem = model_problem(ModelConfig(model="Qwen/Qwen2.5-VL-7B-Instruct"), cuda_available=False)
    assert "needs a GPU" in problem and "--backend openai" in problem and "python -m agent tiny" in problem
    assert model_problem(ModelConfig(model="Qwen/Qwen2.5-VL-7B-Instruct"), cuda_available=True) is None
    assert (
        model_problem(ModelConfig(model="Qwen/Qwen2.5-VL-7B-Instruct"), cuda_available=False, allow_large_cpu=True)
        is None
    )
    assert "no CUDA GPU" in model_problem(ModelConfig(model="x", device="cuda"), cuda_available=False)
    assert approx_billions("org/Model-72B-Instruct") == 72 and approx_billions("tiny") is None


def test_friendly_errors_never_show_tracebacks():
    from agent.images import ImageError
    from agent.models.base import BackendError

    assert friendly_error(ImageError("x.png: not an image")).startswith("The image cannot be used")
    assert "http://h/v1" in friendly_error(BackendError("http://h/v1", "connection refused"))
    assert "Traceback" not in friendly_error(RuntimeError("boom"))


def test_filters_and_forms_round_trip():
    flt = make_filter(" bridge ", "answered", "crop", "none", "incorrect", "3 · app")
    assert (flt.text, flt.status, flt.pattern, flt.review, flt.correct, flt.run_ids) == (
        "bridge",
        ("answered",),
        "crop",
        "none",
        False,
        (3,),
    )
    assert make_filter("", "any", "any", "any", "unjudged", "any").judged is False
    record = AnnotationRecord(
        1, "e", "alice", 0.0, "default", ("bad_query",), False, "1937", "wrong_region", True, "<b>hi</b>", None
    )
    form = form_from_annotation(record)
    assert form == AnnotationForm(["bad_query"], "incorrect", "1937", "wrong_region", True, "<b>hi</b>")
    assert annotation_fields(form) == {
        "labels": ["bad_query"],
        "correct": False,
        "corrected_answer": "1937",
        "crop_verdict": "wrong_region",
        "approved": True,
        "comment": "<b>hi</b>",
    }
    assert "<b>" not in history_markdown([record], now=10.0)
    assert (
        neighbour(["a", "b"], "a", 1) == "b"
        and neighbour(["a", "b"], "b", 1) is None
        and neighbour(["a"], None, 1) == "a"
    )


def _events(n):
    yield EpisodeStarted("e", "q", None, None, "m", "b", "d", {}, started_at=time.time())
    for i in range(n):
        yield TurnStarted("e", i)
        yield TextDelta("e", i, "x")
    yield EpisodeFinished("e", "answered", "a", n, 0, n, 0.1, True)


async def _collect(batches):
    return [batch async for batch in batches]


def test_event_batches_record_every_event_and_the_end_before_the_page_sees_it():
    recorded, waited = [], []

    def record_and_wait(event):
        time.sleep(0.2)  # a slow store: the page must still not see the end before it is written
        waited.append(event)

    batches = asyncio.run(
        _collect(
            event_batches(
                lambda: _events(50), cancel=threading.Event(), record=recorded.append, record_and_wait=record_and_wait
            )
        )
    )
    seen = [e for batch in batches for e in batch]
    assert seen[:-1] == recorded and waited == [seen[-1]] and isinstance(seen[-1], EpisodeFinished) and len(seen) == 102
    assert len(batches) < 10  # 100 events that arrive at once make a few frames, not one frame each


def test_a_steady_stream_makes_one_frame_per_interval_and_its_first_event_goes_out_at_once():
    seen = {}

    def steady():
        seen["first"] = time.monotonic()
        yield EpisodeStarted("e", "q", None, None, "m", "b", "d", {}, started_at=time.time())
        yield TurnStarted("e", 0)
        for _ in range(100):
            time.sleep(0.003)
            yield TextDelta("e", 0, "x")
        yield EpisodeFinished("e", "answered", "a", 1, 0, 100, 0.3, True)

    async def frames():
        batches = event_batches(
            steady, cancel=threading.Event(), record=lambda e: None, min_interval_s=0.2, max_interval_s=0.4
        )
        return [(time.monotonic(), batch) async for batch in batches]

    frames = asyncio.run(frames())
    assert frames[0][0] - seen["first"] < 0.1  # not held back for a 0.2 s frame: nothing was due
    assert sum(len(batch) for _, batch in frames) == 103
    assert len(frames) <= (frames[-1][0] - frames[0][0]) / 0.2 + 3  # at most one frame per interval


def test_frames_space_out_while_the_loop_wakes_late_and_come_back_when_it_is_on_time():
    interval = 0.04
    for _ in range(20):
        interval = frame_interval(interval, lateness=0.03, shortest=0.04, longest=0.1)
    assert interval == 0.1  # a busy process: bigger, rarer frames, capped
    for _ in range(40):
        interval = frame_interval(interval, lateness=0.001, shortest=0.04, longest=0.1)
    assert interval == 0.04  # on time again: back to the shortest
    assert frame_interval(0.05, lateness=0.008, shortest=0.04, longest=0.1) == 0.05  # in between: kept


def test_md_text_matches_the_per_character_definition():
    from hypothesis import given
    from hypothesis import strategies as st

    def reference(text):
        html_chars = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
        return "".join(html_chars.get(ch) or ("\\" + ch if ch in "\\`*_{}[]()#+-.!|~=$:" else ch) for ch in text)

    @given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(list("\\`*_{}[]()#+-.!|~=$:&<>\"'"))))
    def check(text):
        assert md_text(text) == reference(text)

    check()


def test_a_crashing_episode_is_closed_in_the_trace_and_reported():
    def broken():
        yield EpisodeStarted("e", "q", None, None, "m", "b", "d", {}, started_at=time.time())
        raise RuntimeError("tool bug")

    recorded = []
    with pytest.raises(EpisodeCrashed, match="tool bug"):
        asyncio.run(_collect(event_batches(broken, cancel=threading.Event(), record=recorded.append)))
    deadline = time.time() + 2
    while len(recorded) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert isinstance(recorded[-1], EpisodeFinished) and recorded[-1].status == "error"


def test_closing_the_page_stream_leaves_the_episode_running_to_its_end_and_recorded():
    cancel, recorded = threading.Event(), []

    def episode():
        yield EpisodeStarted("e", "q", None, None, "m", "b", "d", {}, started_at=time.time())
        for i in range(20):
            time.sleep(0.01)
            yield TextDelta("e", 0, f"w{i} ")
        yield EpisodeFinished("e", "answered", "a", 1, 0, 20, 0.3, True)

    async def open_then_leave():  # a reloaded page: the stream is closed after its first frame
        gen = event_batches(episode, cancel=cancel, record=recorded.append, tick_s=0.05)
        await anext(gen)
        await gen.aclose()

    asyncio.run(open_then_leave())
    deadline = time.time() + 5
    while not (recorded and isinstance(recorded[-1], EpisodeFinished)) and time.time() < deadline:
        time.sleep(0.01)
    assert not cancel.is_set()
    assert recorded[-1].status == "answered" and len(recorded) == 22  # every event, the end included


def test_matplotlib_is_marked_absent_only_when_it_cannot_be_imported(monkeypatch):
    import importlib.util
    import sys

    from ui.app import mark_matplotlib_absent

    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # as if installed
    mark_matplotlib_absent()
    assert "matplotlib" not in sys.modules
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    mark_matplotlib_absent()
    assert sys.modules["matplotlib"] is None
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401


def test_md_code_shows_paths_literally_even_with_backticks():
    from ui.safe import md_code

    assert md_code("/tmp/pytest-of-root/run_1/*x*") == "`/tmp/pytest-of-root/run_1/*x*`"
    assert md_code("a `b` c") == "``a `b` c``"
    assert md_code("`edge`") == "`` `edge` ``"
    assert md_code("two\nlines") == "`two lines`"
