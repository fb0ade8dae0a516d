"""Queries: every filter, keyset pagination, full text, whole-episode load and per-run aggregates."""

from __future__ import annotations

import dataclasses

import pytest

from agent.events import ActionParsed, EpisodeFinished, ToolFinished, ToolResult, ToolStarted, TurnStarted
from traces import EpisodeFilter, Recorder
from traces.annotations import annotate
from traces.queries import count_episodes, list_episodes, list_runs, load_episode, run_stats
from traces.verdicts import set_verdict

from .helpers import synthetic_episode


def _direct(eid: str, question: str = "What is this?", answer: str = "A cat") -> list:
    events = synthetic_episode(eid, turns=1, question=question)
    events[-3] = dataclasses.replace(events[-3], argument=answer)
    return [dataclasses.replace(e, final_answer=answer) if e.type == "episode_finished" else e for e in events]


def _text_only(eid: str, n: int, question: str = "Which year was it built?") -> list:
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


def _whole(eid: str) -> list:
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


@pytest.fixture
def populated(store):
    rec = Recorder(store, run_kind="eval", run_name="a")
    for events in (
        _direct("direct"),
        _text_only("text1", 1),
        _text_only("text3", 3),
        _whole("whole"),
        synthetic_episode("mixed", turns=3),
    ):
        for e in events:
            rec(e)
    other = Recorder(store, run_kind="demo", run_name="b")
    for e in [
        dataclasses.replace(ev, dialect="mmsearch-r1", model="other-model") if ev.type == "episode_started" else ev
        for ev in _direct("other", "Who painted this?", "Monet")
    ]:
        other(e)
    for e in synthetic_episode("running", turns=3)[:6]:  # up to the crop ToolStarted
        other(e)
    set_verdict(store, "text1", True, judge="llm")
    set_verdict(store, "text3", False, judge="llm")
    annotate(store, "direct", "ana", correct=True, approved=True)
    return store


def _ids(store, **kw) -> set[str]:
    return {e.id for e in list_episodes(store, EpisodeFilter(**kw), limit=500).items}


def test_filters(populated):
    s = populated
    run_a = load_episode(s, "direct").summary.run_id
    assert _ids(s, run_ids=(run_a,)) == {"direct", "text1", "text3", "whole", "mixed"}
    assert _ids(s, model="other-model") == {"other"}
    assert _ids(s, dialect="mmsearch-r1") == {"other"}
    assert _ids(s, dataset="synthetic") >= {"direct", "mixed"}
    assert _ids(s, status=("running",)) == {"running"}
    assert _ids(s, correct=True) == {"text1", "direct"}  # judge verdict, or the annotators' one
    assert _ids(s, correct=False) == {"text3"}
    assert _ids(s, judged=False) == {"whole", "mixed", "other", "running"}
    assert _ids(s, pattern="direct", status=("answered",)) == {"direct", "other"}
    assert _ids(s, pattern="text_only") == {"text1", "text3"}
    assert _ids(s, pattern="whole_image") == {"whole"}
    assert _ids(s, pattern="crop") == {"mixed", "running"}
    assert _ids(s, pattern="mixed") == {"mixed"}
    assert _ids(s, pattern="multi_text") == {"text3"}
    assert _ids(s, review="approved") == {"direct"}
    assert _ids(s, review="none") == {"text1", "text3", "whole", "mixed", "other", "running"}
    assert _ids(s, annotator="ana") == {"direct"}
    assert _ids(s, text="painted") == {"other"}  # question
    assert _ids(s, text="Monet") == {"other"}  # final answer
    assert _ids(s, text="built year query") == {"text1", "text3"}  # search queries
    assert _ids(s, text='"; DROP TABLE episodes; --') == set()  # never parsed as query syntax
    assert _ids(s, pattern="text_only", correct=False) == {"text3"}


def test_bad_filter_values_are_clear_errors():
    with pytest.raises(ValueError, match="unknown action pattern"):
        EpisodeFilter(pattern="teleport")
    with pytest.raises(ValueError, match="unknown review state"):
        EpisodeFilter(review="maybe")


def test_keyset_pagination_visits_every_episode_once_newest_first(store):
    rec = Recorder(store)
    for i in range(23):
        for e in _direct(f"p{i:02d}"):
            rec(e)
    seen, after, pages = [], None, 0
    while True:
        page = list_episodes(store, limit=5, after=after)
        seen += [e.id for e in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        after = page.next_cursor
        if pages == 2:  # rows added while paging land before the cursor: no duplicates, no gaps
            for e in _direct("late"):
                rec(e)
    assert pages == 5 and len(seen) == 23 and len(set(seen)) == 23
    assert seen == sorted(seen, reverse=True)
    assert count_episodes(store) == 24
    with pytest.raises(ValueError, match="bad page cursor"):
        list_episodes(store, after="garbage")


def test_run_stats(populated):
    s = populated
    run_a = load_episode(s, "direct").summary.run_id
    st = run_stats(s, run_a)
    assert st.episodes == 5 and st.finished == 5
    assert st.tool_use_share == pytest.approx(4 / 5)
    assert st.text_search_share == pytest.approx(3 / 5)
    assert st.crop_share == pytest.approx(1 / 5) and st.whole_image_share == pytest.approx(1 / 5)
    assert st.self_correction_share == pytest.approx(1 / 5)  # only text3 refines an earlier text query
    assert st.judged == 2 and st.judge_accuracy == pytest.approx(0.5)
    assert st.human_judged == 1 and st.human_accuracy == 1.0
    assert st.latency_p50_s is not None and st.latency_p95_s == pytest.approx(5.0)
    assert st.status_counts == {"answered": 5}
    all_runs = run_stats(s)
    assert all_runs.episodes == 7 and all_runs.status_counts["running"] == 1
    assert [r.episodes for r in list_runs(s)] == [5, 1, 1]  # a recorder opens one run per (model, backend, dialect)


def test_list_columns_follow_the_summary_field_order():
    # list_episodes builds EpisodeSummary positionally for speed; this keeps the two in step.
    from traces.queries import _SUMMARY_COLUMNS
    from traces.records import EpisodeSummary

    fields = [f.name for f in dataclasses.fields(EpisodeSummary)]
    assert [c.name for c in _SUMMARY_COLUMNS[1:]] == ["uid", *fields[1:]]
