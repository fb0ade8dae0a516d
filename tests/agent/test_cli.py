"""`python -m agent` as a user runs it: tiny checkpoints, an episode with --json, clear input errors."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from agent.__main__ import main
from tests.conftest import REPO
from tests.servers.chat_completions import scripted_chat_server
from traces.queries import list_episodes, list_runs, load_episode


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_tiny_then_ask_runs_a_full_episode_on_a_real_fvqa_image(tmp_path, fvqa_sample):
    import pandas as pd

    image_path = tmp_path / "q.jpg"
    row = pd.read_parquet(fvqa_sample).iloc[0]
    image_path.write_bytes(row["images"][0]["bytes"])
    question = row["prompt"][0]["content"]

    made = _run("tiny", str(tmp_path / "t"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "t" / "vlm" / "config.json").exists() and (tmp_path / "t" / "grounding" / "config.json").exists()

    asked = _run(
        "ask",
        "--model",
        str(tmp_path / "t" / "vlm"),
        "--grounding-model",
        str(tmp_path / "t" / "grounding"),
        "--image",
        str(image_path),
        "--question",
        question,
        "--json",
        "--max-turn-tokens",
        "24",
        "--tool-cache",
        "",
    )
    assert asked.returncode == 0, asked.stderr
    events = [json.loads(line) for line in asked.stdout.splitlines()]
    assert events[0]["type"] == "episode_started" and events[0]["question"] == question
    assert events[0]["image"]["width"] > 0 and "png_base64" not in events[0]["image"]
    assert events[-1]["type"] == "episode_finished"
    assert events[-1]["response_tokens"] > 0


def _ask_scripted(base_url: str, question: str, *more: str) -> list[str]:
    """`ask` against a scripted endpoint, with no tool cache and no grounding."""
    return [
        "ask",
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--model",
        "scripted-model",
        "--question",
        question,
        "--tool-cache",
        "",
        "--grounding-model",
        "off",
        *more,
    ]


def test_ask_against_an_openai_endpoint_prints_the_answer(tmp_path, capsys):
    image = tmp_path / "red.png"
    Image.new("RGB", (64, 48), "red").save(image)
    turns = ["<reason>It is plainly red.</reason><answer>red</answer>"]
    with scripted_chat_server(turns) as server:
        code = main(_ask_scripted(server.base_url, "What colour?", "--image", str(image)))
    out = capsys.readouterr().out
    assert code == 0
    assert "ANSWER: red" in out and "finished: answered" in out


def test_missing_image_is_a_one_line_error(tmp_path, capsys):
    code = main(["ask", "--image", str(tmp_path / "nope.jpg"), "--question", "q", "--tool-cache", ""])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "no such file" in err and "Traceback" not in err


def test_not_an_image_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_text("hello")
    assert main(["ask", "--image", str(bad), "--question", "q", "--tool-cache", ""]) == 2
    assert "not an image" in capsys.readouterr().err


def test_dead_endpoint_exits_non_zero_with_the_endpoint_named(tmp_path, capsys):
    code = main(
        [
            "ask",
            "--backend",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--question",
            "q",
            "--tool-cache",
            "",
            "--grounding-model",
            "off",
            "--json",
        ]
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 1
    error = next(e for e in lines if e["type"] == "model_error")
    assert error["endpoint"] == "http://127.0.0.1:9/v1/chat/completions"
    assert lines[-1]["status"] == "error"


def test_ask_with_db_records_each_call_in_one_run_per_model_for_traces_stats(tmp_path, capsys):
    from traces import open_store
    from traces.cli import main as traces_main

    db = tmp_path / "traces.db"
    turns = [
        "<reason>Check the web.</reason><text_search>red colour</text_search>",
        "<reason>Known.</reason><answer>red</answer>",
    ]
    with scripted_chat_server(turns) as server:
        codes = [
            main(_ask_scripted(server.base_url, "What colour?", "--db", str(db)))
            for _ in range(2)  # two separate CLI calls into one store
        ]
    assert codes == [0, 0]
    store = open_store(str(db))
    page = list_episodes(store, limit=10)
    assert len(page.items) == 2
    detail = load_episode(store, page.items[0].id)
    assert detail.summary.final_answer == "red" and detail.summary.status == "answered" and len(detail.turns) == 2
    assert [(r.name, r.episodes) for r in list_runs(store)] == [("demo scripted-model (openai, deepmmsearch)", 2)]
    capsys.readouterr()
    assert traces_main(["stats", "--db", str(db)]) == 0
    assert "scripted-model" in capsys.readouterr().out


def test_a_turn_of_thousands_of_newlines_prints_one_line_not_a_screenful(tmp_path, capsys):
    flood = "\n" * 5000
    turns = [f"<reason>{flood}</reason>" + "!" * 3000, "<reason>Fine.</reason><answer>red</answer>"]
    with scripted_chat_server(turns) as server:
        code = main(_ask_scripted(server.base_url, "What colour?"))
    out = capsys.readouterr().out
    assert code == 0 and "ANSWER: red" in out
    assert "<reason>⏎ ×5000\n</reason>! ×3000" in out  # the same collapsing as the app's raw-text view
    assert len(out.splitlines()) < 40 and len(out) < 3000
