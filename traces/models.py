"""The trace-store schema as SQLAlchemy 2 declarative models (DESIGN.md §3.5).

The tables are written by `traces.recorder` / the importers and read by `traces.queries`. Alembic migrations in
`traces/migrations/versions` create exactly this schema; `tests/traces/test_schema.py` checks they never drift.

Choices that matter:
- Timestamps are UTC epoch seconds in floats: the same on SQLite and Postgres, and cheap to compare in keyset
  pagination.
- Episodes have an integer primary key (`id`, used by joins, the full-text index and the keyset cursor) and the
  agent's string episode id (`uid`, the public id everywhere in the API).
- Images are content-addressed by the agent's `image_sha256` (sha256 of the PNG encoding of the decoded RGB
  pixels) and stored once, in the encoding they arrived in (PNG from the agent, JPEG from a parquet import).
- A few per-episode counters (tool counts, review state) are denormalised on `episodes` so that filters and the
  list page never join the large `turns` / `tool_calls` tables.
- Annotations are append-only: an edit is a new row pointing at the one it supersedes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic's bookkeeping table gets our own name so that a database written by some other Alembic-managed
# application is recognised as foreign instead of "a trace store with an unknown revision".
VERSION_TABLE = "traces_alembic_version"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    """A batch of episodes produced one way: a demo session, an eval, GRPO rollouts, an import, a question set."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # demo | eval | rollout | questions | import
    model: Mapped[str | None] = mapped_column(String(300))
    backend: Mapped[str | None] = mapped_column(String(50))
    dialect: Mapped[str | None] = mapped_column(String(50))
    checkpoint: Mapped[str | None] = mapped_column(String(500))
    dataset: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(Text)  # imported file(s)
    # sha256 of an imported file's content (with the importer's name): importing it again finds this run
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_content_sha256", "content_sha256"),
    )


class ImageBlob(Base):
    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    mime: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)


class Episode(Base):
    __tablename__ = "episodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(Text)
    image_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"))
    gold_answers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    model: Mapped[str | None] = mapped_column(String(300))
    backend: Mapped[str | None] = mapped_column(String(50))
    dialect: Mapped[str | None] = mapped_column(String(50))
    dataset: Mapped[str | None] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # running | pending (imported question, not run yet) | interrupted | the loop's EpisodeStatus values
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    final_answer: Mapped[str | None] = mapped_column(Text)
    correct: Mapped[bool | None] = mapped_column(Boolean)  # judge verdict (None: not judged)
    judge: Mapped[str | None] = mapped_column(String(200))
    judge_score: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(10))  # correct | incorrect | unknown (None: not judged)
    judge_reason: Mapped[str | None] = mapped_column(Text)
    # A question's stable identity across runs (dataset + row, or a content hash): resume and paired comparison
    item_key: Mapped[str | None] = mapped_column(String(200))
    train_step: Mapped[int | None] = mapped_column(Integer)  # GRPO step that produced a rollout episode
    reward: Mapped[float | None] = mapped_column(Float)  # imported rollouts' score
    format_ok: Mapped[bool | None] = mapped_column(Boolean)
    n_turns: Mapped[int] = mapped_column(Integer, default=0)
    n_tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    n_text: Mapped[int] = mapped_column(Integer, default=0)
    n_whole: Mapped[int] = mapped_column(Integer, default=0)
    n_crop: Mapped[int] = mapped_column(Integer, default=0)
    n_format_errors: Mapped[int] = mapped_column(Integer, default=0)
    self_corrected: Mapped[bool] = mapped_column(Boolean, default=False)
    response_tokens: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_s: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    writer: Mapped[str | None] = mapped_column(String(200))  # host:pid:start of the recording process
    source_row: Mapped[int | None] = mapped_column(Integer)  # 1-based row of the imported file
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    search_text: Mapped[str] = mapped_column(Text, default="")  # question + answer + queries, full-text indexed
    # Derived from the current annotations by traces.annotations (revision 0002): none | annotated | approved |
    # rejected | disputed; human_correct is the annotators' consensus verdict (None when none or split).
    review_state: Mapped[str] = mapped_column(String(12), default="none", server_default="none")
    human_correct: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_episodes_started", "started_at", "id"),
        Index("ix_episodes_run_started", "run_id", "started_at", "id"),
        Index("ix_episodes_status_started", "status", "started_at", "id"),
        Index("ix_episodes_model", "model"),
        Index("ix_episodes_dataset", "dataset"),
        Index("ix_episodes_review_started", "review_state", "started_at", "id"),
        Index("ix_episodes_run_item", "run_id", "item_key"),
        Index("ix_episodes_run_step", "run_id", "train_step"),
    )


class Turn(Base):
    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)  # event order within the episode (TurnStarted)
    parsed_seq: Mapped[int | None] = mapped_column(Integer)  # event order of ActionParsed; None while streaming
    raw_text: Mapped[str] = mapped_column(Text, default="")
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str | None] = mapped_column(String(32))
    argument: Mapped[str] = mapped_column(Text, default="")
    format_ok: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("episode_id", "index", name="uq_turns_episode_index"),)


class ToolCall(Base):
    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    turn_index: Mapped[int] = mapped_column(Integer)
    call_index: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    finished_seq: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    argument: Mapped[str] = mapped_column(Text, default="")
    provider: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(12))  # started | finished
    items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    information: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    crop_x0: Mapped[int | None] = mapped_column(Integer)
    crop_y0: Mapped[int | None] = mapped_column(Integer)
    crop_x1: Mapped[int | None] = mapped_column(Integer)
    crop_y1: Mapped[int | None] = mapped_column(Integer)
    crop_image_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"))
    grounding_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    grounding_score: Mapped[float | None] = mapped_column(Float)
    grounding_note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("episode_id", "call_index", name="uq_tool_calls_episode_call"),)


class EventRow(Base):
    """Events with no table of their own (format errors, budget notices, model errors, answers), kept in order."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    turn_index: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_events_episode_seq", "episode_id", "seq"),)


class LabelSetRow(Base):
    """A named label vocabulary; a change is a new row (the newest row of a name is the live one)."""

    __tablename__ = "label_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    labels: Mapped[list[Any]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_label_sets_name", "name", "id"),)


class AnnotationRow(Base):
    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    annotator: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
    label_set: Mapped[str] = mapped_column(String(100))
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    corrected_answer: Mapped[str | None] = mapped_column(Text)
    crop_verdict: Mapped[str | None] = mapped_column(String(32))  # right_region | wrong_region | should_not_crop
    approved: Mapped[bool | None] = mapped_column(Boolean)  # fit to become training data
    comment: Mapped[str] = mapped_column(Text, default="")
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("annotations.id"))

    __table_args__ = (Index("ix_annotations_episode_annotator", "episode_id", "annotator", "id"),)


class Job(Base):
    """A training or eval job launched from the app or CLI, and where it got to."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # sft | grpo | eval | ...
    name: Mapped[str] = mapped_column(String(200))
    # queued | running | cancelling | succeeded | failed | cancelled | interrupted (traces.jobs.JOB_STATUSES)
    status: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    command: Mapped[list[Any] | None] = mapped_column(JSON)  # argv the job was launched with
    pid: Mapped[int | None] = mapped_column(Integer)  # process group leader of the job
    host: Mapped[str | None] = mapped_column(String(200))  # where pid lives
    launched_by: Mapped[str | None] = mapped_column(String(100))
    step: Mapped[int | None] = mapped_column(Integer)
    max_steps: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_jobs_status", "status", "id"),)


class JobMetric(Base):
    """Metrics a job logged at one step (append-only: the history behind the Train tab's charts)."""

    __tablename__ = "job_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_job_metrics_job_step", "job_id", "step", "id"),)


runs = Run.__table__
images = ImageBlob.__table__
episodes = Episode.__table__
turns = Turn.__table__
tool_calls = ToolCall.__table__
events = EventRow.__table__
label_sets = LabelSetRow.__table__
annotations = AnnotationRow.__table__
jobs = Job.__table__
job_metrics = JobMetric.__table__
