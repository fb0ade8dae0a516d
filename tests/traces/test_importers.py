"""Importers on real-format samples: FVQA parquet (the real sample), MMSearch-R1 eval JSON, TRL completions, veRL."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from traces import EpisodeFilter
from traces.importers import (
    ImportFileError,
    import_fvqa,
    import_mmsearch_r1,
    import_trl_completions,
    import_verl_rollouts,
)
from traces.queries import count_episodes, get_run, list_episodes, list_runs, load_episode

from .conftest import fvqa_sample
from .helpers import make_image


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    make_image(seed).save(buf, format="JPEG")
    return buf.getvalue()


def test_real_fvqa_sample_imports_as_a_question_set(store):
    report = import_fvqa(store, fvqa_sample())
    assert report.imported == 5 and report.bad_rows == ()
    items = list_episodes(store, EpisodeFilter(run_ids=(report.run_id,))).items
    assert {e.status for e in items} == {"pending"}
    spain = next(e for e in items if "country of origin" in e.question)
    detail = load_episode(store, spain.id)
    assert detail.gold_answers[0] == "Spain" and "Kingdom of Spain" in detail.gold_answers
    assert detail.image().mode == "RGB" and detail.summary.dataset == "mmsearch_r1/infoseek_train_split"
    assert get_run(store, report.run_id).kind == "questions"


def _fvqa_table(rows):
    return pa.Table.from_pylist(rows)


def test_fvqa_bad_rows_are_reported_by_number_and_good_rows_imported(store, tmp_path):
    good = lambda i: {  # noqa: E731
        "prompt": [{"role": "user", "content": f"<image>Question {i}?"}],
        "images": [{"bytes": _jpeg(i)}],
        "reward_model": {
            "ground_truth": f"answer {i}",
            "candidate_answers": json.dumps([f"alias {i}"]),
            "style": "rule",
        },
        "data_source": "fvqa_test",
        "image_urls": None,
    }
    rows = [
        good(1),
        {**good(2), "images": [{"bytes": b"not a jpeg"}]},
        good(3),
        {**good(4), "prompt": []},
        {**good(5), "reward_model": {"ground_truth": None, "candidate_answers": "[]", "style": "rule"}},
    ]
    path = tmp_path / "set.parquet"
    pq.write_table(_fvqa_table(rows), path)
    report = import_fvqa(store, path)
    assert report.imported == 2
    assert [(b.row, b.reason.split(":")[0]) for b in report.bad_rows] == [
        (2, "image bytes"),
        (4, "no user question in `prompt`"),
        (5, "`reward_model` has no ground_truth"),
    ]
    questions = {e.question for e in list_episodes(store).items}
    assert questions == {"Question 1?", "Question 3?"}
    assert load_episode(store, list_episodes(store).items[0].id).gold_answers == ["answer 3", "alias 3"]


def test_missing_columns_reject_the_whole_file(store, tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "images": None}]), path)
    with pytest.raises(ImportFileError, match=r"missing columns \['reward_model'\]"):
        import_fvqa(store, path)
    assert count_episodes(store) == 0 and list_runs(store) == []


def test_import_is_all_or_nothing_when_the_database_write_fails(store, tmp_path, monkeypatch):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Q{i}?"}],
            "images": [{"bytes": _jpeg(i)}],
            "reward_model": {"ground_truth": "a", "candidate_answers": "[]"},
        }
        for i in range(4)
    ]
    path = tmp_path / "set.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    calls = {"n": 0}
    real = type(store).put_image

    def failing(self, conn, image=None, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(self, conn, image, **kw)

    monkeypatch.setattr(type(store), "put_image", failing)
    with pytest.raises(OSError, match="disk full"):
        import_fvqa(store, path)
    monkeypatch.undo()
    assert count_episodes(store) == 0 and list_runs(store) == []


# MMSearch-R1's val_only output: pandas to_json(orient="records") of (step, input_text, output_text, score,
# reward_model, image_url); texts are tokenizer.decode(..., skip_special_tokens=True) of the chat template.
MMSEARCH_PROMPT = (
    "system\nYou are a helpful assistant.\nuser\n"
    "Answer the user's question based on the provided image. ... Question: What is the name of this mountain?\nassistant\n"
)
MMSEARCH_OUTPUT = (
    "<reason>I do not recognise this mountain; search the image.</reason>\n<search><img></search>\n"
    "user\nSearched results: <information>[Image Search Results] 1. Matterhorn - Wikipedia</information>\n"
    "Question: What is the name of this mountain?\nUse the visual identification to answer, or search text.\n"
    "assistant\n<reason>The results say Matterhorn.</reason>\n<answer>Matterhorn</answer>"
)


def test_mmsearch_r1_eval_json(store, tmp_path):
    records = [
        {
            "step": 0,
            "input_text": MMSEARCH_PROMPT,
            "output_text": MMSEARCH_OUTPUT,
            "score": 0.9,
            "reward_model": {"ground_truth": "Matterhorn", "candidate_answers": '["Monte Cervino"]'},
            "image_url": "https://x/y.jpg",
        },
        {
            "step": 0,
            "input_text": MMSEARCH_PROMPT,
            "output_text": "<reason>It is K2.</reason><answer>K2</answer>",
            "score": 0.1,
            "reward_model": {"ground_truth": "Matterhorn", "candidate_answers": "[]"},
            "image_url": None,
        },
        {"step": 0, "input_text": None, "output_text": "x", "score": 0.0},
        {"step": 0, "input_text": MMSEARCH_PROMPT, "output_text": "y", "score": "high"},
    ]
    path = tmp_path / "val_result_4.json"
    pd.DataFrame(records).to_json(path, orient="records", indent=2)
    report = import_mmsearch_r1(store, path)
    assert report.imported == 2 and [b.row for b in report.bad_rows] == [3, 4]
    page = list_episodes(store, EpisodeFilter(run_ids=(report.run_id,))).items
    searched = load_episode(store, next(e.id for e in page if e.n_tool_calls))
    assert searched.summary.question == "What is the name of this mountain?"
    assert searched.summary.dialect == "mmsearch-r1" and searched.summary.correct is True
    assert [t.action for t in searched.turns] == ["image_search_whole", "answer"]
    assert searched.turns[0].tool_calls[0].information == "[Image Search Results] 1. Matterhorn - Wikipedia"
    assert searched.summary.final_answer == "Matterhorn" and searched.gold_answers == ["Matterhorn", "Monte Cervino"]
    assert list_episodes(store, EpisodeFilter(run_ids=(report.run_id,), correct=False)).items[0].final_answer == "K2"


def test_trl_completions_parquet_text_and_conversational(store, tmp_path):
    directory = tmp_path / "completions"
    directory.mkdir()
    # Exactly how GRPOTrainer.log writes it: a DataFrame of step, prompt, completion, <reward funcs>, advantage.
    pd.DataFrame(
        {
            "step": [10, 10],
            "prompt": ["<|im_start|>user\nWho designed this bridge?<|im_end|>\n<|im_start|>assistant\n"] * 2,
            "completion": [
                "<reason>search</reason><text_search>bridge designer</text_search><|im_end|>\n<|im_start|>user\n"
                "<information>Designed by John Roebling.</information><|im_end|>\n<|im_start|>assistant\n"
                "<reason>found</reason><answer>John Roebling</answer>",
                "<answer>no reason given</answer>",
            ],
            "judge_reward": [1.0, 0.0],
            "format_reward": [1.0, float("nan")],
            "advantage": [0.5, -0.5],
        }
    ).to_parquet(directory / "completions_00010.parquet")
    pd.DataFrame(
        {
            "step": [20],
            "prompt": [
                [
                    {
                        "role": "user",
                        "content": [{"type": "image", "text": None}, {"type": "text", "text": "Which city is this?"}],
                    }
                ]
            ],
            "completion": [
                [
                    {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "<reason>look</reason><img_search><img></img_search>"}],
                    },
                    {"role": "tool", "content": [{"type": "text", "text": "Skyline of Chicago"}]},
                    {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "<reason>ok</reason><answer>Chicago</answer>"}],
                    },
                ]
            ],
            "judge_reward": [1.0],
            "format_reward": [1.0],
            "advantage": [0.0],
        }
    ).to_parquet(directory / "completions_00020.parquet")
    report = import_trl_completions(store, directory, correct_column="judge_reward")
    assert report.imported == 3 and report.bad_rows == ()
    by_q = {}
    for e in list_episodes(store, EpisodeFilter(run_ids=(report.run_id,))).items:
        by_q.setdefault(e.question, []).append(load_episode(store, e.id))
    bridge = next(d for d in by_q["Who designed this bridge?"] if d.summary.correct)
    assert bridge.turns[0].tool_calls[0].information == "Designed by John Roebling." and bridge.reward == 2.0
    bad = next(d for d in by_q["Who designed this bridge?"] if not d.summary.correct)
    assert bad.summary.status == "format_error" and bad.extra["rewards"] == {"judge_reward": 0.0}
    city = by_q["Which city is this?"][0]
    assert city.summary.n_whole == 1 and city.summary.final_answer == "Chicago" and city.extra["step"] == 20


def test_verl_rollout_jsonl_with_bad_lines(store, tmp_path):
    directory = tmp_path / "rollouts"
    directory.mkdir()
    good = {
        "input": "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this dish?<|im_end|>\n<|im_start|>assistant\n",
        "output": "<reason>I know it.</reason><answer>Paella</answer>",
        "gts": "Paella",
        "score": 1.0,
        "step": 3,
        "acc": 1.0,
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "output": 5}),
        "",
        json.dumps({**good, "acc": 0.0, "score": 0.1, "output": "<reason>x</reason><answer>Pizza</answer>"}),
    ]
    (directory / "3.jsonl").write_text("\n".join(lines) + "\n")
    report = import_verl_rollouts(store, directory)
    assert report.imported == 2 and [b.row for b in report.bad_rows] == [2, 3]
    items = list_episodes(store, EpisodeFilter(run_ids=(report.run_id,))).items
    assert {(e.question, e.final_answer, e.correct) for e in items} == {
        ("What is this dish?", "Paella", True),
        ("What is this dish?", "Pizza", False),
    }
    assert get_run(store, report.run_id).kind == "rollout"
