"""`python -m traces stats|import|export|annotate|labels`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from traces import Recorder, open_store
from traces.cli import main

from .conftest import fvqa_sample
from .helpers import synthetic_episode

REPO = Path(__file__).resolve().parents[2]


def test_recorded_episode_shows_in_stats(tmp_path, capsys):
    db = tmp_path / "t.db"
    store = open_store(db)
    rec = Recorder(store, run_kind="demo", run_name="cli demo")
    for e in synthetic_episode("e1"):
        rec(e)
    store.close()
    assert main(["stats", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "cli demo" in out and "answered 1" in out
    assert main(["stats", "--db", str(db), "--json"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["stats"]["tool_usage"]["crop_search"] == 1.0


def test_import_annotate_export_round_trip(tmp_path, capsys):
    db = str(tmp_path / "t.db")
    assert main(["import", "fvqa", str(fvqa_sample()), "--db", db, "--no-progress"]) == 0
    assert "imported 5 of 5" in capsys.readouterr().out
    store = open_store(db)
    rec = Recorder(store)
    for e in synthetic_episode("e1"):
        rec(e)
    store.close()
    assert (
        main(
            [
                "annotate",
                "e1",
                "--db",
                db,
                "--annotator",
                "ana",
                "--approve",
                "--correct",
                "yes",
                "--label",
                "good_trajectory",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["approved"] is True
    assert (
        main(
            [
                "export",
                "sft",
                str(tmp_path / "out"),
                "--db",
                db,
                "--format",
                "parquet",
                "--images",
                "embedded",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "wrote 1 SFT rows" in capsys.readouterr().out
    assert main(["export", "annotations", str(tmp_path / "ann.jsonl"), "--db", db]) == 0
    assert (tmp_path / "ann_agreement.jsonl").exists()
    assert main(["labels", "--db", db, "--name", "mine", "--set", "a", "b"]) == 0
    assert "mine: a, b" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert main(["stats", "--db", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "left untouched" in err and bad.read_text() == "hello"


def test_module_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "traces", "stats", "--db", str(tmp_path / "n.db")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "0 runs, 0 episodes" in result.stdout
