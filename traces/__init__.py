"""The trace store (DESIGN.md §3.5): every episode event durable in SQLite (WAL) or any SQLAlchemy database.

    from traces import open_store, Recorder, EpisodeFilter
    from traces.queries import list_episodes
    from traces.replay import episode_events
    store = open_store("runs/traces.db")              # or "postgresql+psycopg://user:pw@host/db"
    recorder = Recorder(store, run_kind="demo")       # pass as run_episode(..., on_event=recorder)
    page = list_episodes(store, EpisodeFilter(pattern="crop", review="none"), limit=50)
    events = episode_events(store, page.items[0].id)  # the agent's own event objects, images included

Modules: models (schema), migrate (+ migrations/), store (connections, transactions, images, runs), recorder,
queries, stats, replay, annotations, agreement, verdicts, jobs, eval_data, eval_runs, importers/, export_sft,
export_annotations, cli (python -m traces). Each function module takes the store as its first argument and imports store.py; the
store imports none of them.
"""

from traces.errors import (
    AmbiguousIdError,
    CorruptDatabaseError,
    ForeignDatabaseError,
    NotFoundError,
    SchemaTooNewError,
    StoreError,
)
from traces.queries import EpisodeFilter
from traces.recorder import Recorder
from traces.records import (
    AgreementRow,
    AnnotationRecord,
    EpisodeDetail,
    EpisodeSummary,
    JobRecord,
    LabelSet,
    Page,
    RunRecord,
    ToolCallRecord,
    TurnRecord,
)
from traces.store import TraceStore, open_store

__all__ = [
    "AmbiguousIdError",
    "AgreementRow",
    "AnnotationRecord",
    "CorruptDatabaseError",
    "EpisodeDetail",
    "EpisodeFilter",
    "EpisodeSummary",
    "ForeignDatabaseError",
    "JobRecord",
    "LabelSet",
    "NotFoundError",
    "Page",
    "Recorder",
    "RunRecord",
    "SchemaTooNewError",
    "StoreError",
    "ToolCallRecord",
    "TraceStore",
    "TurnRecord",
    "open_store",
]
