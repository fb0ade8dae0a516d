"""`python -m traces list`, shortened episode ids, and output piped into a reader that stops early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from traces import AmbiguousIdError, NotFoundError, Recorder, open_store
from traces.annotations import annotate, list_annotations
from traces.cli import main
from traces.queries import resolve_episode_id
from traces.verdicts import set_judgement

from .helpers import synthetic_episode

REPO = Path(__file__).resolve().parents[2]


def _record(store, *episode_ids, question="Who built this tower?", run_name=None):
    recorder = Recorder(store, run_kind="demo", run_name=run_name)
    for eid in episode_ids:
        for event in synthetic_episode(eid, question=question):
            recorder(event)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.db"
    store = open_store(path)
    _record(store, "aaaa1111", "aaaa2222", "bbbb3333", run_name="first")
    _record(store, "cccc4444", question="Which cathedral is this?", run_name="second")
    set_judgement(store, "aaaa1111", "correct", "", "rule")
    set_judgement(store, "bbbb3333", "incorrect", "", "rule")
    annotate(store, "aaaa2222", "ana", approved=True)
    store.close()
    return str(path)


def _ids(capsys, *args) -> list[str]:
    assert main(["list", *args]) == 0
    return [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]


def test_list_shows_ids_newest_first_with_a_count(db, capsys):
    assert main(["list", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["id", "run", "status"]
    assert [line.split()[0] for line in lines[1:-1]] == ["cccc4444", "bbbb3333", "aaaa2222", "aaaa1111"]
    assert "Which cathedral is this?" in lines[1]
    assert lines[-1] == "4 episodes match"


def test_list_filters_like_the_traces_tab(db, capsys):
    # A fresh file: runs "first" and "second" are runs 1 and 2.
    assert _ids(capsys, "--db", db, "--json", "--run", "1") == ["bbbb3333", "aaaa2222", "aaaa1111"]
    assert _ids(capsys, "--db", db, "--json", "--run", "2") == ["cccc4444"]
    assert _ids(capsys, "--db", db, "--json", "--verdict", "correct") == ["aaaa1111"]
    assert _ids(capsys, "--db", db, "--json", "--verdict", "incorrect") == ["bbbb3333"]
    assert _ids(capsys, "--db", db, "--json", "--verdict", "unjudged") == ["cccc4444", "aaaa2222"]
    assert _ids(capsys, "--db", db, "--json", "--review", "approved") == ["aaaa2222"]
    assert _ids(capsys, "--db", db, "--json", "--text", "cathedral") == ["cccc4444"]
    assert _ids(capsys, "--db", db, "--json", "--status", "answered", "--limit", "2") == ["cccc4444", "bbbb3333"]
    assert _ids(capsys, "--db", db, "--json", "--model", "no-such-model") == []
    assert _ids(capsys, "--db", db, "--json", "--oldest-first", "--limit", "1") == ["aaaa1111"]


def _raw_json(capsys, db, *args) -> list[str]:
    assert main(["list", "--db", db, "--json", *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_list_json_rows_are_whole_summaries(db, capsys):
    row = json.loads(_raw_json(capsys, db, "--review", "approved")[0])
    assert row["id"] == "aaaa2222" and row["review_state"] == "approved" and row["pattern"] == "mixed"
    assert row["question"] == "Who built this tower?" and row["final_answer"] == "Gustave Eiffel"


def test_list_says_how_many_match_beyond_the_limit(db, capsys):
    assert main(["list", "--db", db, "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 episodes match; showing the first 1 (--limit for more)"
    assert main(["list", "--db", db, "--text", "cathedral"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 episode matches"
    assert main(["list", "--db", db, "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


def test_annotate_takes_an_unambiguous_prefix_of_an_episode_id(db, capsys):
    assert main(["annotate", "bbbb", "--db", db, "--annotator", "ben", "--comment", "wrong tower"]) == 0
    assert json.loads(capsys.readouterr().out)["episode_id"] == "bbbb3333"
    store = open_store(db)
    assert [a.comment for a in list_annotations(store, "bbbb3333")] == ["wrong tower"]
    store.close()


def test_ambiguous_or_unknown_short_ids_are_refused_with_what_to_do(db, capsys):
    assert main(["annotate", "aaaa", "--db", db, "--annotator", "ben", "--comment", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "aaaa1111" in err and "aaaa2222" in err and "more characters" in err
    assert main(["annotate", "dddd", "--db", db, "--annotator", "ben", "--comment", "x"]) == 2
    assert "no episode id starts with 'dddd'" in capsys.readouterr().err
    assert main(["annotate", "bb", "--db", db, "--annotator", "ben", "--comment", "x"]) == 2
    assert "at least 4 characters" in capsys.readouterr().err
    store = open_store(db)
    assert list_annotations(store, "aaaa1111") == [] and list_annotations(store, "bbbb3333") == []  # nothing written
    store.close()


def test_resolve_episode_id_on_every_database(store):
    _record(store, "abcd_1", "abcdx2", "abc%d3")
    assert resolve_episode_id(store, "abcd_1") == "abcd_1"  # a whole id, even when a prefix of another
    assert resolve_episode_id(store, "abcd_") == "abcd_1"  # `_` is a character here, not LIKE's wildcard
    assert resolve_episode_id(store, "abc%") == "abc%d3"  # and `%` too
    with pytest.raises(AmbiguousIdError, match="give more characters"):
        resolve_episode_id(store, "abcd")
    with pytest.raises(NotFoundError, match="no episode id starts with"):
        resolve_episode_id(store, "ABCD_")  # ids are case-sensitive on every database


@pytest.mark.parametrize(
    "command",
    [["list"], ["stats"], ["stats", "--json"], ["labels"], ["annotate", "aaaa1111", "--annotator", "ana"]],
    ids=lambda c: " ".join(c),
)
def test_output_into_a_closed_pipe_ends_quietly(db, command):
    # `python -m traces list | head -1` where head has already gone: the reading end is closed before the
    # command writes anything, so its first write fails (deterministically, unlike racing a real `head`).
    proc = subprocess.Popen(
        [sys.executable, "-m", "traces", *command, "--db", db],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""
