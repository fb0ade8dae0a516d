"""BackgroundRecorder: producers never wait on the store, nothing is lost or reordered, and the closing
event is written before `record_now` returns."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from agent.events import EpisodeFinished, TextDelta
from traces import Recorder
from traces.background import BackgroundRecorder
from traces.errors import NotFoundError
from traces.queries import load_episode
from traces.replay import episode_events

from .helpers import synthetic_episode


def test_many_episodes_from_many_threads_are_all_recorded_in_order(store):
    background = BackgroundRecorder(Recorder(store))
    episodes = {f"e-{i}": synthetic_episode(f"e-{i}") for i in range(6)}

    def produce(events):
        for event in events[:-1]:
            background(event)
        background.record_now(events[-1])  # the closing event: written before this returns

    threads = [threading.Thread(target=produce, args=(events,)) for events in episodes.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for uid, events in episodes.items():
        assert load_episode(store, uid).summary.status == "answered"  # no wait needed after record_now
        stored = episode_events(store, uid)
        assert [e.type for e in stored if not isinstance(e, TextDelta)] == [
            e.type for e in events if not isinstance(e, TextDelta)
        ]
    background.close()


def _eventually(check, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return True
        except NotFoundError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_tokens_wait_for_the_next_other_event_instead_of_waking_the_writer(store):
    background = BackgroundRecorder(Recorder(store, flush_interval_s=0.0), delta_wait_s=30.0)
    events = synthetic_episode("e-tokens")
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    for event in events[:first_delta]:  # EpisodeStarted, TurnStarted: each wakes the writer
        background(event)
    assert _eventually(lambda: len(load_episode(store, "e-tokens").turns) == 1)
    background(events[first_delta])
    time.sleep(0.3)
    assert load_episode(store, "e-tokens").turns[0].raw_text == ""  # queued, not written: nobody woke the writer
    background(events[first_delta + 2])  # the turn's ActionParsed wakes it; the token goes first
    assert _eventually(lambda: load_episode(store, "e-tokens").turns[0].complete)
    background.close()


def test_a_failed_write_is_logged_and_later_events_still_land(store, caplog):
    background = BackgroundRecorder(Recorder(store))
    orphan = synthetic_episode("never-started")[3]  # an event whose episode the recorder never saw
    with caplog.at_level(logging.ERROR, logger="traces.background"):
        background(orphan)
        events = synthetic_episode("e-after")
        for event in events[:-1]:
            background(event)
        background.record_now(events[-1])
    assert "could not record" in caplog.text
    assert load_episode(store, "e-after").summary.status == "answered"
    background.close()


def test_record_now_raises_what_the_write_raised(store):
    background = BackgroundRecorder(Recorder(store))
    closing = next(e for e in synthetic_episode("never-started") if isinstance(e, EpisodeFinished))
    with pytest.raises(RuntimeError, match="never saw"):
        background.record_now(closing)
    background.close()


def test_close_writes_what_is_queued_and_marks_running_episodes_interrupted(store):
    background = BackgroundRecorder(Recorder(store), delta_wait_s=30.0)  # only close() can flush the tokens
    events = synthetic_episode("e-close")
    for event in events[:4]:
        background(event)
    background.close()
    detail = load_episode(store, "e-close")
    assert detail.summary.status == "interrupted"
    with pytest.raises(RuntimeError, match="closed"):
        background(events[4])
