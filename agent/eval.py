"""Evaluation: a question set through the episode loop, N episodes in flight, each answer judged (DESIGN.md §3.8).

This module runs episodes and judges them; it knows nothing of the trace store. Its caller (`python -m agent
eval`) passes a recorder as `on_event`, writes each judgement with `on_outcome`, and gives the keys of the
questions already finished in the run, so that running the same command again resumes.

Rules:
- At most `concurrency` episodes run at once, each in a worker thread (the loop is a sync generator; the
  openai backend's HTTP client is thread-safe). The local transformers backend runs one at a time.
- Every question gets one episode. An image that cannot be read is not a model failure: the episode is emitted
  as started and finished with status `error` and the reason, and the eval goes on.
- Episodes that end `answered`, `budget_exhausted` or `format_error` are judged (no answer is `incorrect`);
  `error` and `cancelled` ones are not, and are run again on resume.
- The model endpoint failing `max_consecutive_failures` episodes in a row stops the eval: in-flight episodes
  are cancelled, nothing new starts, finished episodes are kept, and the outcome says why.
- Ctrl-C (KeyboardInterrupt in the thread that called `run_eval`) does the same, with `stopped="interrupted"`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from agent.aio import run_sync
from agent.events import COMPLETED_STATUSES, EpisodeFinished, EpisodeStarted, EpisodeStatus, Event
from agent.flags import check_bounds, setting
from agent.images import ImageError, load_image
from agent.judge import Judge, Judgement
from agent.loop import Budgets, run_episode
from agent.models.base import ModelBackend
from agent.protocol import Dialect, get_dialect
from agent.tools.base import Toolbox
from agent.tools.http import HttpClient, HttpPolicy, ToolError

IMAGE_MAX_BYTES = 30_000_000
# One client for every item's image URL, in any eval or caller; it opens its connection pool on first use.
_IMAGE_HTTP = HttpClient("eval image", HttpPolicy(timeout_s=30.0, max_bytes=IMAGE_MAX_BYTES, retries=2))

ImageSource = bytes | str | None  # image bytes, a local path, an http(s) URL, or no image


@dataclass(frozen=True)
class EvalItem:
    """One question of an eval set."""

    key: str  # the question's identity across runs (resume, paired comparison): see `item_key`
    question: str
    image: ImageSource = dataclasses.field(repr=False)
    gold_answers: tuple[str, ...]
    data_source: str | None = None
    row: int | None = None  # 1-based row in the file it came from, for messages


def item_key(question: str, image: ImageSource, occurrence: int = 0) -> str:
    """A content key: the same question on the same image is the same item in any file, format or order.

    Image bytes are hashed; a path or URL counts as written. `occurrence` tells apart repeats of one question
    within a set (the second copy gets "-1", ...).
    """
    digest = hashlib.sha256(question.strip().encode("utf-8"))
    digest.update(b"\0")
    if isinstance(image, bytes):
        digest.update(hashlib.sha256(image).digest())
    elif image:
        digest.update(image.encode("utf-8"))
    key = digest.hexdigest()[:24]
    return f"{key}-{occurrence}" if occurrence else key


def keyed(items: Sequence[tuple[str, ImageSource, tuple[str, ...], str | None, int | None]]) -> list[EvalItem]:
    """EvalItems from (question, image, golds, data_source, row), with keys made unique by occurrence."""
    seen: dict[str, int] = {}
    out = []
    for question, image, golds, source, row in items:
        base = item_key(question, image)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(EvalItem(item_key(question, image, n), question, image, golds, source, row))
    return out


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how (model, tool and judge settings have their own configs)."""

    data: str = setting(
        "",
        "question set: a FVQA/veRL parquet, a JSONL of {question, image, answers}, the name of a question-set "
        "run in --db, or a Hugging Face dataset id",
        metavar="PATH|RUN|HF_ID",
    )
    split: str = setting("test", "split of a Hugging Face dataset")
    limit: int | None = setting(None, "evaluate only the first N questions (after --data-source)", low=1)
    data_source: tuple[str, ...] = setting(
        (), "only questions whose data_source is this (repeatable)", metavar="SOURCE"
    )
    concurrency: int | None = setting(
        None, "episodes in flight; default 16 for the openai backend, 1 for transformers", low=1, high=1024
    )
    db: str = setting(
        "runs/traces.db", "trace store the eval run is recorded in (path or SQLAlchemy URL)", env="TRACES_DB"
    )
    run_name: str | None = setting(None, "eval run to record into and resume (default: from the model and the data)")
    report: str | None = setting(None, "write the report as one JSON object to this file")
    rejudge: bool = setting(False, "judge the run's stored answers again with this judge instead of running episodes")
    max_consecutive_failures: int = setting(
        8, "stop when the model endpoint fails this many episodes in a row (finished ones are kept)", low=1
    )
    progress: bool = setting(True, "show a progress bar on stderr")
    job_id: int | None = setting(
        None, "keep this job row of --db current (progress, accuracy so far, ending); set by the job runner"
    )

    def __post_init__(self) -> None:
        check_bounds(self)


def default_concurrency(backend: ModelBackend, requested: int | None) -> int:
    """16 episodes for a server; 1 for local weights (one model in this process cannot serve two streams)."""
    if backend.backend != "openai":
        return 1
    return requested or 16


@dataclass(frozen=True)
class EpisodeOutcome:
    item: EvalItem
    episode_id: str
    status: EpisodeStatus
    final_answer: str | None
    judgement: Judgement | None  # None: not judged (error, cancelled)
    elapsed_s: float
    reason: str = ""
    image_failed: bool = False


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    correct: int
    judged: int  # correct or incorrect
    unknown: int
    errors: int
    elapsed_s: float

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.judged if self.judged else None

    @property
    def eta_s(self) -> float | None:
        if not self.done or self.done >= self.total:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


@dataclass(frozen=True)
class EvalOutcome:
    progress: Progress
    stopped: str | None = None  # None: every item ran; "interrupted"; or why the endpoint stop happened


def read_image(source: ImageSource) -> Image.Image | None:
    """The item's image as RGB, or ImageError with a one-line reason. URLs are fetched (size-capped)."""
    if source is None:
        return None
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        try:
            response = run_sync(_IMAGE_HTTP.request("GET", source, what=f"image {source[:120]}"))
        except ToolError as exc:
            raise ImageError(exc.reason) from None
        if response.status >= 400:
            raise ImageError(f"image {source[:120]}: HTTP {response.status}")
        return load_image(response.body)
    return load_image(source)


class _Eval:
    def __init__(
        self,
        *,
        backend: ModelBackend,
        toolbox: Toolbox,
        judge: Judge,
        dialect: Dialect,
        budgets: Budgets,
        on_event: Callable[[Event], None] | None,
        on_outcome: Callable[[EpisodeOutcome], None] | None,
        config: dict[str, Any],
        cancel: threading.Event,
    ):
        self.backend = backend
        self.toolbox = toolbox
        self.judge = judge
        self.dialect = dialect
        self.budgets = budgets
        self.on_event = on_event
        self.on_outcome = on_outcome
        self.config = config
        self.cancel = cancel

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _episode_config(self, item: EvalItem) -> dict[str, Any]:
        # The recorder files the episode under this item key and data source.
        return {**self.config, "item_key": item.key, "dataset": item.data_source}

    def _image_failure(self, item: EvalItem, reason: str) -> EpisodeOutcome:
        """Record the question as an episode that never started its model: status error, with the reason."""
        episode_id = uuid.uuid4().hex
        self._emit(
            EpisodeStarted(
                episode_id=episode_id,
                question=item.question,
                image=None,
                image_sha256=None,
                model=self.backend.model,
                backend=self.backend.backend,
                dialect=self.dialect.name,
                config={
                    "budgets": dataclasses.asdict(self.budgets),
                    "tools": self.toolbox.describe(),
                    **self._episode_config(item),
                },
                gold_answers=item.gold_answers,
                started_at=time.time(),
            )
        )
        reason = f"image unreadable: {reason}"
        self._emit(EpisodeFinished(episode_id, "error", None, 0, 0, 0, 0.0, False, reason))
        return EpisodeOutcome(item, episode_id, "error", None, None, 0.0, reason, image_failed=True)

    def run_one(self, item: EvalItem) -> EpisodeOutcome | None:
        if self.cancel.is_set():
            return None
        try:
            image = read_image(item.image)
        except ImageError as exc:
            outcome = self._image_failure(item, str(exc))
        else:
            finished: EpisodeFinished | None = None
            for event in run_episode(
                item.question,
                image,
                self.backend,
                self.toolbox,
                dialect=self.dialect,
                budgets=self.budgets,
                cancel=self.cancel,
                on_event=self.on_event,
                gold_answers=item.gold_answers,
                config=self._episode_config(item),
            ):
                if isinstance(event, EpisodeFinished):
                    finished = event
            assert finished is not None  # the loop always ends with EpisodeFinished
            judgement = None
            if finished.status in COMPLETED_STATUSES:
                try:
                    judgement = self.judge.judge_sync(item.question, finished.final_answer, item.gold_answers)
                except Exception as exc:  # a judge bug must not lose the episode: unknown, fixable by --rejudge
                    judgement = Judgement("unknown", f"judge crashed: {type(exc).__name__}: {exc}", self.judge.name)
            outcome = EpisodeOutcome(
                item,
                finished.episode_id,
                finished.status,
                finished.final_answer,
                judgement,
                finished.elapsed_s,
                finished.reason,
            )
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome


def run_eval(
    items: Sequence[EvalItem],
    *,
    backend: ModelBackend,
    toolbox: Toolbox,
    judge: Judge,
    dialect: str | Dialect = "deepmmsearch",
    budgets: Budgets = Budgets(),
    concurrency: int = 16,
    done_keys: Collection[str] = (),
    on_event: Callable[[Event], None] | None = None,
    on_outcome: Callable[[EpisodeOutcome], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    max_consecutive_failures: int = 8,
    cancel: threading.Event | None = None,
    config: dict[str, Any] | None = None,
) -> EvalOutcome:
    """Run every item whose key is not in `done_keys`; see the module docstring for the rules.

    `on_event` receives every event of every episode (from worker threads: it must be thread-safe);
    `on_outcome` each finished episode with its judgement, before it counts as done; `on_progress` runs in
    the calling thread after each episode. `config` is recorded with every episode (no secrets in it).
    """
    done = set(done_keys)
    todo = [item for item in items if item.key not in done]
    cancel = cancel or threading.Event()
    state = _Eval(
        backend=backend,
        toolbox=toolbox,
        judge=judge,
        dialect=get_dialect(dialect),
        budgets=budgets,
        on_event=on_event,
        on_outcome=on_outcome,
        config=dict(config or {}),
        cancel=cancel,
    )
    counts = {"done": 0, "correct": 0, "judged": 0, "unknown": 0, "errors": 0}
    started = time.monotonic()
    stopped: str | None = None
    failures_in_a_row = 0

    def progress() -> Progress:
        return Progress(total=len(todo), elapsed_s=time.monotonic() - started, **counts)

    def count(outcome: EpisodeOutcome) -> str | None:
        nonlocal failures_in_a_row
        counts["done"] += 1
        verdict = outcome.judgement.verdict if outcome.judgement else None
        counts["correct"] += verdict == "correct"
        counts["judged"] += verdict in ("correct", "incorrect")
        counts["unknown"] += verdict == "unknown"
        counts["errors"] += outcome.status == "error"
        if outcome.status == "error" and not outcome.image_failed:
            failures_in_a_row += 1
            if failures_in_a_row >= max_consecutive_failures:
                return (
                    f"the model endpoint failed {failures_in_a_row} episodes in a row (last: {outcome.reason}); "
                    "stopped, finished episodes are kept: fix the endpoint and run the same command to resume"
                )
        elif outcome.status != "cancelled":
            failures_in_a_row = 0
        return None

    pending: set[concurrent.futures.Future] = set()
    queue = iter(todo)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="eval")
    try:
        while True:
            while stopped is None and len(pending) < concurrency:
                item = next(queue, None)
                if item is None:
                    break
                pending.add(pool.submit(state.run_one, item))
            if not pending:
                break
            # A short timeout keeps this thread responsive to Ctrl-C.
            finished, pending = concurrent.futures.wait(
                pending, timeout=0.25, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in finished:
                outcome = future.result()  # a recorder failure raises here and stops the eval
                if outcome is None:
                    continue
                reason = count(outcome)
                if reason and stopped is None:
                    stopped = reason
                    cancel.set()
                if on_progress is not None:
                    on_progress(progress())
    except KeyboardInterrupt:
        stopped = "interrupted"
        cancel.set()
        # In-flight episodes see `cancel` at their next token or tool call and end `cancelled`; each is still
        # recorded, so wait for them (a second Ctrl-C leaves at once).
        for future in concurrent.futures.as_completed(pending):
            outcome = future.result()
            if outcome is not None:
                count(outcome)
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return EvalOutcome(progress(), stopped)
