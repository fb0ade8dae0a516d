"""Pure helpers of the Traces tab: filters from form values, list rows, episode headers, annotation forms.

No Gradio and no store here: inputs are form values and trace records, outputs are plain values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from traces.queries import PATTERNS, REVIEW_STATES, EpisodeFilter
from traces.records import FINAL_STATUSES, AnnotationRecord, EpisodeSummary
from ui.safe import md_text, truncate

ANY = "any"
LIST_COLUMNS = ["started", "question", "status", "answer", "tools", "tokens", "review", "verdict", "id"]
CORRECT_CHOICES = [("correct", "correct"), ("incorrect", "incorrect"), ("not judged", "unset")]
CROP_CHOICES = [
    ("right region", "right_region"),
    ("wrong region", "wrong_region"),
    ("should not have cropped", "should_not_crop"),
    ("n/a", "unset"),
]
VERDICT_FILTERS = (ANY, "correct", "incorrect", "unjudged")
# The store's status names, as every tab shows them (ui.render.STATUS_HELP says what each means).
STATUS_FILTERS = (ANY, *FINAL_STATUSES, "running", "pending")
PATTERN_FILTERS = (ANY, *PATTERNS)
REVIEW_FILTERS = (ANY, *REVIEW_STATES)


def run_choice(run_id: int, name: str) -> str:
    """The run filter's value for a run: "id · name" (`make_filter` reads the id back)."""
    return f"{run_id} · {name}"


def make_filter(
    text: str | None, status: str | None, pattern: str | None, review: str | None, verdict: str | None, run: str | None
) -> EpisodeFilter:
    """An EpisodeFilter from the filter row; "any" and blanks select everything. `run` is "id · name" or "any"."""
    correct = {"correct": True, "incorrect": False}.get(verdict or "")
    judged = False if verdict == "unjudged" else None
    run_ids: tuple[int, ...] = ()
    if run and run != ANY:
        run_ids = (int(run.split("·", 1)[0].strip()),)
    return EpisodeFilter(
        run_ids=run_ids,
        status=(status,) if status and status != ANY else (),
        correct=correct,
        judged=judged,
        pattern=pattern if pattern and pattern != ANY else None,
        review=review if review and review != ANY else None,
        text=(text or "").strip() or None,
    )


def match_count(total: int) -> str:
    """The Traces tab's count line."""
    return "1 episode matches" if total == 1 else f"{total} episodes match"


def _when(ts: float, now: float) -> str:
    age = now - ts
    if age < 60:
        return "just now"
    if age < 3600:
        return f"{int(age // 60)} min ago"
    if age < 86400:
        return f"{int(age // 3600)} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _verdict(summary: EpisodeSummary) -> str:
    value = summary.human_correct if summary.human_correct is not None else summary.correct
    return "" if value is None else ("correct" if value else "incorrect")


def list_rows(items: Sequence[EpisodeSummary], *, now: float | None = None) -> list[list[Any]]:
    """Rows for the episode table (plain strings: the table shows them as text)."""
    now = time.time() if now is None else now
    return [
        [
            _when(s.started_at, now),
            truncate(s.question, 90),
            s.status,
            truncate(s.final_answer or "", 50),
            s.pattern if s.n_tool_calls else "direct",
            s.response_tokens,
            s.review_state,
            _verdict(s),
            s.id,
        ]
        for s in items
    ]


@dataclass(frozen=True)
class AnnotationForm:
    labels: list[str]
    correct: str  # "correct" | "incorrect" | "unset"
    corrected_answer: str
    crop_verdict: str  # a CROP_VERDICTS value or "unset"
    approved: bool
    comment: str


EMPTY_FORM = AnnotationForm([], "unset", "", "unset", False, "")


def form_from_annotation(record: AnnotationRecord | None) -> AnnotationForm:
    if record is None:
        return EMPTY_FORM
    return AnnotationForm(
        labels=list(record.labels),
        correct="unset" if record.correct is None else ("correct" if record.correct else "incorrect"),
        corrected_answer=record.corrected_answer or "",
        crop_verdict=record.crop_verdict or "unset",
        approved=bool(record.approved),
        comment=record.comment or "",
    )


def annotation_fields(form: AnnotationForm) -> dict[str, Any]:
    """Keyword arguments for `traces.annotations.annotate` from the form (every field given: the form shows all)."""
    return {
        "labels": list(form.labels),
        "correct": None if form.correct == "unset" else form.correct == "correct",
        "corrected_answer": form.corrected_answer.strip() or None,
        "crop_verdict": None if form.crop_verdict in ("unset", "", None) else form.crop_verdict,
        "approved": bool(form.approved),
        "comment": form.comment.strip(),
    }


def mine(records: Sequence[AnnotationRecord], annotator: str | None) -> AnnotationRecord | None:
    if not annotator:
        return None
    for record in records:
        if record.annotator == annotator:
            return record
    return None


def history_markdown(records: Sequence[AnnotationRecord], *, now: float | None = None) -> str:
    """Every version of every annotator's annotation, newest first (escaped: annotators type free text)."""
    if not records:
        return "*No annotations yet.*"
    now = time.time() if now is None else now
    lines = []
    for r in sorted(records, key=lambda r: r.created_at, reverse=True):
        bits = []
        if r.correct is not None:
            bits.append("correct" if r.correct else "incorrect")
        if r.labels:
            bits.append(", ".join(r.labels))
        if r.crop_verdict:
            bits.append(f"crop: {r.crop_verdict.replace('_', ' ')}")
        if r.approved:
            bits.append("approved for training")
        if r.corrected_answer:
            bits.append(f"answer → {r.corrected_answer}")
        edited = " (edit)" if r.supersedes_id else ""
        line = f"- **{md_text(r.annotator)}**{edited}, {md_text(_when(r.created_at, now))}: {md_text('; '.join(bits) or 'no verdict')}"
        if r.comment:
            line += f" — {md_text(truncate(r.comment, 300))}"
        lines.append(line)
    return "\n".join(lines)


def label_choices(labels: Sequence[str]) -> list[tuple[str, str]]:
    """Checkbox choices numbered for the 1-9 shortcuts."""
    return [(f"{i + 1} · {label}" if i < 9 else label, label) for i, label in enumerate(labels)]


def neighbour(ids: Sequence[str], current: str | None, step: int) -> str | None:
    """The id `step` rows away from `current` in the list (None at either end, first row when none is open)."""
    if not ids:
        return None
    if current not in ids:
        return ids[0]
    i = ids.index(current) + step
    return ids[i] if 0 <= i < len(ids) else None
