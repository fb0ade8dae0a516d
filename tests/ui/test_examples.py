"""Example questions of the Ask tab: from the question sets in the trace store by default, from a named set or
a FVQA parquet (read by the FVQA importer's parser) when given, and a one-line hint when there are none. No
default points outside the repository."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from tests.conftest import REPO
from tests.traces.helpers import fvqa_row
from traces.importers.fvqa import import_fvqa
from traces.store import open_store
from ui.examples import load_examples, no_examples_hint
from ui.settings import app_config_from_args, build_parser


def _parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_a_fresh_store_has_no_examples_and_the_hint_says_how_to_get_some(tmp_path):
    store = open_store(tmp_path / "t.db")
    assert load_examples(None, store, tmp_path / "cache") == []
    assert "python -m traces import fvqa" in no_examples_hint() and "\n" not in no_examples_hint()


def test_an_imported_question_set_gives_examples_with_images_and_gold_answers(tmp_path):
    store = open_store(tmp_path / "t.db")
    import_fvqa(store, _parquet(tmp_path / "set.parquet", [fvqa_row(i) for i in range(3)]))
    examples = load_examples(None, store, tmp_path / "cache", limit=2)
    assert [e.question for e in examples] == ["Question 0?", "Question 1?"]
    assert examples[0].gold_answers == ("answer 0", "alias 0")
    assert Image.open(examples[0].image_path).format == "JPEG" and examples[0].image_path.endswith(".jpeg")


def test_a_named_set_or_a_parquet_file_is_read_and_a_wrong_name_gives_none(tmp_path):
    store = open_store(tmp_path / "t.db")
    path = _parquet(tmp_path / "set.parquet", [fvqa_row(1), {**fvqa_row(2), "prompt": []}, fvqa_row(3)])
    import_fvqa(store, path, run_name="mine")
    assert [e.question for e in load_examples("mine", store, tmp_path / "c")] == ["Question 1?", "Question 3?"]
    from_file = load_examples(str(path), store, tmp_path / "c")  # the bad row (no question) is skipped
    assert [(e.question, e.gold_answers[0]) for e in from_file] == [
        ("Question 1?", "answer 1"),
        ("Question 3?", "answer 3"),
    ]
    assert load_examples("no-such-set", store, tmp_path / "c") == []
    assert load_examples("none", store, tmp_path / "c") == []
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    assert load_examples(str(tmp_path / "bad.parquet"), store, tmp_path / "c") == []


def test_no_default_refers_to_a_path_outside_the_repository():
    app = app_config_from_args(build_parser().parse_args([]))
    assert app.examples is None  # the store's question sets
    for path in [REPO / "app.py", *REPO.glob("ui/*.py"), *REPO.glob("agent/**/*.py"), *REPO.glob("traces/**/*.py")]:
        text = path.read_text()
        assert "../shared" not in text and "shared/data" not in text, path
