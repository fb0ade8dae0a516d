"""Schema and migrations: models == migrations, older stores migrate, newer/corrupt/foreign files are refused untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from traces import CorruptDatabaseError, ForeignDatabaseError, SchemaTooNewError, StoreError, open_store
from traces.annotations import get_label_set
from traces.migrate import alembic_config, head_revision
from traces.models import VERSION_TABLE, Base
from traces.queries import list_episodes

from .helpers import synthetic_episode


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_migrations_create_exactly_the_models(store):
    with store.write() as conn:
        # The full-text index (FTS5 tables / GIN expression index) is dialect-specific DDL outside the models.
        def include(name, type_, _parent):
            return not (name or "").startswith(("episodes_fts", "ix_episodes_search_text"))

        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "include_name": include})
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []


def test_new_sqlite_store_is_wal_at_head(tmp_path):
    store = open_store(tmp_path / "new" / "t.db")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar() == head_revision()
    store.close()


def test_older_store_is_migrated_and_backfilled(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql("INSERT INTO runs (name, kind, config, created_at) VALUES ('old', 'demo', '{}', 1.0)")
        conn.exec_driver_sql(
            "INSERT INTO episodes (uid, run_id, question, gold_answers, config, status, reason, n_turns, n_tool_calls, n_text, "
            "n_whole, n_crop, n_format_errors, self_corrected, response_tokens, started_at, updated_at, extra, search_text) "
            "VALUES ('e1', 1, 'Which cathedral is this?', '[]', '{}', 'answered', '', 1, 0, 0, 0, 0, 0, 0, 5, 1.0, 1.0, '{}', "
            "'Which cathedral is this? Notre-Dame')"
        )
        conn.exec_driver_sql(
            "INSERT INTO annotations (episode_id, annotator, created_at, label_set, labels, correct, approved, comment) "
            "VALUES (1, 'ana', 2.0, 'default', '[]', 1, 1, '')"
        )
    engine.dispose()

    store = open_store(path)
    from traces import EpisodeFilter

    summary = list_episodes(store, EpisodeFilter(text="cathedral")).items[0]
    assert summary.id == "e1"
    assert summary.review_state == "approved" and summary.human_correct is True
    assert "good_trajectory" in get_label_set(store).labels
    store.close()


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "t.db"
    open_store(path).close()
    con = sqlite3.connect(path)
    con.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    before = _sha(path)
    with pytest.raises(SchemaTooNewError, match="newer than this code"):
        open_store(path)
    assert _sha(path) == before


def test_newer_schema_is_refused_on_postgres(pg_url):
    open_store(pg_url).close()
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(SchemaTooNewError):
        open_store(pg_url)


def test_corrupt_file_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = _sha(path)
    with pytest.raises(CorruptDatabaseError, match="not a SQLite database"):
        open_store(path)
    assert _sha(path) == before


def test_damaged_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "t.db"
    open_store(path).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wipe the schema page after the header
    path.write_bytes(bytes(data))
    before = _sha(path)
    with pytest.raises(CorruptDatabaseError):
        open_store(path)
    assert _sha(path) == before


def test_foreign_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('x')")
    con.commit()
    con.close()
    before = _sha(path)
    with pytest.raises(ForeignDatabaseError, match="not a trace store.*customers"):
        open_store(path)
    assert _sha(path) == before


def test_directory_path_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_store(tmp_path)


def test_images_are_stored_once(store):
    from traces import Recorder

    from .helpers import make_image

    image = make_image(3)
    recorder = Recorder(store)
    for _ in range(3):
        for event in synthetic_episode(image=image):
            recorder(event)
    with store.read() as conn:
        # one input image + one crop, however many episodes use them
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM images").scalar() == 2
