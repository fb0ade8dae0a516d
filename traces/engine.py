"""Engines for the trace store: SQLite in WAL mode with durable commits, or any SQLAlchemy URL.

SQLite notes (why the settings below):
- `journal_mode=WAL`: readers never block the writer and vice versa, so the UI can browse while episodes record.
- `synchronous=FULL`: every commit fsyncs the WAL, so a committed event survives a power cut, not only a killed
  process (NORMAL would lose the last commits on power loss). Measured at ~0.5 ms per commit on our disks.
- Write transactions start with `BEGIN IMMEDIATE`: a deferred transaction that reads first and writes later can
  fail with SQLITE_BUSY ("database is locked") without ever waiting on `busy_timeout`; taking the write lock up
  front makes concurrent writers (other processes) queue on the busy timeout instead. Inside one process writes
  are also serialised by a lock in `TraceStore`, so threads never even contend on SQLite's lock.
- pysqlite's own transaction handling is switched off (`isolation_level=None`) so that SQLAlchemy's `begin`
  event decides exactly which BEGIN is sent (the documented SQLAlchemy recipe for SQLite).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Target:
    """Where the store lives: a SQLite file path, or a server URL."""

    url: str
    sqlite_path: Path | None  # None for server databases

    @property
    def is_sqlite(self) -> bool:
        return self.sqlite_path is not None


def resolve(db: str | os.PathLike[str]) -> Target:
    """A path becomes a SQLite file; anything with '://' is an SQLAlchemy URL (sqlite:/// URLs included)."""
    text = os.fspath(db)
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        return Target(f"sqlite+pysqlite:///{path}", path)
    url = make_url(text)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("an in-memory SQLite store cannot be shared between connections; give a file path")
        path = Path(url.database).expanduser().resolve()
        return Target(f"sqlite+pysqlite:///{path}", path)
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("", "psycopg2") and not _has("psycopg2"):
        url = url.set(drivername="postgresql+psycopg")  # we ship psycopg 3
    return Target(url.render_as_string(hide_password=False), None)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def make_engines(target: Target) -> tuple[Engine, Engine]:
    """(writer, reader) engines. On servers both are one engine; on SQLite they differ in how they BEGIN."""
    if not target.is_sqlite:
        engine = create_engine(target.url, pool_pre_ping=True, pool_size=5, max_overflow=30)
        return engine, engine
    return _sqlite_engine(target.url, "BEGIN IMMEDIATE"), _sqlite_engine(target.url, "BEGIN")


def configure_sqlite(dbapi_connection: sqlite3.Connection) -> None:
    """Settings for every connection to a store file."""
    dbapi_connection.isolation_level = None  # we send BEGIN ourselves (SQLAlchemy's begin event below)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache per connection
    cursor.execute("PRAGMA mmap_size = 268435456")
    cursor.close()


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=4,
        max_overflow=40,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        configure_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(begin)

    return engine
