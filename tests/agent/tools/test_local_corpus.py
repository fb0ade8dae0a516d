"""The local FTS5 corpus: build from JSONL, BM25 ranking, safe queries, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.aio import run_sync
from agent.tools.local_corpus import LocalCorpusSearch, build_corpus, fts_query
from agent.tools.text_search import WebTextSearch

DOCS = [
    {
        "id": "eiffel",
        "title": "Eiffel Tower",
        "url": "https://en.wikipedia.org/wiki/Eiffel_Tower",
        "text": "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    },
    {
        "id": "ggb",
        "title": "Golden Gate Bridge",
        "text": "The Golden Gate Bridge is a suspension bridge in San Francisco, opened in 1937. <script>alert(1)</script>",
    },
    {
        "id": "louvre",
        "title": "Louvre",
        "content": "The Louvre is the world's most-visited museum, in Paris, near the tower of Saint-Jacques.",
    },
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = write_jsonl(
        tmp_path / "docs.jsonl", [json.dumps(d) for d in DOCS] + ["{broken", "[1, 2]", json.dumps({"title": "no text"})]
    )
    report = build_corpus(src, tmp_path / "corpus.db")
    assert report.documents == 3
    assert report.skipped == (
        "line 4: not JSON (Expecting property name enclosed in double quotes)",
        "line 5: not a JSON object",
        "line 6: no `text`",
    )
    return tmp_path / "corpus.db"


def test_bm25_ranks_the_best_match_first_and_carries_text(corpus):
    hits = run_sync(LocalCorpusSearch(corpus).search("When was the Eiffel tower completed?", count=5))
    assert (
        hits[0].title == "Eiffel Tower"
        and "1889" in hits[0].page_text
        and hits[0].url.startswith("https://en.wikipedia.org")
    )
    assert {h.title for h in hits} >= {"Eiffel Tower", "Louvre"}


def test_markup_in_documents_is_stripped_at_build_time(corpus):
    hits = run_sync(LocalCorpusSearch(corpus).search("golden gate", count=1))
    assert "alert" not in hits[0].page_text and "<" not in hits[0].page_text


def test_fts_syntax_in_queries_is_harmless(corpus):
    assert fts_query('tower" OR NEAR(x) *') == '"tower" OR "or" OR "near" OR "x"'
    assert run_sync(LocalCorpusSearch(corpus).search('"tower" AND (NEAR', count=5))
    assert run_sync(LocalCorpusSearch(corpus).search("!!!", count=5)) == []


def test_pipeline_over_the_corpus_needs_no_fetch(corpus):
    result = run_sync(
        WebTextSearch(LocalCorpusSearch(corpus), fetcher=None).search_text("Paris museum", question="Which museum?")
    )
    assert result.ok and result.provider == "local" and result.items[0].title == "Louvre"


def test_missing_corpus_says_how_to_build_it(tmp_path):
    result = run_sync(
        WebTextSearch(LocalCorpusSearch(tmp_path / "none.db"), fetcher=None).search_text("x", question="x")
    )
    assert "build-corpus" in result.error


def test_a_non_corpus_database_is_a_clear_error(tmp_path):
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    result = run_sync(
        WebTextSearch(LocalCorpusSearch(tmp_path / "other.db"), fetcher=None).search_text("x", question="x")
    )
    assert "is it a corpus built by build-corpus" in result.error
