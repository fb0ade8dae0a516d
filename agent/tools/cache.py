"""SQLite cache of tool results, keyed by the normalised request; the store the replay providers read.

A key is the sha256 of a canonical JSON of the request: the kind ("text"/"image"), the normalised query
(or the image's sha256) and whatever else changes the answer (result count, summariser, and the question
when a summariser writes a question-specific summary). The provider is stored beside the key, so a live
provider only reuses its own results while replay can answer from whichever provider recorded them.

Results are stored as canonical JSON text and replayed from that text, so a replayed result serialises
to exactly the stored bytes. Errors are never cached (they are usually transient).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.events import ResultItem, ToolResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_cache (
    key TEXT NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (key, provider)
);
CREATE INDEX IF NOT EXISTS tool_cache_by_key ON tool_cache (key, created_at);
"""


def normalise_query(query: str) -> str:
    """Same search, same key: Unicode NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def request_key(kind: str, request: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({"kind": kind, **request}).encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def result_to_json(result: ToolResult) -> str:
    """Canonical JSON of what a replay must reproduce. Per-call facts (latency, cache hit) and what the
    loop adds afterwards (crop box and image, grounding) are not part of a search result."""
    return _canonical(
        {
            "provider": result.provider,
            "items": [
                {
                    "title": i.title,
                    "snippet": i.snippet,
                    "url": i.url,
                    "thumbnail_url": i.thumbnail_url,
                    "source": i.source,
                    "page_text": i.page_text,
                }
                for i in result.items
            ],
            "summary": result.summary,
            "error": result.error,
        }
    )


def result_from_json(text: str, *, cache_hit: bool = True, latency_s: float = 0.0) -> ToolResult:
    data = json.loads(text)
    return ToolResult(
        provider=data["provider"],
        items=tuple(ResultItem(**item) for item in data["items"]),
        summary=data["summary"],
        error=data["error"],
        cache_hit=cache_hit,
        latency_s=latency_s,
    )


@dataclass(frozen=True)
class CacheEntry:
    key: str
    provider: str
    kind: str
    request: str
    result: str  # canonical JSON, exactly as stored
    created_at: float


class ToolCache:
    """A small SQLite table. Safe to share between threads (one connection behind a lock; WAL so a
    second process reading the same file does not block)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, kind: str, request: Mapping[str, Any], provider: str | None) -> CacheEntry | None:
        """The stored entry for this request from `provider`, or from any provider (newest) when None."""
        key = request_key(kind, request)
        sql = "SELECT key, provider, kind, request, result, created_at FROM tool_cache WHERE key = ?"
        args: tuple[Any, ...] = (key,)
        if provider is not None:
            sql += " AND provider = ?"
            args += (provider,)
        sql += " ORDER BY created_at DESC LIMIT 1"
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return CacheEntry(*row) if row else None

    def put(
        self, kind: str, request: Mapping[str, Any], result: ToolResult, *, settings: Mapping[str, Any] | None = None
    ) -> None:
        """Store a success under the request's key; `settings` are recorded beside it, not keyed."""
        if result.error is not None:
            return
        stored_request = _canonical({**request, **(settings or {})})
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tool_cache (key, provider, kind, request, result, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    request_key(kind, request),
                    result.provider,
                    kind,
                    stored_request,
                    result_to_json(result),
                    time.time(),
                ),
            )

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM tool_cache").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
