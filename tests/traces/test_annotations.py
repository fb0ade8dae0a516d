"""Annotations (identified annotators, label sets, history, review state) and agreement (Cohen, Fleiss)."""

from __future__ import annotations

import pytest

from traces import NotFoundError, Recorder
from traces.agreement import agreement_table, cohen_kappa, fleiss_kappa
from traces.annotations import annotate, get_label_set, list_annotations, set_label_set
from traces.queries import load_episode

from .helpers import synthetic_episode


@pytest.fixture
def episodes(store):
    rec = Recorder(store)
    ids = [f"a{i}" for i in range(6)]
    for eid in ids:
        for e in synthetic_episode(eid):
            rec(e)
    return ids


def test_edits_keep_history_and_unset_fields_carry_over(store, episodes):
    first = annotate(store, "a0", "ana", labels=["bad_query"], correct=False, comment="query too vague")
    second = annotate(store, "a0", "ana", corrected_answer="Gustave Eiffel", crop_verdict="right_region")
    assert second.supersedes_id == first.id
    assert second.labels == ("bad_query",) and second.correct is False and second.comment == "query too vague"
    assert second.corrected_answer == "Gustave Eiffel" and second.crop_verdict == "right_region"
    third = annotate(store, "a0", "ana", labels=[], correct=None)
    assert third.labels == () and third.correct is None
    history = list_annotations(store, "a0", history=True)
    assert [a.id for a in history] == [first.id, second.id, third.id]
    assert history[0].labels == ("bad_query",)  # the old version is untouched
    assert [a.id for a in list_annotations(store, "a0")] == [third.id]


def test_review_state_follows_current_annotations(store, episodes):
    def state():
        return load_episode(store, "a1").summary.review_state

    assert state() == "none"
    annotate(store, "a1", "ana", comment="looks fine")
    assert state() == "annotated"
    annotate(store, "a1", "ana", approved=True, correct=True)
    assert state() == "approved"
    annotate(store, "a1", "ben", approved=False, correct=False)
    assert state() == "disputed" and load_episode(store, "a1").summary.human_correct is None
    annotate(store, "a1", "ben", approved=True, correct=True)
    assert state() == "approved" and load_episode(store, "a1").summary.human_correct is True


def test_label_sets_are_configurable_and_validated(store, episodes):
    with pytest.raises(ValueError, match="not in label set"):
        annotate(store, "a2", "ana", labels=["made_up"])
    set_label_set(store, "crops", ["tight_box", "loose_box", "wrong_object"], "crop review")
    record = annotate(store, "a2", "ana", labels=["loose_box"], label_set="crops")
    assert record.label_set == "crops" and record.labels == ("loose_box",)
    set_label_set(store, "crops", ["tight_box", "loose_box"])
    assert get_label_set(store, "crops").labels == ("tight_box", "loose_box")
    with pytest.raises(NotFoundError, match="no label set"):
        get_label_set(store, "nope")
    with pytest.raises(ValueError, match="crop verdict"):
        annotate(store, "a2", "ana", crop_verdict="meh")
    with pytest.raises(ValueError, match="annotator"):
        annotate(store, "a2", "  ")
    with pytest.raises(NotFoundError):
        annotate(store, "missing", "ana")


def test_cohen_kappa_matches_the_textbook_example():
    # Wikipedia's Cohen's kappa example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    pairs = [(1, 1)] * 20 + [(1, 0)] * 5 + [(0, 1)] * 10 + [(0, 0)] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([(1, 1), (1, 1)]) is None  # no variation: undefined, not 1.0
    assert cohen_kappa([]) is None


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    items = [[cat for cat, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.2099, abs=1e-4)


def test_agreement_table_from_the_store(store, episodes):
    # two annotators: Cohen; they agree on correctness for 4 of 6 episodes
    verdicts = {"ana": [True, True, False, False, True, False], "ben": [True, False, False, True, True, False]}
    for name, values in verdicts.items():
        for eid, v in zip(episodes, values, strict=True):
            annotate(store, eid, name, correct=v, labels=["bad_query"] if not v else [])
    rows = {r.item: r for r in agreement_table(store)}
    expected = cohen_kappa(list(zip(verdicts["ana"], verdicts["ben"], strict=True)))
    assert rows["correct"].statistic == "cohen" and rows["correct"].kappa == pytest.approx(expected)
    assert rows["correct"].items == 6 and rows["correct"].observed_agreement == pytest.approx(4 / 6)
    assert rows["label:bad_query"].kappa == pytest.approx(expected)  # same pattern
    assert rows["label:good_trajectory"].kappa is None  # nobody used it: undefined
    # a third annotator turns it into Fleiss
    for eid, v in zip(episodes, verdicts["ana"], strict=True):
        annotate(store, eid, "cleo", correct=v)
    rows = {r.item: r for r in agreement_table(store)}
    assert rows["correct"].statistic == "fleiss" and rows["correct"].annotators == 3
    items = [[a, b, a] for a, b in zip(verdicts["ana"], verdicts["ben"], strict=True)]
    assert rows["correct"].kappa == pytest.approx(fleiss_kappa(items))
