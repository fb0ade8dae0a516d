"""The Train tab's form without a server: fields from the config classes, the paper's defaults, the exact
command, and what bad input gets (a message, nothing started)."""

from __future__ import annotations

import shlex

import pytest

from agent.flags import describe_config
from training.config import SFTSettings
from training.runner import preview_command
from ui.train_form import (
    HIDDEN,
    KIND_SECTIONS,
    SECTION_CLASSES,
    FormError,
    build_request,
    check_approved,
    check_request,
    form_fields,
    initial_value,
    kind_default,
    may_launch,
    preview,
    shown,
)

FIELDS = form_fields()


def form(kind: str, **changes) -> dict:
    """Every field at its initial value, with `changes` by key ("sft.model")."""
    values = {f.key: initial_value(f) for f in FIELDS}
    values.update({k.replace("__", "."): v for k, v in changes.items()})
    return values


@pytest.fixture
def model_and_data(tmp_path):
    model = tmp_path / "vlm"
    model.mkdir()
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    return str(model), str(data)


def test_every_setting_of_every_section_is_in_the_form_with_its_help():
    for section, cls in SECTION_CLASSES.items():
        names = {f.name for f in FIELDS if f.section == section}
        expected = {r["name"] for r in describe_config(cls)} - set(HIDDEN.get(section, ()))
        assert names == expected, section
    assert all(f.help for f in FIELDS)
    lora = [f.name for f in FIELDS if f.section == "sft" and f.group == "LoRA"]
    assert lora[:2] == ["use_peft", "lora_r"]
    assert {f.group for f in FIELDS if f.section == "grpo"} >= {"Model and data", "GRPO (the paper's settings)"}


def test_untouched_form_gives_the_papers_settings(model_and_data):
    model, data = model_and_data
    sft = build_request("sft", form("sft", sft__model=model, sft__data=data, sft__output_dir="out"), db="t.db").main
    assert sft == SFTSettings(model=model, data=data, output_dir="out")
    assert (sft.lora_r, sft.learning_rate, sft.num_train_epochs, sft.lr_scheduler_type) == (8, 1e-4, 3.0, "cosine")
    grpo = build_request(
        "grpo", form("grpo", grpo__model=model, grpo__data=data, grpo__output_dir="out"), db="t.db"
    ).main
    assert (grpo.num_generations, grpo.learning_rate, grpo.warmup_steps, grpo.epsilon, grpo.beta) == (
        8,
        2e-6,
        45,
        0.2,
        0.001,
    )
    assert grpo.scale_rewards == "none" and grpo.reward_weights == (0.9, 0.1)


def test_preview_is_the_runners_exact_command(model_and_data):
    model, data = model_and_data
    values = form("sft", sft__model=model, sft__data=data, sft__output_dir="out", sft__max_steps="3")
    request = build_request("sft", values, db="runs/x.db")
    assert preview(request) == preview_command("sft", request.configs, request.launch)
    assert shlex.split(preview(request))[:3] == ["python", "-m", "training"] and "--max-steps" in preview(request)
    assert preview(request).endswith("--db runs/x.db")
    values["launch.num_processes"] = "4"
    assert preview(build_request("sft", values, db="runs/x.db")).startswith("accelerate launch --num_processes 4")


def test_grpo_judges_with_the_reward_prompt_and_eval_with_the_eval_prompt(model_and_data):
    model, data = model_and_data
    prompt = next(f for f in FIELDS if f.key == "judge.judge_prompt")
    assert (kind_default(prompt, "grpo"), kind_default(prompt, "eval"), kind_default(prompt, "sft")) == (
        "reward",
        "eval",
        None,
    )
    values = form("grpo", grpo__model=model, grpo__data=data, grpo__output_dir="o", judge__judge_prompt="reward")
    assert "--judge-prompt reward" in preview(build_request("grpo", values, db="t.db"))


def test_eval_preview_is_an_agent_eval_line_into_the_apps_store():
    values = form("eval", eval__data="questions.parquet", eval__limit="20", judge__judge="rule")
    values["model.backend"] = "openai"
    request = build_request("eval", values, db="runs/app.db")
    argv = shlex.split(preview(request))
    assert argv[:4] == ["python", "-m", "agent", "eval"]
    assert argv[argv.index("--data") + 1] == "questions.parquet" and argv[argv.index("--limit") + 1] == "20"
    assert argv[argv.index("--db") + 1] == "runs/app.db" and "--backend" in argv and "--no-progress" in argv
    assert KIND_SECTIONS["eval"][0] == "eval"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sft__model": ""}, "--model is required"),
        ({"sft__learning_rate": "fast"}, "learning rate: 'fast' is not a number"),
        ({"sft__learning_rate": "0"}, "--learning-rate must be above 0, not 0"),
        ({"sft__lora_dropout": "1.5"}, "--lora-dropout must be at most 1, not 1.5"),
        ({"sft__max_steps": "2.5"}, "max steps: '2.5' is not a whole number"),
        ({"sft__per_device_train_batch_size": "0"}, "--per-device-train-batch-size must be at least 1"),
        ({"sft__runs": "1, two"}, "comma-separated list of int"),
        ({"launch__num_processes": "0"}, "--num-processes must be at least 1"),
    ],
)
def test_out_of_range_or_unreadable_settings_are_refused_with_a_message(model_and_data, change, message):
    model, data = model_and_data
    values = form("sft", sft__model=model, sft__data=data, sft__output_dir="out")
    values.update({k.replace("__", "."): v for k, v in change.items()})
    with pytest.raises(FormError, match=message):
        build_request("sft", values, db="t.db")


def test_max_steps_minus_one_means_run_the_epochs(model_and_data):
    model, data = model_and_data
    values = form("sft", sft__model=model, sft__data=data, sft__output_dir="o", sft__max_steps="-1")
    assert build_request("sft", values, db="t.db").main.max_steps == -1


def test_missing_model_or_data_stop_the_launch(tmp_path, model_and_data):
    model, data = model_and_data
    missing = build_request(
        "sft", form("sft", sft__model=str(tmp_path / "nope"), sft__data=data, sft__output_dir="o"), db="t.db"
    )
    with pytest.raises(FormError, match="neither a local folder nor a hub id"):
        check_request(missing, gpu=True, allow_cpu=False)
    no_data = build_request(
        "sft", form("sft", sft__model=model, sft__data=str(tmp_path / "none.jsonl"), sft__output_dir="o"), db="t.db"
    )
    with pytest.raises(FormError, match="does not exist"):
        check_request(no_data, gpu=True, allow_cpu=False)
    with pytest.raises(FormError, match="Data is required"):
        check_request(build_request("eval", form("eval"), db="t.db"), gpu=True, allow_cpu=False)


def test_a_7b_model_without_a_gpu_is_refused_unless_overridden(model_and_data):
    _, data = model_and_data
    values = form("sft", sft__model="Qwen/Qwen2.5-VL-7B-Instruct", sft__data=data, sft__output_dir="o")
    request = build_request("sft", values, db="t.db")
    with pytest.raises(FormError, match=r"~7B parameters\) needs a GPU.*Run on CPU anyway"):
        check_request(request, gpu=False, allow_cpu=False)
    assert "overridden" in check_request(request, gpu=False, allow_cpu=True)[0]
    assert check_request(request, gpu=True, allow_cpu=False) == []


def test_a_tiny_model_on_a_cpu_only_gets_a_warning(model_and_data):
    model, data = model_and_data
    request = build_request("sft", form("sft", sft__model=model, sft__data=data, sft__output_dir="o"), db="t.db")
    assert check_request(request, gpu=False, allow_cpu=False) == [
        "No GPU here: the job runs on the CPU, which suits only tiny models."
    ]


def test_an_eval_against_a_served_model_needs_no_local_gpu():
    values = form("eval", eval__data="my-question-set")
    values.update({"model.backend": "openai", "model.model": "Qwen/Qwen2.5-VL-72B-Instruct"})
    assert check_request(build_request("eval", values, db="t.db"), gpu=False, allow_cpu=False) == []


def test_sft_on_the_apps_store_without_approved_episodes_is_refused(tmp_path, model_and_data):
    model, _ = model_and_data
    db = tmp_path / "traces.db"
    db.write_bytes(b"")
    request = build_request("sft", form("sft", sft__model=model, sft__data=str(db), sft__output_dir="o"), db=str(db))
    with pytest.raises(FormError, match="no approved episodes"):
        check_approved(request, str(db), approved=0)
    check_approved(request, str(db), approved=3)
    check_approved(request, str(tmp_path / "other.db"), approved=0)  # another store: the job itself checks


def test_locked_deployments_launch_for_admins_only():
    assert may_launch("anonymous", locked=False, admins=())[0]
    assert may_launch("alice", locked=True, admins=("alice",)) == (
        True,
        "Launching as **alice** (an admin of this deployment).",
    )
    allowed, note = may_launch("bob", locked=True, admins=("alice",))
    assert not allowed and "**bob** is not an admin" in note and "read-only" in note
    allowed, note = may_launch("anonymous", locked=True, admins=())
    assert not allowed and "names no admins" in note


def test_unset_booleans_show_as_auto_and_come_back_unset(model_and_data):
    model, data = model_and_data
    bf16 = next(f for f in FIELDS if f.key == "sft.bf16")
    assert (shown(bf16, None), shown(bf16, True)) == ("auto", "true")
    values = form("sft", sft__model=model, sft__data=data, sft__output_dir="o")
    assert values["sft.bf16"] == "auto" and build_request("sft", values, db="t.db").main.bf16 is None
    values["sft.bf16"] = "false"
    assert build_request("sft", values, db="t.db").main.bf16 is False
