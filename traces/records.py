"""Typed, frozen records the store hands out. The UI and CLI read these; they never see SQLAlchemy rows."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

ActionPattern = Literal["direct", "text_only", "whole_image", "crop", "mixed", "multi_text"]
ReviewState = Literal["none", "annotated", "approved", "rejected", "disputed"]
CropVerdict = Literal["right_region", "wrong_region", "should_not_crop"]
CROP_VERDICTS: tuple[str, ...] = ("right_region", "wrong_region", "should_not_crop")
FINAL_STATUSES = ("answered", "budget_exhausted", "format_error", "cancelled", "error", "interrupted")


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    kind: str
    model: str | None
    backend: str | None
    dialect: str | None
    checkpoint: str | None
    dataset: str | None
    source: str | None
    config: dict[str, Any]
    created_at: float
    episodes: int = 0


@dataclass(frozen=True)
class EpisodeSummary:
    """One row of the episode list: everything the list page shows, nothing it has to join for."""

    id: str
    run_id: int
    question: str
    status: str
    final_answer: str | None
    correct: bool | None  # judge verdict
    human_correct: bool | None  # annotators' consensus
    model: str | None
    dialect: str | None
    dataset: str | None
    n_turns: int
    n_tool_calls: int
    n_text: int
    n_whole: int
    n_crop: int
    response_tokens: int
    elapsed_s: float | None
    review_state: str
    started_at: float
    image_sha256: str | None

    @property
    def pattern(self) -> str:
        return action_pattern(self.n_text, self.n_whole, self.n_crop)


def action_pattern(n_text: int, n_whole: int, n_crop: int) -> str:
    """The single label shown for an episode's tool use (filters can ask for overlapping patterns)."""
    image = n_whole + n_crop
    if not n_text and not image:
        return "direct"
    if n_text and image:
        return "mixed"
    if n_text:
        return "multi_text" if n_text > 1 else "text_only"
    return "crop" if n_crop else "whole_image"


@dataclass(frozen=True)
class Page:
    items: list[EpisodeSummary]
    next_cursor: str | None  # pass back as `after=` for the next page; None on the last page


@dataclass(frozen=True)
class ToolCallRecord:
    turn_index: int
    call_index: int
    kind: str
    argument: str
    provider: str
    status: str  # started | finished (started only: the process died while the tool ran)
    items: list[dict[str, Any]]
    summary: str
    information: str
    error: str | None
    cache_hit: bool
    latency_s: float
    crop_box: tuple[int, int, int, int] | None
    crop_image_sha256: str | None
    crop_image_bytes: bytes | None = field(default=None, repr=False)
    grounding_fallback: bool = False
    grounding_score: float | None = None
    grounding_note: str = ""

    def crop_image(self) -> Image.Image | None:
        return decode_image(self.crop_image_bytes)


@dataclass(frozen=True)
class TurnRecord:
    index: int
    raw_text: str
    complete: bool  # False: the text is what had streamed when the process stopped
    reason: str
    action: str | None
    argument: str
    format_ok: bool | None
    error: str | None
    tokens: int
    latency_s: float
    tool_calls: list[ToolCallRecord]
    notes: list[dict[str, Any]]  # format errors, budget notices, model errors of this turn, in order


@dataclass(frozen=True)
class EpisodeDetail:
    summary: EpisodeSummary
    run: RunRecord
    gold_answers: list[str]
    backend: str | None
    config: dict[str, Any]
    reason: str
    format_ok: bool | None
    judge: str | None
    judge_score: float | None
    reward: float | None
    n_format_errors: int
    self_corrected: bool
    finished_at: float | None
    extra: dict[str, Any]
    turns: list[TurnRecord]
    image_bytes: bytes | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.summary.id

    def image(self) -> Image.Image | None:
        return decode_image(self.image_bytes)


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[str, ...]
    description: str
    created_at: float


@dataclass(frozen=True)
class AnnotationRecord:
    id: int
    episode_id: str
    annotator: str
    created_at: float
    label_set: str
    labels: tuple[str, ...]
    correct: bool | None
    corrected_answer: str | None
    crop_verdict: str | None
    approved: bool | None
    comment: str
    supersedes_id: int | None


@dataclass(frozen=True)
class AgreementRow:
    """Agreement on one question annotators answer: a label's presence, or a verdict field."""

    item: str  # "label:<name>", "correct", "approved" or "crop_verdict"
    statistic: str  # "cohen" (two annotators) or "fleiss" (three or more)
    kappa: float | None  # None when undefined (fewer than 2 shared items, or no variation at all)
    observed_agreement: float | None
    items: int  # episodes with at least two ratings
    annotators: int


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    name: str
    status: str  # one of traces.jobs.JOB_STATUSES (queued, running, cancelling, then a final one)
    config: dict[str, Any]
    run_id: int | None
    metrics: dict[str, Any]  # the latest logged values ("last") and the newest checkpoint ("checkpoint")
    log_path: str | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    command: list[str] | None = None  # argv the job was launched with
    pid: int | None = None  # the job's process (a process-group leader when launched in the background)
    host: str | None = None  # where `pid` lives
    launched_by: str | None = None
    step: int | None = None
    max_steps: int | None = None


@dataclass(frozen=True)
class JobMetricRecord:
    """Values a job logged at one step (one row of the append-only history)."""

    step: int
    created_at: float
    values: dict[str, float]


def decode_image(data: bytes | None) -> Image.Image | None:
    if data is None:
        return None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB") if image.mode != "RGB" else image
