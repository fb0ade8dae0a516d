"""SFT: LoRA on the language model only, loss on the assistant's tokens only, data from files and the store,
checkpoints the app loads (merged or as an adapter), and what bad input gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from agent.models.transformers_backend import TransformersBackend
from tests.training.helpers import write_sft_file
from training.config import SFTSettings
from training.data import read_sft_file
from training.models import TrainingInputError, is_vision_parameter, load_model
from training.sft import load_sft_data, train_sft


class Capture(TrainerCallback):
    """Keeps the trained model and the first batch the trainer's own dataloader produced."""

    def __init__(self):
        self.model = None
        self.batch = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.batch = next(iter(train_dataloader))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


def settings(model: Path, data: str, out: Path, **overrides) -> SFTSettings:
    values = dict(
        model=str(model),
        data=data,
        output_dir=str(out),
        max_steps=3,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=5e-2,
        gradient_checkpointing=False,
        max_length=2048,
        save_steps=1000,
    )
    return SFTSettings(**{**values, **overrides})


def base_name(peft_name: str) -> str:
    return peft_name.removeprefix("base_model.model.").replace(".base_layer", "")


def test_three_steps_change_only_the_lora_weights_of_the_language_model(tiny_vlm_dir, tmp_path):
    data = write_sft_file(tmp_path)
    capture = Capture()
    result = train_sft(settings(tiny_vlm_dir, str(data), tmp_path / "out"), read_sft_file(data), callbacks=[capture])
    assert result.steps == 3
    before = dict(load_model(str(tiny_vlm_dir), bf16=False).named_parameters())
    after = dict(capture.model.named_parameters())
    lora = {n: p for n, p in after.items() if "lora_" in n}
    assert lora and all("language_model" in n and not is_vision_parameter(n) for n in lora)
    assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # B starts at zero: it learned
    for name, parameter in after.items():
        if "lora_" in name:
            continue
        assert torch.equal(parameter, before[base_name(name)]), f"{name} changed"
    assert any(is_vision_parameter(base_name(n)) for n in after)  # the vision tower is there, untouched
    assert (result.final_dir / "adapter_config.json").is_file()


def test_labels_cover_the_assistant_turns_and_nothing_else(tiny_vlm_dir, tmp_path):
    data = write_sft_file(tmp_path)
    capture = Capture()
    train_sft(
        settings(tiny_vlm_dir, str(data), tmp_path / "out", max_steps=1), read_sft_file(data), callbacks=[capture]
    )
    from training.models import load_processor

    tok = load_processor(str(tiny_vlm_dir)).tokenizer
    ids, labels = capture.batch["input_ids"], capture.batch["labels"]
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    expected = {
        "".join(f"{m['content'][0]['text']}<|im_end|>\n" for m in row["messages"] if m["role"] == "assistant")
        for row in rows
    }
    for b in range(ids.shape[0]):  # the loader shuffles: each row's trained text is some row's assistant turns
        trained = tok.decode(ids[b][labels[b] != -100])
        assert "<information>" in tok.decode(ids[b]) and "<information>" not in trained
        assert trained in expected


def test_the_store_s_approved_episodes_are_the_training_data(tiny_vlm_dir, tmp_path):
    from tests.traces.helpers import synthetic_episode
    from traces.annotations import annotate
    from traces.recorder import Recorder
    from traces.store import open_store

    db = tmp_path / "traces.db"
    store = open_store(db)
    recorder = Recorder(store)
    episodes = [synthetic_episode(question=q) for q in ("Who built this tower?", "Who built this bridge?")]
    for event in episodes[0] + episodes[1]:
        recorder(event)
    recorder.close()
    annotate(store, episodes[0][0].episode_id, "alice", approved=True, corrected_answer="Stephen Sauvestre")
    store.close()
    dataset = load_sft_data(settings(tiny_vlm_dir, str(db), tmp_path / "out"))
    assert len(dataset) == 1  # only the approved one
    messages = dataset[0]["messages"]
    assert "Who built this tower?" in messages[1]["content"][-1]["text"]
    assert "<answer>Stephen Sauvestre</answer>" in messages[-1]["content"][0]["text"]  # the correction applied
    assert len(dataset[0]["images"]) == 1


def test_no_approved_episodes_is_a_clear_error(tiny_vlm_dir, tmp_path):
    from traces.store import open_store

    db = tmp_path / "traces.db"
    open_store(db).close()
    with pytest.raises(TrainingInputError, match="no approved episodes to train on .*--approve"):
        load_sft_data(settings(tiny_vlm_dir, str(db), tmp_path / "out"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no conversations"),
        ("{not json\n", "line 1: not JSON"),
        (
            '{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "images": []}\n',
            "no assistant turn",
        ),
        ('{"messages": [{"role": "assistant", "content": "plain"}], "images": []}\n', "list of parts"),
        (
            '{"messages": [{"role": "user", "content": [{"type": "image"}]}, '
            '{"role": "assistant", "content": [{"type": "text", "text": "x"}]}], "images": []}\n',
            "1 image part\\(s\\) but 0 image",
        ),
    ],
)
def test_an_empty_or_malformed_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(TrainingInputError, match=message):
        read_sft_file(path)


def test_a_model_folder_without_a_chat_template_is_refused(tiny_vlm_dir, tmp_path):
    model = tmp_path / "no-template"
    shutil.copytree(tiny_vlm_dir, model)
    for name in ("chat_template.jinja", "chat_template.json"):
        (model / name).unlink(missing_ok=True)
    for name in ("tokenizer_config.json", "processor_config.json"):
        path = model / name
        if path.exists():
            config = json.loads(path.read_text())
            config.pop("chat_template", None)
            path.write_text(json.dumps(config))
    data = write_sft_file(tmp_path)
    with pytest.raises(TrainingInputError, match="has no chat template"):
        train_sft(settings(model, str(data), tmp_path / "out"), read_sft_file(data))


def test_the_merged_model_and_the_adapter_load_in_the_app_s_backend(tiny_vlm_dir, tmp_path):
    data = write_sft_file(tmp_path)
    result = train_sft(settings(tiny_vlm_dir, str(data), tmp_path / "out", merge=True), read_sft_file(data))
    assert result.merged_dir is not None
    merged_weights = dict(load_model(str(result.merged_dir), bf16=False).named_parameters())
    base_weights = dict(load_model(str(tiny_vlm_dir), bf16=False).named_parameters())
    changed = [n for n in base_weights if not torch.equal(base_weights[n], merged_weights[n])]
    assert changed and all("language_model" in n for n in changed)

    def greedy(backend: TransformersBackend) -> str:
        from agent.conversation import first_messages
        from agent.protocol import get_dialect

        messages = first_messages(get_dialect("deepmmsearch"), "Who designed this?", None, max_tool_calls=10)
        return "".join(d.text for d in backend.stream(messages, max_new_tokens=16, stop=()))

    merged = greedy(TransformersBackend(str(result.merged_dir)))
    adapter = greedy(TransformersBackend(str(tiny_vlm_dir), adapter=str(result.final_dir)))
    assert merged == adapter


def test_an_adapter_flag_that_is_not_an_adapter_folder_is_a_clear_backend_error(tiny_vlm_dir, tmp_path):
    from agent.models.base import BackendError

    backend = TransformersBackend(str(tiny_vlm_dir), adapter=str(tmp_path))
    with pytest.raises(BackendError, match="not a LoRA adapter folder"):
        backend.load()
