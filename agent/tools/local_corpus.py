"""Local text search over the user's own documents: SQLite FTS5 ranked by BM25. No key, no internet.

Build once from JSONL (one document per line: `text` required, `title`, `url`, `id` optional; `content`
or `body` are accepted for `text`) with `python -m agent search build-corpus docs.jsonl corpus.db`.
Results carry the document text as `page_text`, so the pipeline summarises them without fetching.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from agent.events import ResultItem
from agent.tools.http import ToolError
from agent.tools.sanitise import clean_text, result_item

_SCHEMA = """
CREATE VIRTUAL TABLE docs USING fts5(title, text, url UNINDEXED, doc_id UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2');
"""
TITLE_WEIGHT = 4.0  # a query word in the title counts as much as four in the body
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class CorpusReport:
    path: str
    documents: int
    skipped: tuple[str, ...]  # "line N: why", for lines that were not documents


def build_corpus(jsonl_path: str | Path, db_path: str | Path, *, max_chars: int = 200_000) -> CorpusReport:
    """(Re)build the FTS5 index at `db_path` from a JSONL file; bad lines are skipped and reported."""
    jsonl_path, db_path = Path(jsonl_path), Path(db_path)
    if not jsonl_path.is_file():
        raise FileNotFoundError(f"{jsonl_path}: no such file")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(db_path.name + ".building")
    tmp.unlink(missing_ok=True)
    skipped: list[str] = []
    count = 0
    db = sqlite3.connect(tmp)
    try:
        db.executescript(_SCHEMA)
        with jsonl_path.open(encoding="utf-8", errors="replace") as lines:
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError as exc:
                    skipped.append(f"line {n}: not JSON ({exc.msg})")
                    continue
                if not isinstance(doc, dict):
                    skipped.append(f"line {n}: not a JSON object")
                    continue
                text = doc.get("text") or doc.get("content") or doc.get("body")
                if not isinstance(text, str) or not text.strip():
                    skipped.append(f"line {n}: no `text`")
                    continue
                db.execute(
                    "INSERT INTO docs (title, text, url, doc_id) VALUES (?, ?, ?, ?)",
                    (
                        clean_text(doc.get("title") or "", max_chars=300),
                        clean_text(text, keep_newlines=True, max_chars=max_chars),
                        str(doc.get("url") or ""),
                        str(doc.get("id") or n),
                    ),
                )
                count += 1
        db.execute("INSERT INTO docs (docs) VALUES ('optimize')")
        db.commit()
    finally:
        db.close()
    tmp.replace(db_path)  # readers never see a half-built index
    return CorpusReport(str(db_path), count, tuple(skipped))


def fts_query(text: str) -> str:
    """A safe FTS5 MATCH expression: every word quoted (so user punctuation is never FTS5 syntax), OR-ed,
    letting BM25 rank documents that match more words higher."""
    words = list(dict.fromkeys(w.casefold() for w in _WORD.findall(text)))
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words[:32])


class LocalCorpusSearch:
    name = "local"

    def __init__(self, db_path: str | Path, *, page_chars: int = 12_000):
        self.db_path = Path(db_path)
        self.endpoint = str(self.db_path.resolve())  # the cache keys on it: two corpora, two answers
        self.page_chars = page_chars

    async def search(self, query: str, *, count: int) -> list[ResultItem]:
        return await asyncio.to_thread(self._search, query, count)

    def _search(self, query: str, count: int) -> list[ResultItem]:
        if not self.db_path.is_file():
            raise ToolError(
                f"local corpus {self.db_path} does not exist: build it with `python -m agent search build-corpus docs.jsonl {self.db_path}`"
            )
        match = fts_query(query)
        if not match:
            return []
        try:
            db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise ToolError(f"local corpus {self.db_path}: {exc}") from None
        try:
            rows = db.execute(
                "SELECT title, url, snippet(docs, 1, '', '', ' … ', 40), text FROM docs WHERE docs MATCH ? ORDER BY bm25(docs, ?, 1.0) LIMIT ?",
                (match, TITLE_WEIGHT, count),
            ).fetchall()
        except sqlite3.Error as exc:
            raise ToolError(f"local corpus {self.db_path}: {exc} (is it a corpus built by build-corpus?)") from None
        finally:
            db.close()
        return [
            result_item(
                title=title,
                url=url,
                snippet=snippet,
                source="local corpus",
                page_text=text[: self.page_chars] or snippet,
            )
            for title, url, snippet, text in rows
        ]
