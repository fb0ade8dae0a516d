"""SQLite cache of tool results; the store the replay providers read.

An entry is filed under two keys:
- `key`, the request: the kind ("text"/"image"), the normalised query (or the image's sha256) and the user's
  question (the summary answers it). Replay looks up by this alone and serves the newest recording, so an
  eval or RL run repeats offline without configuring the original provider or summariser.
- `source`, everything else that changes the result: provider, its endpoint, result counts, the page fetch
  policy (address guard, allowed networks, limits) and the summariser with its endpoint and model. A live
  tool is answered only by an entry with its own request *and* source, never one made for another endpoint,
  policy or summariser.

Results are stored as canonical JSON text and replayed from that text, so a replayed result serialises
to exactly the stored bytes. Errors are never cached (they are usually transient). A cache file written
before `source` existed is migrated on open: its entries keep serving replay, never a live tool.
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
    source TEXT NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    settings TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (key, source)
);
CREATE INDEX IF NOT EXISTS tool_cache_by_key ON tool_cache (key, created_at);
"""
_COLUMNS = "key, source, provider, kind, request, settings, result, created_at"


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
    source: str
    provider: str
    kind: str
    request: str  # canonical JSON of the request
    settings: str  # canonical JSON of the settings it was made under ("{}" for entries from before they were keyed)
    result: str  # canonical JSON, exactly as stored
    created_at: float


def settings_key(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(settings).encode("utf-8")).hexdigest()


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
        self._migrate_unkeyed()
        self._db.executescript(_SCHEMA)

    def _migrate_unkeyed(self) -> None:
        """Bring a cache file from before `source` was keyed to the current table, keeping every entry for
        replay: its settings are unknown, so its source ("unkeyed:<provider>") matches no live tool."""
        db = self._db

        def unkeyed() -> bool:
            columns = {row[1] for row in db.execute("PRAGMA table_info(tool_cache)")}
            return bool(columns) and "source" not in columns

        if not unkeyed():  # the usual case: no write lock taken
            return
        db.execute("BEGIN IMMEDIATE")  # two processes opening one old file: the second sees it migrated
        try:
            if unkeyed():
                db.execute("ALTER TABLE tool_cache RENAME TO tool_cache_unkeyed")
                db.execute("DROP INDEX IF EXISTS tool_cache_by_key")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(
                    f"INSERT OR IGNORE INTO tool_cache ({_COLUMNS}) SELECT key, 'unkeyed:' || provider, provider, "
                    "kind, request, '{}', result, created_at FROM tool_cache_unkeyed"
                )
                db.execute("DROP TABLE tool_cache_unkeyed")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _one(self, where: str, args: tuple[Any, ...]) -> CacheEntry | None:
        sql = f"SELECT {_COLUMNS} FROM tool_cache WHERE {where} ORDER BY created_at DESC LIMIT 1"
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return CacheEntry(*row) if row else None

    def get(self, kind: str, request: Mapping[str, Any], settings: Mapping[str, Any]) -> CacheEntry | None:
        """The entry for this request made under exactly these settings (a live tool's lookup)."""
        return self._one("key = ? AND source = ?", (request_key(kind, request), settings_key(settings)))

    def latest(self, kind: str, request: Mapping[str, Any]) -> CacheEntry | None:
        """The newest entry for this request under any settings (replay's lookup)."""
        return self._one("key = ?", (request_key(kind, request),))

    def put(self, kind: str, request: Mapping[str, Any], settings: Mapping[str, Any], result: ToolResult) -> None:
        """Store a success under the request and its settings; an error is not stored."""
        if result.error is not None:
            return
        row = (
            request_key(kind, request),
            settings_key(settings),
            result.provider,
            kind,
            _canonical(request),
            _canonical(settings),
            result_to_json(result),
            time.time(),
        )
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO tool_cache ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM tool_cache").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
