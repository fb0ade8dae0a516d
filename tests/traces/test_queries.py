"""Queries: every filter, keyset pagination, full text, whole-episode load and the runs list (run statistics:
test_stats.py)."""

from __future__ import annotations

import dataclasses

import pytest

from traces import EpisodeFilter, Recorder
from traces.queries import count_episodes, iter_episodes, list_episodes, list_runs, load_episode

from .helpers import direct_episode, populate_two_runs


@pytest.fixture
def populated(store):
    return populate_two_runs(store)


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
        for e in direct_episode(f"p{i:02d}"):
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
            for e in direct_episode("late"):
                rec(e)
    assert pages == 5 and len(seen) == 23 and len(set(seen)) == 23
    assert seen == sorted(seen, reverse=True)
    assert count_episodes(store) == 24
    with pytest.raises(ValueError, match="bad page cursor"):
        list_episodes(store, after="garbage")


def test_iter_episodes_reads_every_page_in_either_order(store):
    rec = Recorder(store)
    for i in range(7):
        for e in direct_episode(f"p{i:02d}"):
            rec(e)
    names = [f"p{i:02d}" for i in range(7)]
    assert [e.id for e in iter_episodes(store, page_size=3)] == names[::-1]
    assert [e.id for e in iter_episodes(store, newest_first=False, page_size=3)] == names
    assert [e.id for e in iter_episodes(store, EpisodeFilter(pattern="crop"), page_size=3)] == []


def test_a_recorder_opens_one_run_per_model_backend_and_dialect(populated):
    assert [r.episodes for r in list_runs(populated)] == [5, 1, 1]


def test_list_columns_follow_the_summary_field_order():
    # list_episodes builds EpisodeSummary positionally for speed; this keeps the two in step.
    from traces.queries import _SUMMARY_COLUMNS
    from traces.records import EpisodeSummary

    fields = [f.name for f in dataclasses.fields(EpisodeSummary)]
    assert [c.name for c in _SUMMARY_COLUMNS[1:]] == ["uid", *fields[1:]]
