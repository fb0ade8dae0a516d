"""Annotations: several identified annotators per episode, a configurable label set, and full history.

Nothing is ever updated in place. Each save of an annotator's annotation is a new row that points at the version
it supersedes; an annotator's *current* annotation is their newest row. Label sets are versioned the same way.
After every save the episode's `review_state` and `human_correct` are recomputed from the current annotations,
so the list page can filter on them without joining.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, text, update

from traces.errors import NotFoundError
from traces.models import annotations, episodes, label_sets
from traces.records import CROP_VERDICTS, AnnotationRecord, LabelSet

if TYPE_CHECKING:
    from traces.store import TraceStore


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "keep what this annotator said last time"


def set_label_set(store: TraceStore, name: str, labels: Sequence[str], description: str = "") -> LabelSet:
    """Create or change a label set (the old version stays in the table)."""
    clean = [label.strip() for label in labels]
    if not name.strip():
        raise ValueError("a label set needs a name")
    if not clean or any(not label for label in clean):
        raise ValueError("a label set needs at least one non-empty label")
    if len(set(clean)) != len(clean):
        raise ValueError(f"duplicate labels in {clean}")
    now = time.time()
    with store.write() as conn:
        conn.execute(insert(label_sets).values(name=name, labels=clean, description=description, created_at=now))
    return LabelSet(name, tuple(clean), description, now)


def label_set_in(conn: Connection, name: str) -> LabelSet:
    """The newest version of a label set, read in the caller's transaction."""
    row = conn.execute(
        select(label_sets).where(label_sets.c.name == name).order_by(label_sets.c.id.desc()).limit(1)
    ).first()
    if row is None:
        known = sorted({n for (n,) in conn.execute(select(label_sets.c.name).distinct())})
        raise NotFoundError(
            f"no label set {name!r}; known: {', '.join(known) or 'none'} (create it with set_label_set)"
        )
    return LabelSet(row.name, tuple(row.labels), row.description, row.created_at)


def get_label_set(store: TraceStore, name: str = "default") -> LabelSet:
    with store.read() as conn:
        return label_set_in(conn, name)


def _record(row: Any, uid: str) -> AnnotationRecord:
    return AnnotationRecord(
        id=row.id,
        episode_id=uid,
        annotator=row.annotator,
        created_at=row.created_at,
        label_set=row.label_set,
        labels=tuple(row.labels or ()),
        correct=row.correct,
        corrected_answer=row.corrected_answer,
        crop_verdict=row.crop_verdict,
        approved=row.approved,
        comment=row.comment,
        supersedes_id=row.supersedes_id,
    )


def annotate(
    store: TraceStore,
    episode_id: str,
    annotator: str,
    *,
    labels: Iterable[str] = UNSET,
    correct: bool | None = UNSET,
    corrected_answer: str | None = UNSET,
    crop_verdict: str | None = UNSET,
    approved: bool | None = UNSET,
    comment: str = UNSET,
    label_set: str = UNSET,
) -> AnnotationRecord:
    """Save a new version of `annotator`'s annotation of an episode.

    Fields left out keep the annotator's previous values (a first annotation starts empty); pass None to clear
    one. `labels` must come from the label set (default "default"); `crop_verdict` is one of right_region,
    wrong_region, should_not_crop; `approved` marks the trajectory as fit for SFT export.
    """
    annotator = annotator.strip()
    if not annotator:
        raise ValueError("an annotation needs the annotator's name")
    with store.write() as conn:
        pk = store.episode_pk(conn, episode_id)
        prev = conn.execute(
            select(annotations)
            .where(annotations.c.episode_id == pk, annotations.c.annotator == annotator)
            .order_by(annotations.c.id.desc())
            .limit(1)
        ).first()

        def pick(value: Any, column: str, empty: Any) -> Any:
            if value is not UNSET:
                return value
            return getattr(prev, column) if prev is not None else empty

        set_name = pick(label_set, "label_set", "default")
        chosen = list(labels) if labels is not UNSET else list((prev.labels or []) if prev is not None else [])
        allowed = label_set_in(conn, set_name).labels
        unknown = [label for label in chosen if label not in allowed]
        if unknown:
            raise ValueError(f"labels {unknown} are not in label set {set_name!r} ({', '.join(allowed)})")
        verdict = pick(crop_verdict, "crop_verdict", None)
        if verdict is not None and verdict not in CROP_VERDICTS:
            raise ValueError(f"crop verdict must be one of {', '.join(CROP_VERDICTS)}, not {verdict!r}")
        answer = pick(corrected_answer, "corrected_answer", None)
        values = dict(
            episode_id=pk,
            annotator=annotator,
            created_at=time.time(),
            label_set=set_name,
            labels=sorted(set(chosen), key=chosen.index),
            correct=pick(correct, "correct", None),
            corrected_answer=answer.strip() if isinstance(answer, str) and answer.strip() else None,
            crop_verdict=verdict,
            approved=pick(approved, "approved", None),
            comment=pick(comment, "comment", "") or "",
            supersedes_id=prev.id if prev is not None else None,
        )
        new_id = conn.execute(insert(annotations).values(**values).returning(annotations.c.id)).scalar_one()
        refresh_review_state(conn, pk)
        row = conn.execute(select(annotations).where(annotations.c.id == new_id)).one()
    return _record(row, episode_id)


def list_annotations(store: TraceStore, episode_id: str, *, history: bool = False) -> list[AnnotationRecord]:
    """Current annotation of each annotator (by name), or with history=True every version, oldest first."""
    with store.read() as conn:
        pk = store.episode_pk(conn, episode_id)
        rows = conn.execute(select(annotations).where(annotations.c.episode_id == pk).order_by(annotations.c.id)).all()
    if history:
        return [_record(r, episode_id) for r in rows]
    current: dict[str, Any] = {}
    for r in rows:
        current[r.annotator] = r
    return [_record(current[name], episode_id) for name in sorted(current)]


def current_rows(conn: Connection, episode_pks: Sequence[int] | None = None) -> list[Any]:
    """Each annotator's newest annotation, for some episodes or all."""
    newest = select(func.max(annotations.c.id)).group_by(annotations.c.episode_id, annotations.c.annotator)
    if episode_pks is not None:
        newest = newest.where(annotations.c.episode_id.in_(episode_pks))
    return conn.execute(select(annotations).where(annotations.c.id.in_(newest.scalar_subquery()))).all()


def review_state(current: Sequence[tuple[bool | None, bool | None]]) -> tuple[str, bool | None]:
    """(review_state, human_correct) from the current (correct, approved) pairs of an episode's annotators."""
    if not current:
        return "none", None
    verdicts = {c for c, _ in current if c is not None}
    approvals = {a for _, a in current if a is not None}
    human_correct = next(iter(verdicts)) if len(verdicts) == 1 else None
    if len(verdicts) > 1 or len(approvals) > 1:
        return "disputed", human_correct
    if approvals == {True}:
        return "approved", human_correct
    if approvals == {False}:
        return "rejected", human_correct
    return "annotated", human_correct


def refresh_review_state(conn: Connection, episode_pk: int) -> None:
    rows = current_rows(conn, [episode_pk])
    state, human = review_state([(r.correct, r.approved) for r in rows])
    conn.execute(update(episodes).where(episodes.c.id == episode_pk).values(review_state=state, human_correct=human))


def refresh_review_state_all(conn: Connection) -> None:
    """Recompute every annotated episode (used by migration 0002; plain SQL so it does not depend on the models)."""
    current: dict[tuple[int, str], tuple[bool | None, bool | None]] = {}
    for ep, annotator, correct, approved in conn.execute(
        text("SELECT episode_id, annotator, correct, approved FROM annotations ORDER BY id")
    ):
        current[(ep, annotator)] = (
            None if correct is None else bool(correct),
            None if approved is None else bool(approved),
        )
    by_episode: dict[int, list[tuple[bool | None, bool | None]]] = {}
    for (ep, _), pair in current.items():
        by_episode.setdefault(ep, []).append(pair)
    for ep, pairs in by_episode.items():
        state, human = review_state(pairs)
        conn.execute(
            text("UPDATE episodes SET review_state = :s, human_correct = :h WHERE id = :id"),
            {"s": state, "h": human, "id": ep},
        )
