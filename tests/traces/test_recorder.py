"""Recorder: the real agent loop's events land in the store and come back as the same event objects."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from agent.events import EpisodeStarted, TextDelta, TurnStarted, event_to_dict
from agent.loop import run_episode
from traces import Recorder, open_store
from traces.queries import list_runs, load_episode
from traces.replay import episode_events

from .helpers import CROP_THEN_TEXT_THEN_ANSWER, ScriptedModel, make_image, synthetic_episode, toolbox


def _merge_deltas(events):
    """Live streams many TextDeltas per turn; the store gives one with the whole text."""
    out, buffer = [], {}
    for e in events:
        if isinstance(e, TextDelta):
            buffer[e.turn_index] = buffer.get(e.turn_index, "") + e.text
            continue
        if e.type == "action_parsed" and e.turn_index in buffer:
            out.append(TextDelta(e.episode_id, e.turn_index, buffer.pop(e.turn_index)))
        out.append(e)
    return out


def _comparable(events):
    return [event_to_dict(e, embed_images=True) for e in events]


def test_real_loop_episode_is_recorded_and_replays_as_the_same_events(store):
    recorder = Recorder(store, run_kind="eval", run_name="loop test")
    live = list(
        run_episode(
            "Who built this tower?",
            make_image(),
            ScriptedModel(CROP_THEN_TEXT_THEN_ANSWER),
            toolbox(),
            on_event=recorder,
            gold_answers=["Gustave Eiffel"],
        )
    )
    eid = live[0].episode_id
    stored = episode_events(store, eid)
    assert _comparable(stored) == _comparable(_merge_deltas(live))

    detail = load_episode(store, eid)
    assert detail.summary.status == "answered" and detail.summary.final_answer == "Gustave Eiffel"
    assert [t.action for t in detail.turns] == ["image_search_region", "text_search", "answer"]
    crop_call = detail.turns[0].tool_calls[0]
    assert crop_call.crop_box == (5, 6, 50, 40)
    assert crop_call.crop_image().size == (45, 34)
    assert detail.image().size == (96, 64)
    assert detail.run.name == "loop test" and detail.run.kind == "eval"
    assert (detail.summary.n_crop, detail.summary.n_text, detail.summary.n_whole) == (1, 1, 0)
    assert detail.self_corrected is False  # one text search after an image search is not a correction
    assert detail.gold_answers == ["Gustave Eiffel"]


def test_every_event_is_committed_before_the_call_returns(store):
    recorder = Recorder(store)
    events = synthetic_episode("e-commit")
    for i, event in enumerate(events):
        recorder(event)
        if isinstance(event, TurnStarted):
            # another connection sees the turn row at once
            assert len(load_episode(store, "e-commit").turns) == event.turn_index + 1
        if i == 0:
            assert load_episode(store, "e-commit").summary.status == "running"
    assert load_episode(store, "e-commit").summary.status == "answered"


def test_streamed_text_is_flushed_periodically(store):
    recorder = Recorder(store, flush_interval_s=0.05)
    start = synthetic_episode("e-stream")[0]
    recorder(start)
    recorder(TurnStarted("e-stream", 0))
    recorder(TextDelta("e-stream", 0, "<reason>partial "))
    time.sleep(0.06)
    recorder(TextDelta("e-stream", 0, "thought"))
    turn = load_episode(store, "e-stream").turns[0]
    assert turn.raw_text == "<reason>partial thought" and not turn.complete


def test_close_marks_unfinished_episodes_interrupted_and_replays_them(store):
    recorder = Recorder(store)
    for event in synthetic_episode("e-cut")[:6]:
        recorder(event)
    recorder.close()
    events = episode_events(store, "e-cut")
    assert events[-1].type == "episode_finished" and events[-1].status == "interrupted"
    assert isinstance(events[0], EpisodeStarted)


def test_dead_writer_episodes_are_recovered_as_interrupted(store):
    recorder = Recorder(store)
    recorder.writer = f"{recorder.writer.split(':')[0]}:999999999:1"  # a pid that cannot exist
    for event in synthetic_episode("e-dead")[:4]:
        recorder(event)
    assert store.recover_interrupted() == 1
    summary = load_episode(store, "e-dead")
    assert summary.summary.status == "interrupted" and "999999999" in summary.reason


def test_event_for_unknown_episode_raises_in_strict_mode_and_is_logged_otherwise(store):
    with pytest.raises(RuntimeError, match="never saw"):
        Recorder(store)(TurnStarted("nope", 0))
    lenient = Recorder(store, strict=False)
    lenient(TurnStarted("nope", 0))
    assert lenient.errors and "never saw" in lenient.errors[0]


def test_cancelled_episode_keeps_its_partial_turn(store):
    import threading

    cancel = threading.Event()
    recorder = Recorder(store, flush_interval_s=0.0)
    model = ScriptedModel(["<reason>" + "thinking " * 20])
    events = []
    for event in run_episode("q?", make_image(), model, toolbox(), cancel=cancel, on_event=recorder):
        events.append(event)
        if isinstance(event, TextDelta) and len(events) > 5:
            cancel.set()
    detail = load_episode(store, events[0].episode_id)
    assert detail.summary.status == "cancelled"
    assert detail.turns[0].raw_text.startswith("<reason>thinking") and not detail.turns[0].complete


def _record(recorder, episode_id, **started_changes):
    events = synthetic_episode(episode_id)
    events[0] = dataclasses.replace(events[0], **started_changes)
    for event in events:
        recorder(event)


def test_recorders_in_separate_calls_share_one_run_per_kind_name_model_backend_and_dialect(store):
    # Each Recorder stands for one CLI call (`python -m agent ask --db F`): a new process, a new recorder.
    _record(Recorder(store, run_kind="demo"), "first")
    _record(Recorder(store, run_kind="demo"), "second")
    _record(Recorder(store, run_kind="demo"), "other-dialect", dialect="mmsearch-r1")
    _record(Recorder(store, run_kind="demo"), "other-backend", backend="openai")
    _record(Recorder(store, run_kind="demo", run_name="named"), "named-1")
    _record(Recorder(store, run_kind="demo", run_name="named"), "named-2")
    _record(Recorder(store, run_kind="eval", run_name="named"), "named-eval")
    runs = {(r.kind, r.name): r.episodes for r in list_runs(store)}
    assert runs == {
        ("demo", "demo scripted-vlm (transformers, deepmmsearch)"): 2,
        ("demo", "demo scripted-vlm (transformers, mmsearch-r1)"): 1,
        ("demo", "demo scripted-vlm (openai, deepmmsearch)"): 1,
        ("demo", "named"): 2,
        ("eval", "named"): 1,
    }


def test_recording_run_is_created_once_when_processes_race(db_url):
    # Separate stores (own engines and connections), as separate processes have: without the find-or-create
    # being atomic, several would miss the run and each create one.
    stores = [open_store(db_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    found: list[int] = []

    def find(store):
        barrier.wait()
        found.append(store.recording_run("race", "demo", model="m", backend="b", dialect="d"))

    threads = [threading.Thread(target=find, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(found)) == 1 and len(found) == len(stores)
    assert [r.name for r in list_runs(stores[0])] == ["race"]
    for s in stores:
        s.close()
