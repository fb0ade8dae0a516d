"""`python -m traces stats|import|export|annotate|labels`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from traces import Recorder, open_store
from traces.cli import main

from .conftest import fvqa_sample
from .helpers import fvqa_row, synthetic_episode

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


def _question_set(path: Path, rows: int = 3) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([fvqa_row(i) for i in range(rows)]), path)
    return path


def test_importing_the_same_file_twice_says_so_and_again_imports_a_copy(tmp_path, capsys):
    db, path = str(tmp_path / "t.db"), str(_question_set(tmp_path / "q.parquet"))
    assert main(["import", "fvqa", path, "--db", db, "--no-progress"]) == 0
    assert "imported 3 of 3 rows into run 1" in capsys.readouterr().out
    assert main(["import", "fvqa", path, "--db", db, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "already imported as run 1 ('q')" in out and "nothing written" in out and "--again" in out
    assert main(["import", "fvqa", path, "--db", db, "--no-progress", "--again"]) == 0
    assert "imported 3 of 3 rows into run 2" in capsys.readouterr().out
    assert main(["import", "fvqa", path, "--db", db, "--reward-columns", "a"]) == 2
    assert "apply to trl imports only" in capsys.readouterr().err


def test_trl_reward_columns_flag_takes_a_comma_separated_list(tmp_path, capsys):
    import pandas as pd

    (tmp_path / "completions").mkdir()
    pd.DataFrame(
        {
            "step": [1],
            "prompt": ["Which city is this?"],
            "completion": ["<reason>ok</reason><answer>Chicago</answer>"],
            "judge": [1.0],
            "fmt": [0.5],
            "note": ["from log_extra"],
            "advantage": [0.0],
        }
    ).to_parquet(tmp_path / "completions" / "completions_00001.parquet")
    db = str(tmp_path / "t.db")
    args = [
        "import",
        "trl",
        str(tmp_path / "completions"),
        "--db",
        db,
        "--no-progress",
        "--reward-columns",
        "judge,fmt",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reward columns: judge, fmt" in out and "kept as extras: note" in out


def test_export_sft_writes_the_named_file_and_says_why_each_episode_was_skipped(tmp_path, capsys):
    db = str(tmp_path / "t.db")
    store = open_store(db)
    rec = Recorder(store)
    for e in synthetic_episode("good"):
        rec(e)
    for e in synthetic_episode("cut")[:6]:
        rec(e)
    rec.close()
    store.close()
    for episode in ("good", "cut"):
        assert main(["annotate", episode, "--db", db, "--annotator", "ana", "--approve"]) == 0
    capsys.readouterr()
    out = tmp_path / "out.jsonl"
    assert main(["export", "sft", str(out), "--db", db, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and (tmp_path / "out_images").is_dir()
    assert len(out.read_text().splitlines()) == 1 and json.loads(out.read_text())["episode_id"] == "good"
    assert "wrote 1 SFT rows" in printed and "assistant_only_loss=True" in printed
    assert "skipped cut: ended interrupted without an answer, and no annotator gave a corrected answer" in printed
    assert main(["export", "sft", str(out), "--db", db, "--no-progress"]) == 2  # never overwritten by accident
    assert "--overwrite" in capsys.readouterr().err
