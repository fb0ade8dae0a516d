"""Concurrency and crash safety: 20 recording threads lose nothing; a SIGKILLed recorder leaves a sound file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from traces import Recorder, open_store
from traces.queries import count_episodes, load_episode
from traces.replay import episode_events

from .helpers import synthetic_episode

REPO = Path(__file__).resolve().parents[2]


def test_twenty_threads_record_at_once_without_losing_an_event(store):
    recorder = Recorder(store)
    per_thread = 3
    errors: list[BaseException] = []
    streams = [[synthetic_episode(f"t{t}-e{i}", turns=4) for i in range(per_thread)] for t in range(20)]
    barrier = threading.Barrier(20)

    def work(episodes):
        try:
            barrier.wait()
            for events in episodes:
                for event in events:
                    recorder(event)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.read() as conn:
        count = lambda sql: conn.exec_driver_sql(sql).scalar()  # noqa: E731
        assert count("SELECT COUNT(*) FROM episodes WHERE status = 'answered'") == 60
        assert count("SELECT COUNT(*) FROM turns WHERE complete") == 60 * 4
        assert count("SELECT COUNT(*) FROM tool_calls WHERE status = 'finished'") == 60 * 3
        assert count("SELECT COUNT(*) FROM events") == 60  # one Answer each


def test_several_processes_write_one_file_without_database_is_locked(tmp_path):
    db = tmp_path / "shared.db"
    open_store(db).close()
    script = (
        "import sys; sys.path.insert(0, '.');"
        "from traces import open_store, Recorder; from tests.traces.helpers import synthetic_episode;"
        "s = open_store(sys.argv[1]); r = Recorder(s);"
        "[r(e) for i in range(15) for e in synthetic_episode(f'{sys.argv[2]}-{i}')]; print('ok')"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(db), f"p{n}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    store = open_store(db)
    assert count_episodes(store) == 45
    store.close()


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, '.')
from traces import open_store, Recorder
from tests.traces.helpers import synthetic_episode
store = open_store(sys.argv[1])
recorder = Recorder(store)
events = synthetic_episode('victim', turns=6)
for n, event in enumerate(events[:-3]):   # stop mid-episode: before the final answer
    recorder(event)
    print(n, event.type, flush=True)      # printed only after the event is committed
time.sleep(60)
"""


def test_sigkill_mid_episode_keeps_committed_events_and_marks_interrupted(tmp_path):
    db = tmp_path / "kill.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = []
    for line in proc.stdout:
        committed.append(line.split())
        if len(committed) == len(synthetic_episode("x", turns=6)) - 3:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

    store = open_store(db)  # recovery sees the dead writer
    detail = load_episode(store, "victim")
    assert detail.summary.status == "interrupted"
    assert len(detail.turns) == 6  # every TurnStarted that was committed
    assert sum(len(t.tool_calls) for t in detail.turns) == 5
    assert [t.complete for t in detail.turns] == [True] * 5 + [False]
    replay = episode_events(store, "victim")
    assert replay[-1].type == "episode_finished" and replay[-1].status == "interrupted"
    store.close()
