"""Annotations as a table (one row per annotation version or per current annotation) and the agreement table.

Writes PATH (CSV, JSONL or Parquet by suffix) and, beside it, PATH-stem + "_agreement" with one row per label and
verdict field: statistic (cohen/fleiss), kappa, observed agreement, items and annotators.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from traces.agreement import agreement_table
from traces.models import annotations, episodes

if TYPE_CHECKING:
    from traces.store import TraceStore


@dataclass(frozen=True)
class AnnotationExportReport:
    path: Path
    agreement_path: Path
    rows: int

    def summary(self) -> str:
        return f"wrote {self.rows} annotation rows to {self.path} and agreement to {self.agreement_path}"


def _write(frame, path: Path) -> None:  # type: ignore[no-untyped-def]
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"{path}: use a .csv, .jsonl or .parquet file name")


def export_annotations(
    store: TraceStore, path: str | os.PathLike[str], *, run_id: int | None = None, history: bool = False
) -> AnnotationExportReport:
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
        raise ValueError(f"{path}: use a .csv, .jsonl or .parquet file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    stmt = (
        select(
            annotations,
            episodes.c.uid,
            episodes.c.run_id,
            episodes.c.question,
            episodes.c.final_answer,
            episodes.c.review_state,
        )
        .join(episodes, episodes.c.id == annotations.c.episode_id)
        .order_by(annotations.c.id)
    )
    if run_id is not None:
        stmt = stmt.where(episodes.c.run_id == run_id)
    with store.read() as conn:
        rows = conn.execute(stmt).all()
    newest: dict[tuple[int, str], int] = {}
    for r in rows:
        newest[(r.episode_id, r.annotator)] = r.id
    records = [
        {
            "episode_id": r.uid,
            "run_id": r.run_id,
            "question": r.question,
            "final_answer": r.final_answer,
            "annotator": r.annotator,
            "annotation_id": r.id,
            "supersedes_id": r.supersedes_id,
            "current": newest[(r.episode_id, r.annotator)] == r.id,
            "created_at": r.created_at,
            "label_set": r.label_set,
            "labels": ";".join(r.labels or []),
            "correct": r.correct,
            "corrected_answer": r.corrected_answer,
            "crop_verdict": r.crop_verdict,
            "approved": r.approved,
            "comment": r.comment,
            "review_state": r.review_state,
        }
        for r in rows
        if history or newest[(r.episode_id, r.annotator)] == r.id
    ]
    columns = [
        "episode_id",
        "run_id",
        "question",
        "final_answer",
        "annotator",
        "annotation_id",
        "supersedes_id",
        "current",
        "created_at",
        "label_set",
        "labels",
        "correct",
        "corrected_answer",
        "crop_verdict",
        "approved",
        "comment",
        "review_state",
    ]
    _write(pd.DataFrame(records, columns=columns), path)
    agreement_path = path.with_name(f"{path.stem}_agreement{path.suffix}")
    table = [asdict(row) for row in agreement_table(store, run_id=run_id)]
    _write(
        pd.DataFrame(table, columns=["item", "statistic", "kappa", "observed_agreement", "items", "annotators"]),
        agreement_path,
    )
    return AnnotationExportReport(path, agreement_path, len(records))
