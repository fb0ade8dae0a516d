"""Columns and tables for evaluation, training jobs and idempotent imports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

- episodes: the judge's `verdict` (correct | incorrect | unknown) and `judge_reason`; `item_key`, a question's
  stable identity across runs (eval resume, paired comparison); `train_step`, the GRPO step of a rollout.
- runs: `content_sha256` of an imported file, so importing the same file again finds its run.
- jobs: the launch command, process (pid, host), who launched it and its step counters; `job_metrics`, the
  append-only history of what a job logged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("verdict", sa.String(10)))
        batch.add_column(sa.Column("judge_reason", sa.Text()))
        batch.add_column(sa.Column("item_key", sa.String(200)))
        batch.add_column(sa.Column("train_step", sa.Integer()))
    op.create_index("ix_episodes_run_item", "episodes", ["run_id", "item_key"])
    op.create_index("ix_episodes_run_step", "episodes", ["run_id", "train_step"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("content_sha256", sa.String(64)))
    op.create_index("ix_runs_content_sha256", "runs", ["content_sha256"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("command", sa.JSON()))
        batch.add_column(sa.Column("pid", sa.Integer()))
        batch.add_column(sa.Column("host", sa.String(200)))
        batch.add_column(sa.Column("launched_by", sa.String(100)))
        batch.add_column(sa.Column("step", sa.Integer()))
        batch.add_column(sa.Column("max_steps", sa.Integer()))
    op.create_table(
        "job_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
    )
    op.create_index("ix_job_metrics_job_step", "job_metrics", ["job_id", "step", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_metrics_job_step", table_name="job_metrics")
    op.drop_table("job_metrics")
    with op.batch_alter_table("jobs") as batch:
        for column in ("max_steps", "step", "launched_by", "host", "pid", "command"):
            batch.drop_column(column)
    op.drop_index("ix_runs_content_sha256", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("content_sha256")
    op.drop_index("ix_episodes_run_step", table_name="episodes")
    op.drop_index("ix_episodes_run_item", table_name="episodes")
    with op.batch_alter_table("episodes") as batch:
        for column in ("train_step", "item_key", "judge_reason", "verdict"):
            batch.drop_column(column)
