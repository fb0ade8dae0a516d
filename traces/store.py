"""The trace store's core: the database connections, transactions, images and runs.

`open_store(db)` validates and migrates the database, then returns a `TraceStore`. Writes go through
`store.write()` (one transaction; on SQLite also serialised by a per-file lock so threads of one process never
contend for SQLite's write lock); reads through `store.read()` (one snapshot). Everything else is a function of
the store in its own module, which imports this one (never the other way round): `traces.queries` (lists,
episodes, runs), `traces.stats` (run statistics), `traces.replay` (episode -> agent events), `traces.annotations`,
`traces.agreement`, `traces.verdicts`, `traces.jobs`.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent.events import image_png_bytes, image_sha256
from agent.images import load_image
from traces.engine import Target, make_engines, resolve
from traces.errors import NotFoundError
from traces.migrate import check_sqlite_file, enable_wal, upgrade
from traces.models import episodes, images, runs
from traces.records import decode_image

_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(key: str) -> threading.RLock:
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def open_store(db: str | os.PathLike[str], *, recover: bool = True) -> TraceStore:
    """Open (creating or migrating as needed) the trace store at a path or SQLAlchemy URL.

    Raises CorruptDatabaseError / ForeignDatabaseError / SchemaTooNewError with a message saying what to do;
    such files are never modified. With `recover`, episodes left `running` by a dead process on this host are
    marked `interrupted`.
    """
    target = resolve(db)
    if target.sqlite_path is not None:
        check_sqlite_file(target.sqlite_path)
        target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    writer, reader = make_engines(target)
    try:
        if target.is_sqlite:
            enable_wal(writer)
        upgrade(writer, target)
    except BaseException:
        writer.dispose()
        reader.dispose()
        raise
    store = TraceStore(target, writer, reader)
    if recover:
        store.recover_interrupted()
    return store


class TraceStore:
    def __init__(self, target: Target, writer: Engine, reader: Engine):
        self.target = target
        self._writer = writer
        self._reader = reader
        self._lock = _file_lock(str(target.sqlite_path)) if target.is_sqlite else None
        self.dialect = writer.dialect.name

    # ---- plumbing ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._writer.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.target.is_sqlite

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction, committed on exit (durably: fsync'd on SQLite), rolled back on error."""
        if self._lock is None:
            with self._writer.begin() as conn:
                yield conn
            return
        with self._lock, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One consistent read snapshot."""
        with self._reader.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def integrity_check(self) -> str:
        """'ok' when SQLite's full integrity check passes (servers: 'ok' when reachable)."""
        with self.read() as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("SELECT 1")
                return "ok"
            rows = conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    def insert_ignore(
        self, conn: Connection, table: Any, values: dict[str, Any] | list[dict[str, Any]], key: str
    ) -> None:
        """INSERT ... ON CONFLICT (key) DO NOTHING, on SQLite and Postgres alike."""
        make = pg_insert if self.dialect == "postgresql" else sqlite_insert
        conn.execute(make(table).values(values).on_conflict_do_nothing(index_elements=[key]))

    # ---- images -----------------------------------------------------------------------------------

    def put_image(
        self,
        conn: Connection,
        image: Image.Image | None = None,
        *,
        data: bytes | None = None,
        sha256: str | None = None,
    ) -> str:
        """Store an image once under its content address and return the address.

        Give a PIL image (stored as PNG) or encoded bytes (stored as they are; decoded once to compute the
        address and size). `sha256`, when the caller already knows the agent's address, skips re-encoding for
        images that are already stored.
        """
        if image is not None and sha256 is None:
            sha256 = image_sha256(image)  # hashing pixels is far cheaper than the PNG encode it may save
        if sha256 is not None and conn.execute(select(images.c.sha256).where(images.c.sha256 == sha256)).first():
            return sha256
        if image is None:
            if data is None:
                raise ValueError("put_image needs an image or its bytes")
            image = load_image(data)
            mime = Image.MIME.get(Image.open(io.BytesIO(data)).format or "", "application/octet-stream")
            blob = data
        else:
            blob = image_png_bytes(image)
            mime = "image/png"
        sha = sha256 or image_sha256(image)
        self.insert_ignore(
            conn,
            images,
            {
                "sha256": sha,
                "mime": mime,
                "width": image.width,
                "height": image.height,
                "data": blob,
                "created_at": time.time(),
            },
            "sha256",
        )
        return sha

    def image_bytes(self, sha256: str) -> tuple[bytes, str]:
        with self.read() as conn:
            row = conn.execute(select(images.c.data, images.c.mime).where(images.c.sha256 == sha256)).first()
        if row is None:
            raise NotFoundError(f"no image {sha256} in the store")
        return bytes(row.data), row.mime

    def image(self, sha256: str) -> Image.Image:
        image = decode_image(self.image_bytes(sha256)[0])
        assert image is not None
        return image

    # ---- runs -------------------------------------------------------------------------------------

    def create_run(
        self,
        name: str,
        kind: str,
        *,
        model: str | None = None,
        backend: str | None = None,
        dialect: str | None = None,
        checkpoint: str | None = None,
        dataset: str | None = None,
        source: str | None = None,
        config: dict[str, Any] | None = None,
        content_sha256: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        values = {
            "name": name,
            "kind": kind,
            "model": model,
            "backend": backend,
            "dialect": dialect,
            "checkpoint": checkpoint,
            "dataset": dataset,
            "source": source,
            "config": config or {},
            "content_sha256": content_sha256,
            "created_at": time.time(),
        }
        if conn is not None:
            return int(conn.execute(insert(runs).values(values).returning(runs.c.id)).scalar_one())
        with self.write() as c:
            return int(c.execute(insert(runs).values(values).returning(runs.c.id)).scalar_one())

    def recording_run(
        self,
        name: str,
        kind: str,
        *,
        model: str | None,
        backend: str | None,
        dialect: str | None,
        checkpoint: str | None = None,
        dataset: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> int:
        """The run that recordings of this kind, name, model, backend, dialect and checkpoint go into.

        Created at the first such recording, then shared by every later process recording into this store (two
        `python -m agent ask --db F` calls with one model land in one run). `dataset` and `config` are kept from
        the recording that created the run.
        """
        r = runs.c
        same = (
            r.name == name,
            r.kind == kind,
            r.model.is_not_distinct_from(model),
            r.backend.is_not_distinct_from(backend),
            r.dialect.is_not_distinct_from(dialect),
            r.checkpoint.is_not_distinct_from(checkpoint),
        )
        with self.write() as conn:
            if self.dialect == "postgresql":
                # Two processes must not both miss the run and create two: this lock makes the find-or-create
                # atomic (on SQLite the write transaction's BEGIN IMMEDIATE already does).
                conn.exec_driver_sql("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")
            found = conn.execute(select(r.id).where(*same).order_by(r.id).limit(1)).scalar()
            if found is not None:
                return int(found)
            return self.create_run(
                name,
                kind,
                model=model,
                backend=backend,
                dialect=dialect,
                checkpoint=checkpoint,
                dataset=dataset,
                config=config,
                conn=conn,
            )

    # ---- episodes ---------------------------------------------------------------------------------

    def recover_interrupted(self) -> int:
        """Mark `running` episodes whose recording process on this host is gone as `interrupted`."""
        host = socket.gethostname()
        with self.read() as conn:
            writers = [
                w
                for (w,) in conn.execute(select(episodes.c.writer).where(episodes.c.status == "running").distinct())
                if w
            ]
        dead = [w for w in writers if w.split(":")[0] == host and not writer_alive(w)]
        if not dead:
            return 0
        with self.write() as conn:
            n = 0
            for w in dead:
                pid = w.split(":")[1]
                n += conn.execute(
                    update(episodes)
                    .where(episodes.c.status == "running", episodes.c.writer == w)
                    .values(
                        status="interrupted",
                        reason=f"the recording process (pid {pid}) ended before the episode finished",
                        updated_at=time.time(),
                    )
                ).rowcount
        return n

    def episode_pk(self, conn: Connection, episode_id: str) -> int:
        pk = conn.execute(select(episodes.c.id).where(episodes.c.uid == episode_id)).scalar()
        if pk is None:
            raise NotFoundError(f"no episode {episode_id!r} in {self.url}")
        return int(pk)


# ---- which process is recording ------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time in clock ticks since boot) from /proc (Linux); ('', '') elsewhere.

    The start time guards against pid reuse; the state catches a killed child its parent has not reaped yet
    (a zombie still answers kill(pid, 0)).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        fields = stat.rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return "", ""


def writer_token() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_stat(pid)[1]}"


def writer_alive(token: str) -> bool:
    try:
        _host, pid_text, start = token.split(":", 2)
        pid = int(pid_text)
    except ValueError:
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    state, now_start = _proc_stat(pid)
    if state in ("Z", "X"):
        return False
    return not start or now_start in ("", start)
