"""Read side: filtered episode lists with keyset pagination, whole episodes, runs and per-run aggregates.

Every function takes the store and returns the typed records of `traces.records`. The list query reads only the
`episodes` table (its counters are kept by the recorder and importers), ordered by (started_at, id) so that a
page is an index range scan whatever the table size; the cursor is the last row's (started_at, id).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, ColumnElement, Select, and_, bindparam, case, func, literal_column, select, text, tuple_

from traces import fastpath
from traces.errors import NotFoundError
from traces.models import annotations, episodes, events, images, runs, tool_calls, turns
from traces.records import (
    EpisodeDetail,
    EpisodeSummary,
    Page,
    RunRecord,
    RunStats,
    ToolCallRecord,
    TurnRecord,
    positional_builder,
)

if TYPE_CHECKING:
    from traces.store import TraceStore

PATTERNS = ("direct", "text_only", "whole_image", "crop", "mixed", "multi_text")
REVIEW_STATES = ("none", "annotated", "approved", "rejected", "disputed")
MAX_PAGE = 500


@dataclass(frozen=True)
class EpisodeFilter:
    """Every field narrows the list; the defaults select everything.

    pattern (tool use; patterns overlap on purpose so each answers one question):
      direct       no tool call at all
      text_only    text searches and no image search
      whole_image  at least one whole-image search
      crop         at least one cropped-region search
      mixed        an image search (either kind) and a text search
      multi_text   two or more text searches
    correct: the annotators' consensus verdict where there is one, else the judge's.
    review: annotation state (none / annotated / approved / rejected / disputed).
    text: full-text search over question, final answer and search queries (all words must occur).
    """

    run_ids: tuple[int, ...] = ()
    model: str | None = None
    dialect: str | None = None
    dataset: str | None = None
    status: tuple[str, ...] = ()
    correct: bool | None = None
    judged: bool | None = None  # True: has a judge or human verdict; False: has neither
    pattern: str | None = None
    review: str | None = None
    annotator: str | None = None  # annotated (currently) by this person
    text: str | None = None

    def __post_init__(self) -> None:
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise ValueError(f"unknown action pattern {self.pattern!r}; choose one of {', '.join(PATTERNS)}")
        if self.review is not None and self.review not in REVIEW_STATES:
            raise ValueError(f"unknown review state {self.review!r}; choose one of {', '.join(REVIEW_STATES)}")
        if isinstance(self.status, str) or isinstance(self.run_ids, int):
            raise TypeError("status and run_ids are tuples: status=('answered',), run_ids=(3,)")


def _conditions(store: TraceStore, f: EpisodeFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of a filter. Every value is a bind parameter named as in `_filter_params`, so the SQL
    text depends only on `_filter_shape` and one compiled statement serves every filter of that shape."""
    e = episodes.c
    where: list[ColumnElement[bool]] = []
    if f.run_ids:
        where.append(e.run_id.in_([bindparam(f"run_id_{i}", v) for i, v in enumerate(f.run_ids)]))
    if f.model:
        where.append(e.model == bindparam("f_model", f.model))
    if f.dialect:
        where.append(e.dialect == bindparam("f_dialect", f.dialect))
    if f.dataset:
        where.append(e.dataset == bindparam("f_dataset", f.dataset))
    if f.status:
        where.append(e.status.in_([bindparam(f"status_{i}", v) for i, v in enumerate(f.status)]))
    if f.correct is not None:
        where.append(func.coalesce(e.human_correct, e.correct) == bindparam("f_correct", f.correct, Boolean))
    if f.judged is not None:
        verdict = func.coalesce(e.human_correct, e.correct)
        where.append(verdict.is_not(None) if f.judged else verdict.is_(None))
    if f.pattern:
        where.append(_pattern_condition(f.pattern))
    if f.review:
        where.append(e.review_state == bindparam("f_review", f.review))
    if f.annotator:
        where.append(
            e.id.in_(
                select(annotations.c.episode_id)
                .where(annotations.c.annotator == bindparam("f_annotator", f.annotator))
                .scalar_subquery()
            )
        )
    if f.text and _text_words(f.text):
        where.append(_text_condition(store, f.text))
    return where


def _filter_params(store: TraceStore, f: EpisodeFilter) -> dict[str, Any]:
    """The bind values of `_conditions`, by name, without building any SQL (building costs more than the query)."""
    params: dict[str, Any] = {}
    for i, v in enumerate(f.run_ids):
        params[f"run_id_{i}"] = v
    if f.model:
        params["f_model"] = f.model
    if f.dialect:
        params["f_dialect"] = f.dialect
    if f.dataset:
        params["f_dataset"] = f.dataset
    for i, v in enumerate(f.status):
        params[f"status_{i}"] = v
    if f.correct is not None:
        params["f_correct"] = f.correct
    if f.review:
        params["f_review"] = f.review
    if f.annotator:
        params["f_annotator"] = f.annotator
    if f.text:
        params.update(_text_params(store, f.text))
    return params


def _filter_shape(params: dict[str, Any], f: EpisodeFilter) -> tuple[Any, ...]:
    """What decides the SQL text of `_conditions`: which values are bound, plus the value-less choices."""
    return (tuple(params), f.judged, f.pattern)


def _pattern_condition(pattern: str) -> ColumnElement[bool]:
    e = episodes.c
    if pattern == "direct":
        return and_(e.n_text == 0, e.n_whole == 0, e.n_crop == 0)
    if pattern == "text_only":
        return and_(e.n_text > 0, e.n_whole == 0, e.n_crop == 0)
    if pattern == "whole_image":
        return e.n_whole > 0
    if pattern == "crop":
        return e.n_crop > 0
    if pattern == "mixed":
        return and_(e.n_text > 0, e.n_whole + e.n_crop > 0)
    return e.n_text >= 2  # multi_text


def _text_words(query: str) -> list[str]:
    return re.findall(r"\w+", query)


def _text_params(store: TraceStore, query: str) -> dict[str, Any]:
    words = _text_words(query)
    if not words:
        return {}
    if store.dialect == "sqlite":
        # Each word quoted: user text can never be read as FTS5 syntax (AND/OR/NEAR/column filters).
        return {"f_text": " ".join('"' + w.replace('"', '""') + '"' for w in words)}
    if store.dialect == "postgresql":
        return {"f_text": " ".join(words)}
    return {f"f_text_{i}": f"%{w}%" for i, w in enumerate(words)}


def _text_condition(store: TraceStore, query: str) -> ColumnElement[bool]:
    params = _text_params(store, query)  # callers pass text with at least one word
    if store.dialect == "sqlite":
        # `id + 0` keeps SQLite from driving the query by the FTS rowid list (then sorting every match: 480 ms
        # for a word in most episodes at 100k); instead it walks the started_at index and probes the match set,
        # stopping after one page. Worst case (a rare word) is one index walk: ~25 ms at 100k episodes.
        fts = text("SELECT rowid FROM episodes_fts WHERE episodes_fts MATCH :f_text").bindparams(**params)
        return (episodes.c.id + 0).in_(fts)
    if store.dialect == "postgresql":
        return func.to_tsvector(literal_column("'simple'"), episodes.c.search_text).op("@@")(
            func.plainto_tsquery(literal_column("'simple'"), bindparam("f_text", params["f_text"]))
        )
    return and_(*[episodes.c.search_text.ilike(bindparam(name, value)) for name, value in params.items()])


_SUMMARY_COLUMNS = (
    episodes.c.id,
    episodes.c.uid,
    episodes.c.run_id,
    episodes.c.question,
    episodes.c.status,
    episodes.c.final_answer,
    episodes.c.correct,
    episodes.c.human_correct,
    episodes.c.model,
    episodes.c.dialect,
    episodes.c.dataset,
    episodes.c.n_turns,
    episodes.c.n_tool_calls,
    episodes.c.n_text,
    episodes.c.n_whole,
    episodes.c.n_crop,
    episodes.c.response_tokens,
    episodes.c.elapsed_s,
    episodes.c.review_state,
    episodes.c.started_at,
    episodes.c.image_sha256,
)


def encode_cursor(started_at: float, pk: int) -> str:
    return f"{started_at!r}:{pk}"


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        started, pk = cursor.rsplit(":", 1)
        return float(started), int(pk)
    except ValueError:
        raise ValueError(f"bad page cursor {cursor!r}: pass back the next_cursor of the previous page") from None


def list_statement(
    store: TraceStore,
    filters: EpisodeFilter | None = None,
    *,
    limit: int = 50,
    after: str | None = None,
    newest_first: bool = True,
) -> Select[Any]:
    """The SELECT behind a page (fetches limit + 1 rows to know whether another page follows).

    Values are named bind parameters (see `_conditions`), bound here too, so the statement runs as it is."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}")
    where = _conditions(store, filters or EpisodeFilter())
    key = tuple_(episodes.c.started_at, episodes.c.id)
    if after:
        started, pk = decode_cursor(after)
        bound = tuple_(bindparam("after_started", started), bindparam("after_pk", pk))
        where.append(key < bound if newest_first else key > bound)
    order = (
        (episodes.c.started_at.desc(), episodes.c.id.desc()) if newest_first else (episodes.c.started_at, episodes.c.id)
    )
    return select(*_SUMMARY_COLUMNS).where(*where).order_by(*order).limit(bindparam("limit", limit + 1))


def list_episodes(
    store: TraceStore,
    filters: EpisodeFilter | None = None,
    *,
    limit: int = 50,
    after: str | None = None,
    newest_first: bool = True,
) -> Page:
    """One page of episodes, newest first. `after` is the previous page's `next_cursor`."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}")
    f = filters or EpisodeFilter()
    # The statement is built (and compiled) only once per shape; each call binds its values (see fastpath).
    params = _filter_params(store, f)
    shape = ("list", _filter_shape(params, f), after is not None, newest_first)
    if after:
        params["after_started"], params["after_pk"] = decode_cursor(after)
    params["limit"] = limit + 1
    with fastpath.reader(store) as fetch:
        rows = fetch(
            shape, lambda: list_statement(store, f, limit=limit, after=after, newest_first=newest_first), params
        )
    more = len(rows) > limit
    rows = rows[:limit]
    # Positional: _SUMMARY_COLUMNS[1:] is in EpisodeSummary's field order (name lookups on rows cost 10x more).
    items = [_make_summary(*r[1:]) for r in rows]
    return Page(items, encode_cursor(rows[-1].started_at, rows[-1].id) if more else None)


_make_summary = positional_builder(EpisodeSummary)


def count_episodes(store: TraceStore, filters: EpisodeFilter | None = None) -> int:
    stmt = select(func.count()).select_from(episodes).where(*_conditions(store, filters or EpisodeFilter()))
    with store.read() as conn:
        return int(conn.execute(stmt).scalar_one())


def _run_record(row: Any, count: int = 0) -> RunRecord:
    return RunRecord(
        id=row.id,
        name=row.name,
        kind=row.kind,
        model=row.model,
        backend=row.backend,
        dialect=row.dialect,
        checkpoint=row.checkpoint,
        dataset=row.dataset,
        source=row.source,
        config=row.config or {},
        created_at=row.created_at,
        episodes=count,
    )


def list_runs(store: TraceStore) -> list[RunRecord]:
    counts = select(episodes.c.run_id, func.count().label("n")).group_by(episodes.c.run_id).subquery()
    stmt = (
        select(runs, func.coalesce(counts.c.n, 0).label("n"))
        .outerjoin(counts, counts.c.run_id == runs.c.id)
        .order_by(runs.c.id)
    )
    with store.read() as conn:
        return [_run_record(row, row.n) for row in conn.execute(stmt)]


def get_run(store: TraceStore, run_id: int) -> RunRecord:
    with store.read() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no run {run_id}")
        n = conn.execute(select(func.count()).select_from(episodes).where(episodes.c.run_id == run_id)).scalar_one()
    return _run_record(row, int(n))


# Built once: constructing a SELECT costs more than running it on SQLite, and opening an episode is the hot path.
_CROP = images.alias("crop")


def _columns_except(table: Any, *names: str) -> list[Any]:
    # Only what the records need: skipping bookkeeping columns (and the episode's search_text, as long as the
    # question and answers together) saves converting and carrying them on every open.
    return [c for c in table.c if c.name not in names]


_OPEN_EPISODE = (
    select(
        *_columns_except(episodes, "search_text", "writer", "source_row", "updated_at"),
        images.c.data.label("image_data"),
        *[c.label(f"r_{c.name}") for c in runs.c],
    )
    .outerjoin(images, images.c.sha256 == episodes.c.image_sha256)
    .join(runs, runs.c.id == episodes.c.run_id)
    .where(episodes.c.uid == bindparam("uid"))
)
_OPEN_TURNS = (
    select(*_columns_except(turns, "id", "episode_id", "seq", "parsed_seq", "started_at"))
    .where(turns.c.episode_id == bindparam("pk"))
    .order_by(turns.c.index)
)
_OPEN_CALLS = (
    select(*_columns_except(tool_calls, "id", "episode_id", "seq", "finished_seq"), _CROP.c.data.label("crop_data"))
    .outerjoin(_CROP, _CROP.c.sha256 == tool_calls.c.crop_image_sha256)
    .where(tool_calls.c.episode_id == bindparam("pk"))
    .order_by(tool_calls.c.call_index)
)
_OPEN_NOTES = (
    select(events.c.turn_index, events.c.type, events.c.payload)
    .where(events.c.episode_id == bindparam("pk"))
    .order_by(events.c.seq)
)


_make_run = positional_builder(RunRecord)


def load_episode(store: TraceStore, episode_id: str) -> EpisodeDetail:
    """The whole episode: summary, run, turns with their tool calls (boxes, crop images) and notes, the image."""
    with fastpath.reader(store) as fetch:
        found = fetch("open", lambda: _OPEN_EPISODE, {"uid": episode_id})
        if not found:
            raise NotFoundError(f"no episode {episode_id!r}")
        row = found[0]
        pk = {"pk": row.id}
        turn_rows = fetch("open_turns", lambda: _OPEN_TURNS, pk)
        call_rows = fetch("open_calls", lambda: _OPEN_CALLS, pk)
        note_rows = fetch("open_notes", lambda: _OPEN_NOTES, pk)
    # Records below are built with positional builders (see records.positional_builder): an episode has ~10
    # turns and a few tool calls, and the frozen-dataclass __init__ alone cost ~30% of opening one.
    calls_by_turn: dict[int, list[ToolCallRecord]] = {}
    for c in call_rows:
        calls_by_turn.setdefault(c.turn_index, []).append(tool_call_record(c))
    notes_by_turn: dict[int, list[dict[str, Any]]] = {}
    for n in note_rows:
        notes_by_turn.setdefault(n.turn_index, []).append({"type": n.type, **(n.payload or {})})
    turn_records = [
        _make_turn(
            t.index,
            t.raw_text,
            t.complete,
            t.reason,
            t.action,
            t.argument,
            t.format_ok,
            t.error,
            t.tokens,
            t.latency_s,
            calls_by_turn.get(t.index, []),
            notes_by_turn.get(t.index, []),
        )
        for t in turn_rows
    ]
    return EpisodeDetail(
        summary=_make_summary(
            row.uid,
            row.run_id,
            row.question,
            row.status,
            row.final_answer,
            row.correct,
            row.human_correct,
            row.model,
            row.dialect,
            row.dataset,
            row.n_turns,
            row.n_tool_calls,
            row.n_text,
            row.n_whole,
            row.n_crop,
            row.response_tokens,
            row.elapsed_s,
            row.review_state,
            row.started_at,
            row.image_sha256,
        ),
        run=_make_run(
            row.r_id,
            row.r_name,
            row.r_kind,
            row.r_model,
            row.r_backend,
            row.r_dialect,
            row.r_checkpoint,
            row.r_dataset,
            row.r_source,
            row.r_config or {},
            row.r_created_at,
            0,  # episodes: RunRecord's default (not counted when opening one episode)
        ),
        gold_answers=list(row.gold_answers or []),
        backend=row.backend,
        config=row.config or {},
        reason=row.reason,
        format_ok=row.format_ok,
        judge=row.judge,
        judge_score=row.judge_score,
        reward=row.reward,
        n_format_errors=row.n_format_errors,
        self_corrected=bool(row.self_corrected),
        finished_at=row.finished_at,
        extra=row.extra or {},
        turns=turn_records,
        image_bytes=bytes(row.image_data) if row.image_data is not None else None,
    )


def tool_call_record(c: Any) -> ToolCallRecord:
    box = (c.crop_x0, c.crop_y0, c.crop_x1, c.crop_y1)
    return _make_tool_call(
        c.turn_index,
        c.call_index,
        c.kind,
        c.argument,
        c.provider,
        c.status,
        list(c.items or []),
        c.summary,
        c.information,
        c.error,
        bool(c.cache_hit),
        c.latency_s,
        tuple(box) if None not in box else None,  # crop_box
        c.crop_image_sha256,
        bytes(c.crop_data) if c.crop_data is not None else None,
        bool(c.grounding_fallback),
        c.grounding_score,
        c.grounding_note,
    )


_make_turn = positional_builder(TurnRecord)
_make_tool_call = positional_builder(ToolCallRecord)


def _share(part: Any, whole: int) -> float | None:
    return float(part or 0) / whole if whole else None


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def run_stats(store: TraceStore, run_id: int | None = None) -> RunStats:
    """Aggregates over a run's episodes (all runs when run_id is None).

    Tool-use shares, format and latency are over finished episodes (not running, pending or interrupted);
    accuracy over episodes with a verdict.
    """
    e = episodes.c
    scope = [e.run_id == run_id] if run_id is not None else []
    finished = e.status.in_(("answered", "budget_exhausted", "format_error", "cancelled", "error"))

    def count_if(cond: ColumnElement[bool]) -> Any:
        return func.sum(case((cond, 1), else_=0))

    agg = select(
        func.count().label("episodes"),
        count_if(finished).label("finished"),
        count_if(e.correct.is_not(None)).label("judged"),
        count_if(e.correct.is_(True)).label("judged_correct"),
        count_if(e.human_correct.is_not(None)).label("human_judged"),
        count_if(e.human_correct.is_(True)).label("human_correct"),
        count_if(and_(finished, e.n_tool_calls > 0)).label("tool"),
        count_if(and_(finished, e.n_text > 0)).label("text"),
        count_if(and_(finished, e.n_whole > 0)).label("whole"),
        count_if(and_(finished, e.n_crop > 0)).label("crop"),
        count_if(and_(finished, e.self_corrected.is_(True))).label("selfcorr"),
        count_if(and_(finished, e.format_ok.is_(True))).label("fmt"),
        func.avg(case((finished, e.n_tool_calls))).label("calls"),
        func.avg(case((finished, e.n_turns))).label("turns"),
        func.avg(case((finished, e.response_tokens))).label("tokens"),
    ).where(*scope)
    with store.read() as conn:
        a = conn.execute(agg).one()
        status_counts = {
            s: int(n) for s, n in conn.execute(select(e.status, func.count()).where(*scope).group_by(e.status))
        }
        latencies = sorted(
            float(v) for (v,) in conn.execute(select(e.elapsed_s).where(*scope, finished, e.elapsed_s.is_not(None)))
        )
        name = "all runs"
        if run_id is not None:
            name_row = conn.execute(select(runs.c.name).where(runs.c.id == run_id)).first()
            if name_row is None:
                raise NotFoundError(f"no run {run_id}")
            name = name_row.name
    fin = int(a.finished or 0)
    return RunStats(
        run_id=run_id,
        name=name,
        episodes=int(a.episodes or 0),
        finished=fin,
        status_counts=status_counts,
        judged=int(a.judged or 0),
        judge_accuracy=_share(a.judged_correct, int(a.judged or 0)),
        human_judged=int(a.human_judged or 0),
        human_accuracy=_share(a.human_correct, int(a.human_judged or 0)),
        tool_use_share=_share(a.tool, fin),
        text_search_share=_share(a.text, fin),
        whole_image_share=_share(a.whole, fin),
        crop_share=_share(a.crop, fin),
        self_correction_share=_share(a.selfcorr, fin),
        format_ok_share=_share(a.fmt, fin),
        mean_tool_calls=float(a.calls) if a.calls is not None else None,
        mean_turns=float(a.turns) if a.turns is not None else None,
        mean_response_tokens=float(a.tokens) if a.tokens is not None else None,
        latency_p50_s=_percentile(latencies, 50),
        latency_p95_s=_percentile(latencies, 95),
    )
