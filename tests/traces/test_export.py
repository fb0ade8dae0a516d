"""Export: recorded episodes become TRL SFT chat-messages data, rendered by the loop's one conversation builder.

The central check: an episode recorded through a real HTTP endpoint, exported, equals message by message what
the endpoint received (images aside), plus the final answer turn.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Image, List, load_dataset
from transformers.image_utils import load_image
from trl.data_utils import prepare_multimodal_messages

from agent.events import ActionParsed, FormatError, TurnStarted
from agent.loop import Budgets, run_episode
from agent.models.openai_backend import OpenAIBackend
from agent.protocol import get_dialect
from tests.servers.chat_completions import scripted_chat_server
from traces import EpisodeFilter, Recorder
from traces.annotations import annotate
from traces.export_annotations import export_annotations
from traces.export_sft import CORRECTED_REASON, TRAINING_NOTE, export_sft, sft_rows
from traces.importers import import_fvqa
from traces.queries import load_episode
from traces.records import decode_image

from .helpers import CROP_THEN_TEXT_THEN_ANSWER, ScriptedModel, fvqa_row, make_image, synthetic_episode, toolbox

DIALECT = get_dialect("deepmmsearch")
# One episode that meets every kind of step: a malformed turn (the loop asks again), a whole-image search, a
# second image search (refused: one per episode), a text search that is the last call allowed (max_tool_calls=2:
# its result comes with the budget note), then the answer. The server strips stop strings, as vLLM does.
EVERY_STEP = [
    "<reason>Let me look at the picture first.</reason>",
    "<reason>I need to identify the tower.</reason><img_search><img></img_search>",
    "<reason>Crop the top.</reason><img_search>the top of the tower</img_search>",
    "<reason>Now find who built it.</reason><text_search>Eiffel Tower architect</text_search>",
    "<reason>The results say Gustave Eiffel's company.</reason><answer>Gustave Eiffel</answer>",
]


def record_through_endpoint(store, turns, budgets=Budgets(max_tool_calls=2)):
    """Run one episode against the scripted OpenAI-compatible server; returns (episode id, request bodies)."""
    with scripted_chat_server(turns) as server:
        backend = OpenAIBackend("scripted-model", server.base_url)
        try:
            events = list(
                run_episode(
                    "Who built this tower?", make_image(), backend, toolbox(), budgets=budgets, on_event=Recorder(store)
                )
            )
        finally:
            backend.close()
    return events[0].episode_id, [r["messages"] for r in server.requests]


def as_placeholders(messages):
    """The request's messages with each image part (an image_url data URI on the wire) as the export writes it."""
    return [
        {
            "role": m["role"],
            "content": [{"type": "image"} if p["type"] == "image_url" else p for p in m["content"]],
        }
        for m in messages
    ]


def assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def test_exported_conversation_equals_what_the_endpoint_received(store):
    episode_id, requests = record_through_endpoint(store, EVERY_STEP)
    annotate(store, episode_id, "ana", approved=True)
    assert load_episode(store, episode_id).summary.status == "answered" and len(requests) == 5
    [row] = sft_rows(store, include_failed_turns=True).rows
    sent = as_placeholders(requests[-1])
    # Message by message: everything the model read before its answer, then the answer turn (its closing tag,
    # stripped by the server as a stop string, restored).
    assert row.messages[:-1] == sent
    assert row.messages[-1] == assistant(EVERY_STEP[-1])
    for request in requests:  # and every earlier request is a prefix of the same conversation
        assert row.messages[: len(request)] == as_placeholders(request)
    texts = [m["content"][-1]["text"] for m in row.messages]
    assert DIALECT.render_format_error("no action after </reason>") in texts  # the malformed turn's note
    assert DIALECT.prompts.image_budget_spent in texts  # the refused second image search
    assert any(t.endswith(DIALECT.prompts.last_tool_call) and "<information>" in t for t in texts)  # budget note
    assert row.messages[1]["content"][0] == {"type": "image"} and row.image_sha256 is not None
    assert decode_image(row.images[0]).size == (96, 64)  # the one image of the one image part


def test_by_default_a_malformed_turn_and_its_note_are_left_out(store):
    episode_id, requests = record_through_endpoint(store, EVERY_STEP)
    annotate(store, episode_id, "ana", approved=True)
    [row] = sft_rows(store).rows
    sent = as_placeholders(requests[-1])
    assert sent[2] == assistant(EVERY_STEP[0]) and sent[3]["role"] == "user"  # the malformed turn and its note
    assert row.messages == [*sent[:2], *sent[4:], assistant(EVERY_STEP[-1])]


def test_an_episode_without_an_answer_but_with_a_corrected_one_ends_with_a_well_formed_answer_turn(store):
    # One tool call allowed: the second call is refused, the third ends the episode (budget_exhausted).
    search = "<reason>Search.</reason><text_search>tower builder</text_search>"
    episode_id, requests = record_through_endpoint(store, [search] * 3, Budgets(max_tool_calls=1))
    assert load_episode(store, episode_id).summary.status == "budget_exhausted"
    annotate(store, episode_id, "ana", approved=True, corrected_answer="Gustave Eiffel")
    data = sft_rows(store)
    [row] = data.rows
    assert data.skipped == [] and row.answer == "Gustave Eiffel" and row.corrected
    # What the loop sent before the third call (its first refusal included); the third call, which got no
    # reply, gives way to the corrected answer.
    assert row.messages[:-1] == as_placeholders(requests[-1])
    assert row.messages[-2]["content"][0]["text"] == DIALECT.prompts.tool_budget_spent.format(max_tool_calls=1)
    final = row.messages[-1]["content"][0]["text"]
    assert final == f"<reason>{CORRECTED_REASON}</reason><answer>Gustave Eiffel</answer>"
    parsed = DIALECT.parse_turn(final)
    assert parsed.format_ok and parsed.action == "answer" and parsed.argument == "Gustave Eiffel"


def test_episodes_that_give_no_row_are_skipped_each_with_its_reason(store, tmp_path):
    search = "<reason>Search.</reason><text_search>tower builder</text_search>"
    unanswered, _ = record_through_endpoint(store, [search] * 3, Budgets(max_tool_calls=1))
    annotate(store, unanswered, "ana", approved=True)  # no corrected answer
    questions = tmp_path / "questions.parquet"
    pq.write_table(pa.Table.from_pylist([fvqa_row(1)]), questions)
    question = import_fvqa(store, questions)
    pending = next(iter(sft_rows(store, EpisodeFilter(run_ids=(question.run_id,)), include_failed_turns=True).skipped))
    data = sft_rows(store, EpisodeFilter(review="approved"))
    assert data.rows == []
    assert [(s.episode_id, s.reason) for s in data.skipped] == [
        (unanswered, "ended budget_exhausted without an answer, and no annotator gave a corrected answer")
    ]
    assert pending.reason == "a question that was never run"


def test_a_correction_that_cannot_be_an_answer_turn_is_skipped_not_written_malformed(store):
    episode_id, _ = record_through_endpoint(store, EVERY_STEP)
    annotate(store, episode_id, "ana", approved=True, corrected_answer="Eiffel</answer><answer>x")
    data = sft_rows(store)
    assert data.rows == [] and "does not make a well-formed answer turn" in data.skipped[0].reason


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


def open_as_trl_collator_would(row):
    """TRL's VLM collator puts the row's images into the messages' image parts (prepare_multimodal_messages) and
    the processor's chat template opens each with transformers' load_image: a path, a data URI or a PIL image."""
    messages = prepare_multimodal_messages(row["messages"], images=row["images"])
    return [load_image(p["image"]) for m in messages for p in m["content"] if p["type"] == "image"]


@pytest.mark.parametrize(
    ("name", "images"),
    [("sft.jsonl", "alongside"), ("sft.jsonl", "embedded"), ("sft.parquet", "alongside"), ("sft.parquet", "embedded")],
)
def test_rows_train_from_any_working_directory(store, reviewed, tmp_path, monkeypatch, name, images):
    out = tmp_path / "exports" / name
    out.parent.mkdir()
    report = export_sft(store, out, images=images)
    assert report.path == out and out.is_file() and report.rows == 2
    assert (tmp_path / "exports" / "sft_images").is_dir() == (images == "alongside")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ds = load_dataset("json" if name.endswith(".jsonl") else "parquet", data_files=str(out), split="train")
    for row in ds:
        opened = open_as_trl_collator_would(row)
        assert [image.size for image in opened] == [(96, 64)]


def test_jsonl_rows_hold_the_conversation_and_the_correction(store, reviewed, tmp_path):
    report = export_sft(store, tmp_path / "sft.jsonl")
    assert report.rows == 2 and report.corrected == 1
    rows = _by_id(json.loads(line) for line in report.path.read_text().splitlines())
    assert set(rows) == {reviewed, "with-format-error"}
    messages = rows[reviewed]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0] == {"type": "image"}
    assert messages[-1]["content"][0]["text"] == (
        "<reason>The results say Gustave Eiffel's company.</reason><answer>Gustave Eiffel's company</answer>"
    )  # correction applied
    assert "<information>" in messages[3]["content"][0]["text"]
    # the malformed turn and the correction prompt after it are not training targets
    fixed = rows["with-format-error"]["messages"]
    assert all("oops" not in m["content"][0]["text"] for m in fixed if m["role"] == "assistant")
    assert rows[reviewed]["images"][0].startswith(str(tmp_path / "sft_images"))
    assert TRAINING_NOTE in report.summary() and "assistant_only_loss=True" in TRAINING_NOTE


def test_parquet_with_embedded_images_loads_as_pil(store, reviewed, tmp_path):
    report = export_sft(store, tmp_path / "train.parquet", images="embedded")
    ds = load_dataset("parquet", data_files=str(report.path), split="train")
    assert ds.features["images"] == List(Image())
    row = _by_id(ds)[reviewed]
    assert row["images"][0].size == (96, 64) and row["corrected"] is True
    assert row["messages"][0]["role"] == "system"


def test_export_writes_only_the_file_named_and_never_overwrites_by_accident(store, reviewed, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "out.jsonl"
    export_sft(store, out)
    first = out.read_text()
    with pytest.raises(ValueError, match="exists; choose another name or pass --overwrite"):
        export_sft(store, out)
    assert out.read_text() == first
    assert export_sft(store, out, overwrite=True).rows == 2
    with pytest.raises(ValueError, match="is a directory: name the file to write"):
        export_sft(store, folder)
    with pytest.raises(ValueError, match="name a .jsonl or .parquet file"):
        export_sft(store, folder / "out.txt")
    with pytest.raises(ValueError, match="cannot hold parquet"):
        export_sft(store, folder / "x.jsonl", fmt="parquet")
    assert sorted(p.name for p in folder.iterdir()) == ["out.jsonl", "out_images"]  # no partial or stray files


def test_export_filters_and_skips_unanswered(store, reviewed, tmp_path):
    rec = Recorder(store)
    for e in synthetic_episode("cut")[:6]:
        rec(e)
    rec.close()
    annotate(store, "cut", "ana", approved=True)
    report = export_sft(store, tmp_path / "x.jsonl", filters=EpisodeFilter(review="approved"))
    assert report.rows == 2
    assert [(s.episode_id, s.reason) for s in report.skipped] == [
        ("cut", "ended interrupted without an answer, and no annotator gave a corrected answer")
    ]
    assert "skipped cut: ended interrupted without an answer" in report.summary()


def test_annotations_and_agreement_tables(store, reviewed, tmp_path):
    annotate(store, reviewed, "ben", approved=True, correct=True)
    annotate(store, reviewed, "ben", comment="second thoughts", correct=False)
    report = export_annotations(store, tmp_path / "ann.csv", history=True)
    table = pd.read_csv(report.path)
    assert len(table) == 5 and table["current"].sum() == 4
    agreement = pd.read_csv(report.agreement_path)
    assert {"item", "statistic", "kappa", "observed_agreement", "items", "annotators"} <= set(agreement.columns)
    assert "correct" in set(agreement["item"])
