"""Importers on real-format samples: FVQA parquet (the real sample), MMSearch-R1 eval JSON, TRL completions, veRL."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from traces import EpisodeFilter
from traces.importers import (
    ImportFileError,
    import_fvqa,
    import_mmsearch_r1,
    import_trl_completions,
    import_verl_rollouts,
)
from traces.importers.fvqa import QuestionRow, read_questions
from traces.importers.mmsearch_r1 import question_from_prompt
from traces.models import images
from traces.queries import count_episodes, get_run, list_episodes, list_runs, load_episode

from .conftest import REPO, fvqa_sample
from .helpers import fvqa_row, jpeg_bytes


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
    good = fvqa_row
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
    # The parser the eval loader shares: rows as they are in the file (image bytes undecoded), bad rows by number.
    read = list(read_questions(path))
    assert [type(r).__name__ for r in read] == ["QuestionRow", "QuestionRow", "QuestionRow", "BadRow", "BadRow"]
    assert read[2] == QuestionRow(3, "Question 3?", jpeg_bytes(3), ("answer 3", "alias 3"), "fvqa_test", None)


def test_rows_sharing_one_image_store_it_once(store, tmp_path, monkeypatch):
    image = jpeg_bytes(7)
    path = tmp_path / "same_image.parquet"
    pq.write_table(_fvqa_table([fvqa_row(i, image) for i in range(40)]), path)
    stored = []
    real = type(store).put_image
    monkeypatch.setattr(
        type(store), "put_image", lambda self, conn, image=None, **kw: stored.append(1) or real(self, conn, image, **kw)
    )
    assert import_fvqa(store, path).imported == 40
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(images)).scalar_one() == 1
    assert len(stored) == 1  # decoded and written once, not once per row
    assert {e.image_sha256 for e in list_episodes(store, limit=100).items} == {load_image_sha(image)}


def load_image_sha(data: bytes) -> str:
    from agent.events import image_sha256
    from agent.images import load_image

    return image_sha256(load_image(data))


def test_importing_the_same_content_again_writes_nothing_unless_asked(store, tmp_path):
    path = tmp_path / "set.parquet"
    pq.write_table(_fvqa_table([fvqa_row(i) for i in range(3)]), path)
    first = import_fvqa(store, path)
    again = import_fvqa(store, path)
    assert again.already_imported and again.run_id == first.run_id and again.imported == 0
    assert "already imported as run" in again.summary() and "Pass --again" in again.summary()
    renamed = tmp_path / "renamed.parquet"
    renamed.write_bytes(path.read_bytes())
    assert import_fvqa(store, renamed).already_imported  # the content identifies an import, not the file's name
    assert count_episodes(store) == 3 and len(list_runs(store)) == 1
    forced = import_fvqa(store, path, again=True)
    assert not forced.already_imported and forced.run_id != first.run_id and count_episodes(store) == 6
    pq.write_table(_fvqa_table([fvqa_row(i) for i in range(4)]), path)  # new content: a new import
    assert import_fvqa(store, path).imported == 4


def test_importing_10000_rows_that_share_one_image_stays_under_500_mb():
    """Issue 14 item 19: this took 3.3 GB; rows now stream and the image is stored once (bench/import_memory.py)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "import_memory.py"), "--rows", "10000", "--image-side", "480"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["imported"] == 10000 and figures["stored_images"] == 1
    assert figures["peak_rss_mb"] <= 500, figures


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
            "images": [{"bytes": jpeg_bytes(i)}],
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


# MMSearch-R1's evaluation output, built the way its code builds it (multimodal-search-r1 at 583c6b4):
# - the dataset prepends the round-1 prompt (ending "Here is the image and the question:\n<image> ") to the FVQA
#   question, Qwen2.5-VL's chat template wraps it, and `<image>` becomes vision tokens (mm_rl_dataset.py);
# - the rollout appends, after a response that ends with a search tag and `<|im_end|>`, the results turn
#   "<|im_start|>user\nSearched results: <information>...</information>\nOriginal user's question: ...\n<prompt>
#   <|im_end|>\n<|im_start|>assistant\n" (vllm_rollout_spmd.py);
# - ray_trainer.py decodes prompt and response with skip_special_tokens=True and writes val_result_{N}.json with
#   pandas to_json(orient="records") of (step, input_text, output_text, score, reward_model, image_url).
# The prompts below are shortened; their first words, tags and endings are the real ones.
ROUND_1 = (
    "Answer the user's question based on the provided image. [...] invoke the image search tool by appending the "
    "string <search><img></search> at the end of your response. [...] When you are ready to answer the question, "
    "wrap your final answer between <answer> and </answer>, without detailed illustrations. For example: "
    "<answer>Titanic</answer>.\nHere is the image and the question:\n<image> "
)
AFTER_IMAGE = (
    "Please extract the visual element relevant to the user's question [...] If you decide to give the final answer, "
    "place it inside <answer> and </answer>, without detailed explanation or illustration.\nFor example: "
    "<answer>Titanic</answer>"
)
AFTER_TEXT = (
    "Please analyze the search results and the user's question and continue reasoning inside <reason> and "
    "</reason>. [...] The answer must be concise, clear, and to the point, without any additional explanation."
)
QUESTION = "Which mountain is this, and how tall is it in metres?"


def mmsearch_prompt(question: str) -> str:
    user = (ROUND_1 + question).replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")
    return f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def mmsearch_results_turn(results: str, question: str, after: str) -> str:
    message = f"Searched results: <information>{results}</information>\nOriginal user's question: {question}\n{after}"
    return "<|im_start|>user\n" + message + "<|im_end|>\n<|im_start|>assistant\n"


def mmsearch_response(question: str) -> str:
    """Three rounds: whole-image search, text search, answer; each model response ends with <|im_end|>."""
    return (
        "<reason>I cannot identify this peak.</reason>\n<search><img></search><|im_end|>"
        + mmsearch_results_turn("[Image Search Results] 1. Matterhorn - Wikipedia", question, AFTER_IMAGE)
        + "<reason>It is the Matterhorn; I need its height.</reason>\n<text_search>Matterhorn height</text_search><|im_end|>"
        + mmsearch_results_turn("[Text Search Results] The Matterhorn is 4,478 m high.", question, AFTER_TEXT)
        + "<reason>The results give the height.</reason>\n<answer>Matterhorn, 4478 m</answer><|im_end|>"
    )


def skip_special_tokens(text: str) -> str:
    """What tokenizer.decode(ids, skip_special_tokens=True) leaves of these special tokens: nothing."""
    return re.sub(r"<\|(?:im_start|im_end|vision_start|vision_end|image_pad)\|>", "", text)


def test_mmsearch_r1_real_decoded_output_splits_turns_and_finds_the_question(store, tmp_path):
    decoded = skip_special_tokens(mmsearch_response(QUESTION))
    assert "</search>user\nSearched results" in decoded  # the join the real output has: no newline before `user`
    records = [
        {
            "step": 0,
            "input_text": skip_special_tokens(mmsearch_prompt(QUESTION)),
            "output_text": decoded,
            "score": 0.9,
            "reward_model": {"ground_truth": "Matterhorn", "candidate_answers": '["Monte Cervino"]', "style": "rule"},
            "image_url": "https://x/y.jpg",
        },
        {  # the same episode decoded with its special tokens kept
            "step": 0,
            "input_text": mmsearch_prompt("What is this dish?"),
            "output_text": mmsearch_response("What is this dish?"),
            "score": 0.1,
            "reward_model": {"ground_truth": "Paella", "candidate_answers": "[]", "style": "rule"},
            "image_url": None,
        },
        {"step": 0, "input_text": None, "output_text": "x", "score": 0.0},
        {"step": 0, "input_text": mmsearch_prompt(QUESTION), "output_text": "y", "score": "high"},
    ]
    path = tmp_path / "val_result_4.json"
    pd.DataFrame(records).to_json(path, orient="records", indent=2)
    report = import_mmsearch_r1(store, path)
    assert report.imported == 2 and [b.row for b in report.bad_rows] == [3, 4]
    episodes = [load_episode(store, e.id) for e in list_episodes(store, EpisodeFilter(run_ids=(report.run_id,))).items]
    assert {e.summary.question for e in episodes} == {QUESTION, "What is this dish?"}
    for detail in episodes:
        assert [t.action for t in detail.turns] == ["image_search_whole", "text_search", "answer"]
        assert [t.raw_text for t in detail.turns][1] == (
            "<reason>It is the Matterhorn; I need its height.</reason>\n<text_search>Matterhorn height</text_search>"
        )
        assert [c.information for t in detail.turns for c in t.tool_calls] == [
            "[Image Search Results] 1. Matterhorn - Wikipedia",
            "[Text Search Results] The Matterhorn is 4,478 m high.",
        ]
        assert detail.summary.final_answer == "Matterhorn, 4478 m" and detail.format_ok is True
    decoded_one = next(e for e in episodes if e.summary.question == QUESTION)
    assert decoded_one.summary.dialect == "mmsearch-r1" and decoded_one.summary.correct is True
    assert decoded_one.gold_answers == ["Matterhorn", "Monte Cervino"] and decoded_one.reward == 0.9


def test_question_markers_of_both_prompt_layouts():
    assert question_from_prompt(skip_special_tokens(mmsearch_prompt("What is it?\nBe brief."))) == (
        "What is it?\nBe brief."
    )
    assert question_from_prompt("system\nsys\nuser\nAnswer with tags.\nQuestion: Who built it?\nassistant\n") == (
        "Who built it?"
    )
    assert question_from_prompt("Who built it?") == "Who built it?"


# TRL 1.16 GRPOTrainer.log writes completions_{step:05d}.parquet as pd.DataFrame({"step": ..., "prompt": ...,
# "completion": ..., **rewards (one column per reward function), **extra (one per log_extra column),
# "advantage": ...}).to_parquet(path). This helper is that code, fed what the trainer would hold.
def trl_log(directory, step, prompts, completions, rewards, extra, advantages):
    table = {
        "step": [step] * len(prompts),
        "prompt": prompts,
        "completion": completions,
        **rewards,
        **extra,
        "advantage": advantages,
    }
    pd.DataFrame(table).to_parquet(directory / "completions" / f"completions_{step:05d}.parquet")


BRIDGE = "<|im_start|>user\nWho designed this bridge?<|im_end|>\n<|im_start|>assistant\n"
SEARCHED = (
    "<reason>search</reason><text_search>bridge designer</text_search><|im_end|>\n<|im_start|>user\n"
    "<information>Designed by John Roebling.</information><|im_end|>\n<|im_start|>assistant\n"
    "<reason>found</reason><answer>John Roebling</answer>"
)
CITY_PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which city is this?"}]}]
CITY_COMPLETION = [
    {"role": "assistant", "content": [{"type": "text", "text": "<reason>look</reason><img_search><img></img_search>"}]},
    {"role": "tool", "content": [{"type": "text", "text": "Skyline of Chicago"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "<reason>ok</reason><answer>Chicago</answer>"}]},
]


@pytest.fixture
def trl_logs(tmp_path):
    """Two logging steps of a run with two reward functions and two log_extra columns (one text, one number)."""
    (tmp_path / "completions").mkdir()
    trl_log(
        tmp_path,
        10,
        [BRIDGE, BRIDGE],
        [SEARCHED, "<answer>no reason given</answer>"],
        {"judge_reward": [1.0, 0.0], "format_reward": [1.0, float("nan")]},
        {"judge_verdict": ["MATCH: true", None], "search_calls": [1, 0]},
        [0.5, -0.5],
    )
    trl_log(
        tmp_path,
        20,
        [CITY_PROMPT],
        [CITY_COMPLETION],
        {"judge_reward": [1.0], "format_reward": [1.0]},
        {"judge_verdict": ["MATCH: true"], "search_calls": [1]},
        [0.0],
    )
    return tmp_path


def _by_question(store, run_id):
    out = {}
    for e in list_episodes(store, EpisodeFilter(run_ids=(run_id,))).items:
        out.setdefault(e.question, []).append(load_episode(store, e.id))
    return out


def test_trl_named_rewards_are_rewards_and_logged_extras_are_kept(store, trl_logs):
    report = import_trl_completions(
        store, trl_logs / "completions", reward_columns=["judge_reward", "format_reward"], correct_column="judge_reward"
    )
    assert report.imported == 3 and report.bad_rows == ()
    assert "kept as extras: judge_verdict, search_calls" in report.summary()
    by_q = _by_question(store, report.run_id)
    bridge = next(d for d in by_q["Who designed this bridge?"] if d.summary.correct)
    assert bridge.turns[0].tool_calls[0].information == "Designed by John Roebling."
    assert bridge.reward == 2.0  # the two rewards; the numeric extra (search_calls) is not summed in
    assert bridge.extra["extras"] == {"judge_verdict": "MATCH: true", "search_calls": 1}
    assert bridge.extra["advantage"] == 0.5
    bad = next(d for d in by_q["Who designed this bridge?"] if not d.summary.correct)
    assert bad.summary.status == "format_error" and bad.extra["rewards"] == {"judge_reward": 0.0}
    assert bad.extra["extras"] == {"judge_verdict": None, "search_calls": 0}  # a missing text never fails a row
    city = by_q["Which city is this?"][0]
    assert city.summary.n_whole == 1 and city.summary.final_answer == "Chicago" and city.extra["step"] == 20


def test_trl_without_named_rewards_keeps_every_column_and_says_how_to_name_them(store, trl_logs):
    report = import_trl_completions(store, trl_logs / "completions")
    assert report.imported == 3 and report.bad_rows == ()
    assert "name them with --reward-columns" in report.summary()
    details = [d for ds in _by_question(store, report.run_id).values() for d in ds]
    assert {d.reward for d in details} == {None}
    assert set(details[0].extra["extras"]) == {"judge_reward", "format_reward", "judge_verdict", "search_calls"}


def test_trl_reward_names_come_from_the_trainer_state_beside_the_logs(store, trl_logs):
    checkpoint = trl_logs / "checkpoint-20"
    checkpoint.mkdir()
    history = [{"step": 10, "reward": 0.5, "rewards/judge_reward/mean": 0.5, "rewards/format_reward/mean": 1.0}]
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 20, "log_history": history}))
    report = import_trl_completions(store, trl_logs / "completions")
    assert "reward columns: judge_reward, format_reward (the reward functions logged in" in report.summary()
    assert sorted(d.reward for ds in _by_question(store, report.run_id).values() for d in ds) == [0.0, 2.0, 2.0]


def test_trl_text_in_a_named_reward_column_is_a_bad_row_and_unknown_names_are_refused(store, trl_logs):
    with pytest.raises(ImportFileError, match=r"no columns \['nope'\]"):
        import_trl_completions(store, trl_logs / "completions", reward_columns=["nope"])
    report = import_trl_completions(store, trl_logs / "completions", reward_columns=["judge_verdict"])
    assert report.imported == 1 and [b.row for b in report.bad_rows] == [1, 3]
    assert "reward column 'judge_verdict' holds 'MATCH: true', not a number" in report.bad_rows[0].reason


def test_trl_completions_logged_again_at_later_steps_are_stored_once(store, tmp_path):
    """steps_per_generation=2: the generation of step 1 is logged at steps 1 and 2, the next at 3 and 4."""
    (tmp_path / "completions").mkdir()
    same = "<reason>known</reason><answer>John Roebling</answer>"
    first = ([BRIDGE] * 3, [same, same, SEARCHED], {"judge_reward": [1.0, 1.0, 1.0]}, {}, [0.0, 0.0, 0.0])
    second = ([BRIDGE] * 2, [same, "<answer>x</answer>"], {"judge_reward": [1.0, 0.0]}, {}, [0.5, -0.5])
    for step, logged in ((1, first), (2, first), (3, second), (4, second)):
        trl_log(tmp_path, step, *logged)
    report = import_trl_completions(store, tmp_path / "completions", reward_columns=["judge_reward"])
    assert report.rows == 10 and report.imported == 5  # two identical completions of one generation stay two
    assert "5 rows were completions logged again at a later step" in report.summary()
    details = [d for ds in _by_question(store, report.run_id).values() for d in ds]
    assert sorted(d.extra["logged_steps"] for d in details) == [[1, 2], [1, 2], [1, 2], [3, 4], [3, 4]]


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
