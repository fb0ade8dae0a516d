"""The Train and Compare tabs through gradio_client against the running app (python app.py): launch, list and
cancel jobs (one launched by the app, one started outside it, as after a restart), bad input that starts
nothing, and the comparison of two eval runs."""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from pathlib import Path

import pytest
from gradio_client import Client

from ui.train_form import form_fields

KEYS = ["kind", "allow_cpu"] + [f.key for f in form_fields()]


@pytest.fixture(scope="module")
def client(stack):
    return Client(stack.url, auth=stack.auth, verbose=False)


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    from tests.training.helpers import write_sft_file

    return write_sft_file(tmp_path_factory.mktemp("sft-data"), episodes=4)


def launch_args(client, **values) -> list:
    """/train_launch's inputs by form key (kind, allow_cpu, then every field), defaults elsewhere."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/train_launch"]["parameters"]
    assert len(params) == len(KEYS)
    args = [p.get("parameter_default") for p in params]
    for key, value in values.items():
        args[KEYS.index(key.replace("__", "."))] = value
    return args


def sft_args(client, model, data, out, steps: int) -> list:
    return launch_args(
        client,
        kind="sft",
        sft__model=str(model),
        sft__data=str(data),
        sft__output_dir=str(out),
        sft__max_steps=str(steps),
        sft__gradient_accumulation_steps="1",
        sft__max_length="2048",
        sft__gradient_checkpointing=False,
        sft__save_steps="1000",
    )


def job_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from jobs").fetchone()[0]


def jobs(client) -> list[list]:
    return client.predict(api_name="/train_jobs")[0]["data"]


def wait_for(client, job_id: int, statuses: tuple[str, ...], timeout_s: float = 120) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = next((r for r in jobs(client) if r[0] == job_id), None)
        if row and any(s in row[3] for s in statuses):
            return row
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never reached {statuses}: {row}")


def test_bad_input_gets_a_message_beside_the_form_and_starts_nothing(client, stack, tiny_vlm_dir, sft_data, tmp_path):
    before = job_count(stack.db)
    cases = [
        (dict(sft__model=""), "--model is required"),
        (dict(sft__model=str(tmp_path / "missing")), "neither a local folder nor a hub id"),
        (dict(sft__data=str(tmp_path / "none.jsonl")), "does not exist"),
        (dict(sft__learning_rate="-1"), "--learning-rate must be above 0, not -1"),
        (dict(sft__model="Qwen/Qwen2.5-VL-7B-Instruct"), "needs a GPU"),
    ]
    for change, expected in cases:
        args = sft_args(client, tiny_vlm_dir, sft_data, tmp_path / "out", 3)
        for key, value in change.items():
            args[KEYS.index(key.replace("__", "."))] = value
        message, _command = client.predict(*args, api_name="/train_launch")
        assert message.startswith("⚠") and expected in message.replace("\\", ""), (expected, message)
    assert job_count(stack.db) == before


def test_preview_shows_the_exact_command(client, tiny_vlm_dir, sft_data, tmp_path):
    command, message = client.predict(
        *sft_args(client, tiny_vlm_dir, sft_data, tmp_path / "o", 3), api_name="/train_preview"
    )
    assert message == ""
    assert command.startswith(f"python -m training sft --model {tiny_vlm_dir} --data {sft_data}")
    assert "--max-steps 3" in command and command.endswith(f"--db {Path(command.split('--db ')[1])}")


def test_a_launched_job_is_listed_with_who_launched_it_and_cancels(client, stack, tiny_vlm_dir, sft_data, tmp_path):
    message, command = client.predict(
        *sft_args(client, tiny_vlm_dir, sft_data, tmp_path / "long", 400), api_name="/train_launch"
    )
    assert message.startswith("✓ Started job"), message
    job_id = int(message.split("job ")[1].split(".")[0])
    row = next(r for r in jobs(client) if r[0] == job_id)
    assert row[1] == "sft" and row[8] == "alice"
    out = client.predict(api_name="/train_cancel")  # the session's selected job is the one it launched
    assert f"job {job_id}" in out[0].lower()
    row = wait_for(client, job_id, ("cancelled",), timeout_s=150)
    assert "cancelled" in row[3]


def test_a_job_started_outside_the_app_is_shown_and_cancelled_at_the_end_of_a_step(
    client, stack, tiny_vlm_dir, sft_data, tmp_path
):
    """As after a restart: the job is not the app's child; the app finds it in the store and stops it."""
    from traces.store import open_store
    from training import runner
    from training.config import LaunchSettings, SFTSettings

    settings = SFTSettings(
        model=str(tiny_vlm_dir),
        data=str(sft_data),
        output_dir=str(tmp_path / "outside"),
        max_steps=400,
        gradient_accumulation_steps=1,
        max_length=2048,
        gradient_checkpointing=False,
        save_steps=1000,
    )
    with open_store(stack.db) as store:
        job_id = runner.launch(
            "sft", [settings], LaunchSettings(db=str(stack.db), log_dir=str(tmp_path / "logs")), store=store
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until it has trained a step: the stop then comes at a step's end
        row = next(r for r in jobs(client) if r[0] == job_id)
        if "running" in row[3] and not row[4].startswith("0/"):
            break
        time.sleep(0.5)
    shown = client.predict(job_id, api_name="/train_select")
    assert f"**Job {job_id}**" in shown[0]
    client.predict(api_name="/train_cancel")
    row = wait_for(client, job_id, ("cancelled",), timeout_s=150)
    step = int(row[4].split("/")[0])
    assert 0 < step < 400
    header, chart, log = client.predict(job_id, api_name="/train_select")  # buttons carry no API value
    assert "Status **cancelled**" in header
    assert "Loss" in [a["text"] for a in json.loads(chart["plot"])["layout"]["annotations"]]
    assert "stop requested" in log  # the log's tail


def test_compare_two_eval_runs(client, stack):
    from tests.ui.eval_fixtures import record_eval_run
    from traces.store import open_store

    with open_store(stack.db) as store:
        a = record_eval_run(store, "client direct", "direct", 8)
        b = record_eval_run(store, "client searcher", "searcher", 8)
    choices = client.predict([], None, None, api_name="/compare_choices")
    default = choices[0]["value"]
    assert [int(c.split(" ")[0]) for c in default] == [a, b]  # the two most recent eval runs, older first
    out = client.predict(default, None, None, api_name="/compare")
    accuracy, tools, behaviour, summary, notes, pair, flips, csv_file = out
    assert json.loads(accuracy["plot"])["data"][0]["error_y"]["visible"] is True
    assert len(json.loads(tools["plot"])["data"]) == 2
    assert [r[0] for r in summary["data"]] == [f"#{a} client direct", f"#{b} client searcher"]
    assert "McNemar p = **1**" in pair and len(flips["data"]) == 3
    rows = list(csv.reader(open(csv_file["value"] if isinstance(csv_file, dict) else csv_file)))
    assert len(rows) == 9 and rows[0][0] == "item_key"
    bad = client.predict(["not a run"], None, None, api_name="/compare")
    assert "pick one from the list" in bad[4]


def test_an_eval_job_launched_from_the_tab_reports_accuracy_so_far(client, stack, tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), "blue").save(tmp_path / "bridge.png")
    data = tmp_path / "bridges.jsonl"
    rows = [{"question": f"When did bridge {n} open?", "image": "bridge.png", "answers": ["1937"]} for n in range(2)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = launch_args(
        client,
        kind="eval",
        eval__data=str(data),
        eval__run_name="eval from the train tab",
        judge__judge="rule",
        tools__text_search="off",
        tools__image_search="off",
        tools__grounding_model="off",
        tools__summariser="none",
    )  # the model section starts from the app's own: the scripted endpoint
    command, _ = client.predict(*args, api_name="/train_preview")
    assert command.startswith("python -m agent eval --data") and "--run-name 'eval from the train tab'" in command
    message, _ = client.predict(*args, api_name="/train_launch")
    assert message.startswith("✓ Started job"), message
    job_id = int(message.split("job ")[1].split(".")[0])
    row = wait_for(client, job_id, ("succeeded", "failed", "interrupted"), timeout_s=120)
    header, chart, log = client.predict(job_id, api_name="/train_select")
    assert "succeeded" in row[3] and row[4] == "2/2 (100%)", (header, log[-2000:])
    assert "Accuracy so far" in [a["text"] for a in json.loads(chart["plot"])["layout"]["annotations"]]
    choices = client.predict([], None, None, api_name="/compare_choices")[0]["choices"]
    assert any("eval from the train tab (eval, 2 episodes)" in c[0] for c in choices)


def test_a_failed_job_shows_its_status_error_and_log(client, stack, tiny_vlm_dir, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{this is not json\n")
    message, _ = client.predict(*sft_args(client, tiny_vlm_dir, broken, tmp_path / "o", 3), api_name="/train_launch")
    job_id = int(message.split("job ")[1].split(".")[0])
    row = wait_for(client, job_id, ("failed", "succeeded", "interrupted"), timeout_s=120)
    header, _chart, log = client.predict(job_id, api_name="/train_select")
    assert "failed" in row[3] and "Status **failed**" in header and "**Error:**" in header
    assert "broken.jsonl" in header.replace("\\", "")  # the one-line reason names the file
    assert "error: " in log  # and the log's tail has it with the traceback


def test_a_locked_app_launches_for_its_admins_only(tmp_path_factory, tiny_vlm_dir, sft_data, tmp_path):
    from tests.ui.stack import app_stack

    extra = ["--lock-settings", "--admin", "alice"]
    with app_stack(tmp_path_factory.mktemp("locked-train"), auth="alice:a,bob:b", extra=extra) as locked:
        bob = Client(locked.url, auth=("bob", "b"), verbose=False)
        message, _ = bob.predict(*sft_args(bob, tiny_vlm_dir, sft_data, tmp_path / "o", 3), api_name="/train_launch")
        assert "**bob** is not an admin" in message and "read-only" in message
        assert "not an admin" in bob.predict(api_name="/train_cancel")[0]
        alice = Client(locked.url, auth=("alice", "a"), verbose=False)
        args = sft_args(alice, tiny_vlm_dir, sft_data, tmp_path / "o", 3)
        args[KEYS.index("sft.learning_rate")] = "-1"  # past the admin check, stopped by the form: nothing runs
        message, _ = alice.predict(*args, api_name="/train_launch")
        assert "--learning-rate must be above 0" in message.replace("\\", "")
        assert job_count(locked.db) == 0
