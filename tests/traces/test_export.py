"""Export: approved episodes become TRL SFT chat-messages data that `datasets` loads; annotations as tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from datasets import Image, List, load_dataset

from agent.events import ActionParsed, FormatError, TurnStarted
from agent.loop import run_episode
from traces import EpisodeFilter, Recorder
from traces.annotations import annotate
from traces.export_annotations import export_annotations
from traces.export_sft import export_sft

from .helpers import CROP_THEN_TEXT_THEN_ANSWER, ScriptedModel, make_image, synthetic_episode, toolbox


@pytest.fixture
def reviewed(store):
    rec = Recorder(store)
    live = list(
        run_episode(
            "Who built this tower?", make_image(), ScriptedModel(CROP_THEN_TEXT_THEN_ANSWER), toolbox(), on_event=rec
        )
    )
    approved_id = live[0].episode_id
    annotate(store, approved_id, "ana", approved=True, correct=False, corrected_answer="Gustave Eiffel's company")
    # an approved episode with a malformed turn that the model then fixed
    events = synthetic_episode("with-format-error", turns=2)
    bad = "<reason>oops</reason>"
    broken = [
        TurnStarted("with-format-error", 0),
        ActionParsed("with-format-error", 0, "none", "", "oops", bad, False, "no action tag", 3, 0.1),
        FormatError("with-format-error", 0, "no action tag", bad, 1),
    ]
    shifted = [events[0], *broken]
    for e in events[1:]:
        if hasattr(e, "turn_index"):
            e = type(e)(
                **{**{f: getattr(e, f) for f in e.__dataclass_fields__ if f != "type"}, "turn_index": e.turn_index + 1}
            )
        shifted.append(e)
    for e in shifted:
        rec(e)
    annotate(store, "with-format-error", "ben", approved=True)
    for e in synthetic_episode("not-approved"):
        rec(e)
    annotate(store, "not-approved", "ana", approved=False)
    return approved_id


def _by_id(rows):
    return {r["episode_id"]: r for r in rows}


def test_jsonl_with_images_alongside_loads_with_datasets(store, reviewed, tmp_path):
    report = export_sft(store, tmp_path / "sft", fmt="jsonl", images="alongside")
    assert report.rows == 2 and report.corrected == 1
    ds = load_dataset("json", data_files=str(report.path), split="train")
    rows = _by_id(ds)
    assert set(rows) == {reviewed, "with-format-error"}
    messages = rows[reviewed]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0]["type"] == "image"
    assert messages[-1]["content"][0]["text"].endswith(
        "<answer>Gustave Eiffel's company</answer>"
    )  # correction applied
    assert "<information>" in messages[3]["content"][0]["text"]
    # the malformed turn and the correction prompt after it are not training targets
    fixed = rows["with-format-error"]["messages"]
    assert all("oops" not in m["content"][0]["text"] for m in fixed if m["role"] == "assistant")
    # images resolve relative to the export directory
    ds = ds.map(lambda r: {"images": [str(tmp_path / "sft" / p) for p in r["images"]]}).cast_column(
        "images", List(Image())
    )
    assert ds[0]["images"][0].size == (96, 64)


def test_parquet_with_embedded_images_loads_as_pil(store, reviewed, tmp_path):
    report = export_sft(store, tmp_path / "sftp", fmt="parquet", images="embedded")
    assert not (tmp_path / "sftp" / "images").exists()
    ds = load_dataset("parquet", data_files=str(report.path), split="train")
    assert ds.features["images"] == List(Image())
    row = _by_id(ds)[reviewed]
    assert row["images"][0].size == (96, 64) and row["corrected"] is True
    assert row["messages"][0]["role"] == "system"


def test_parquet_alongside_and_jsonl_embedded(store, reviewed, tmp_path):
    a = export_sft(store, tmp_path / "a", fmt="parquet", images="alongside")
    assert (tmp_path / "a" / load_dataset("parquet", data_files=str(a.path), split="train")[0]["images"][0]).exists()
    b = export_sft(store, tmp_path / "b", fmt="jsonl", images="embedded")
    first = json.loads(b.path.read_text().splitlines()[0])
    assert first["images"][0].startswith("data:image/png;base64,")


def test_export_filters_and_skips_unanswered(store, reviewed, tmp_path):
    rec = Recorder(store)
    for e in synthetic_episode("cut")[:6]:
        rec(e)
    rec.close()
    annotate(store, "cut", "ana", approved=True)
    report = export_sft(store, tmp_path / "x", filters=EpisodeFilter(review="approved"))
    assert report.rows == 2 and report.skipped == {"without a final answer turn": 1}


def test_annotations_and_agreement_tables(store, reviewed, tmp_path):
    annotate(store, reviewed, "ben", approved=True, correct=True)
    annotate(store, reviewed, "ben", comment="second thoughts", correct=False)
    report = export_annotations(store, tmp_path / "ann.csv", history=True)
    table = pd.read_csv(report.path)
    assert len(table) == 5 and table["current"].sum() == 4
    agreement = pd.read_csv(report.agreement_path)
    assert {"item", "statistic", "kappa", "observed_agreement", "items", "annotators"} <= set(agreement.columns)
    assert "correct" in set(agreement["item"])
