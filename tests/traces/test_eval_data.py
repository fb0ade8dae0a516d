"""Question sets for eval: parquet, JSONL, a run in the store and a hub dataset, with clear errors."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from agent.eval import item_key
from tests.traces.conftest import fvqa_sample
from traces.eval_data import QuestionSetError, hub_rows, load_question_set
from traces.importers.fvqa import import_fvqa

GOLD_FIRST = ["Spain", "Gautama Buddha", "Order of Hospitallers", "Tuileries Palace", "Portugal"]


def jpeg(color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, format="JPEG")
    return buf.getvalue()


def test_fvqa_parquet_gives_questions_images_golds_and_content_keys():
    qs = load_question_set(str(fvqa_sample()))
    assert qs.name == "fvqa_mini" and len(qs.items) == 5 and qs.skipped == ()
    assert [item.gold_answers[0] for item in qs.items] == GOLD_FIRST
    first = qs.items[0]
    assert first.question == "What is the country of origin of this food?"
    assert "Kingdom of Spain" in first.gold_answers  # candidate_answers are aliases
    assert isinstance(first.image, bytes) and first.image[:2] == b"\xff\xd8"
    assert first.data_source == "mmsearch_r1/infoseek_train_split" and first.row == 1
    assert first.key == item_key(first.question, first.image)
    assert len({item.key for item in qs.items}) == 5


def test_limit_and_data_source_filter():
    path = str(fvqa_sample())
    assert [i.row for i in load_question_set(path, limit=2).items] == [1, 2]
    assert load_question_set(path, data_sources=["nowhere"]).items == ()
    source = load_question_set(path).items[0].data_source
    assert len(load_question_set(path, data_sources=[source], limit=3).items) == 3


def test_parquet_with_missing_columns_names_them(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "Q?"}]], "data_source": ["x"]}), path)
    with pytest.raises(QuestionSetError, match=r"missing columns \['images', 'reward_model'\].*Nothing was run"):
        load_question_set(str(path))


def test_a_file_that_is_not_parquet_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(QuestionSetError, match="cannot read as parquet"):
        load_question_set(str(path))
    with pytest.raises(QuestionSetError, match="no such file"):
        load_question_set(str(tmp_path / "absent.parquet"))


def test_jsonl_paths_urls_and_answers(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(jpeg())
    lines = [
        {"question": "What colour?", "image": "imgs/a.jpg", "answers": ["red", "crimson"], "data_source": "colours"},
        {"question": "Which city?", "image": "https://example.org/x.jpg", "answers": "Paris"},
        {"question": "No picture?", "image": None, "answers": ["yes"]},
        {"question": "  ", "image": None, "answers": ["x"]},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    qs = load_question_set(str(path))
    assert [i.question for i in qs.items] == ["What colour?", "Which city?", "No picture?"]
    assert qs.items[0].image == str(tmp_path / "imgs" / "a.jpg") and qs.items[0].data_source == "colours"
    assert qs.items[0].gold_answers == ("red", "crimson") and qs.items[1].gold_answers == ("Paris",)
    assert qs.items[1].image == "https://example.org/x.jpg" and qs.items[2].image is None
    assert qs.skipped == ("line 4: empty question",)


def test_jsonl_with_missing_keys_names_them_and_the_lines(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(
        json.dumps({"question": "Q1", "image": None, "answers": ["a"]})
        + "\n"
        + json.dumps({"question": "Q2", "answer": "a"})
        + "\n"
    )
    with pytest.raises(QuestionSetError, match=r"missing keys 'image' \(lines 2\), 'answers' \(lines 2\)"):
        load_question_set(str(path))
    path.write_text("{not json\n")
    with pytest.raises(QuestionSetError, match="line 1: not JSON"):
        load_question_set(str(path))


def test_repeated_questions_get_distinct_keys(tmp_path):
    line = json.dumps({"question": "Same?", "image": None, "answers": ["a"]})
    path = tmp_path / "dup.jsonl"
    path.write_text(f"{line}\n{line}\n")
    keys = [item.key for item in load_question_set(str(path)).items]
    assert len(set(keys)) == 2 and keys[1] == keys[0] + "-1"


def test_a_question_set_in_the_store_has_the_same_keys_as_its_file(sqlite_store):
    path = fvqa_sample()
    import_fvqa(sqlite_store, path, run_name="fvqa questions")
    from_store = load_question_set("fvqa questions", store=sqlite_store)
    from_file = load_question_set(str(path))
    assert [i.key for i in from_store.items] == [i.key for i in from_file.items]
    assert [i.gold_answers for i in from_store.items] == [i.gold_answers for i in from_file.items]
    assert from_store.items[0].image == from_file.items[0].image


def test_the_hub_loader_reads_the_same_rows_through_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = fvqa_sample()
    rows, skipped = hub_rows("parquet", split="train", data_files=str(path))
    from_hub = list(rows)
    from_file = load_question_set(str(path)).items
    assert [(q, img, golds) for q, img, golds, _, _ in from_hub] == [
        (i.question, i.image, i.gold_answers) for i in from_file
    ]
    assert skipped == []


def test_an_unknown_hub_id_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(QuestionSetError, match="cannot load dataset 'nobody/no-such-set'.*hub access"):
        load_question_set("nobody/no-such-set")
