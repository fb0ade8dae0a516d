"""The Traces tab's callbacks over a real trace store: an imported question opens as pending with its gold
answers (no clock, no "Working…"); a running episode opens live (its timer on) and a tick shows it finished
(timer off); the count line says "1 episode matches"."""

import gradio as gr
import pyarrow as pa
import pyarrow.parquet as pq

from agent.events import EpisodeFinished, EpisodeStarted, TextDelta, TurnStarted
from tests.traces.helpers import fvqa_row
from traces.importers.fvqa import import_fvqa
from traces.queries import list_episodes
from traces.recorder import Recorder
from traces.store import open_store
from ui.settings import app_config_from_args, build_parser
from ui.traces_tab import build_traces_tab

ANSWER, COUNTERS = 4, 5  # in what opening sets: current, timer, header, then the panel (chat, answer, counters, ...)


def _tab(store):
    app = app_config_from_args(build_parser().parse_args(["--examples", "none"]))
    with gr.Blocks():
        return build_traces_tab(app, store, ("good", "bad"))


def test_an_imported_question_opens_as_pending_with_its_gold_answers(tmp_path):
    store = open_store(tmp_path / "t.db")
    path = tmp_path / "set.parquet"
    pq.write_table(pa.Table.from_pylist([fvqa_row(1)]), path)
    import_fvqa(store, path)
    tab = _tab(store)
    open_requested, _, _ = tab["open"]
    episode_id = list_episodes(store).items[0].id
    opened = open_requested(episode_id, None, None)
    assert opened[1].active is False  # nothing to refresh
    assert "status **pending**" in opened[2]
    answer = opened[ANSWER]
    assert "Not run yet · status pending" in answer and "Gold: answer 1 | alias 1" in answer and "Working" not in answer
    assert "Not run yet" in opened[COUNTERS] and "elapsed" not in opened[COUNTERS]
    refresh, filters, _ = tab["refresh"]
    rows, _ids, count, *_ = refresh("", "pending", "any", "any", "any", "any")
    assert count == "1 episode matches" and rows[0][2] == "pending"


def test_a_running_episode_opens_live_and_a_tick_shows_it_finished(tmp_path):
    store = open_store(tmp_path / "t.db")
    record = Recorder(store, run_kind="demo", run_name="app", flush_interval_s=0)
    record(EpisodeStarted("live-1", "Still going?", None, None, "m", "openai", "deepmmsearch", {}, started_at=1.0))
    record(TurnStarted("live-1", 0))
    record(TextDelta("live-1", 0, "thinking so far"))
    tab = _tab(store)
    open_requested, _, _ = tab["open"]
    opened = open_requested("live-1", None, None)
    assert opened[1].active is True and "status **running** (live" in opened[2]
    assert "Running · status running" in opened[ANSWER]
    refresh_running, _timer = tab["live"]
    record(EpisodeFinished("live-1", "answered", "yes", 1, 0, 3, 2.0, True))
    ticked = refresh_running("live-1")
    assert ticked[0].active is False and "Final answer" in ticked[3] and "yes" in ticked[3]
    record.close()
