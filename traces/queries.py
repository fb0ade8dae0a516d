"""Read side: filtered episode lists with keyset pagination, whole episodes and runs (run statistics: traces.stats).

Every function takes the store and returns the typed records of `traces.records`. The list query reads only the
`episodes` table (its counters are kept by the recorder and importers), ordered by (started_at, id) so that a
page is an index range scan whatever the table size; the cursor is the last row's (started_at, id).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, literal_column, select, text, tuple_

from traces.errors import AmbiguousIdError, NotFoundError
from traces.models import annotations, episodes, events, images, runs, tool_calls, turns
from traces.records import (
    EpisodeDetail,
    EpisodeSummary,
    Page,
    RunRecord,
    ToolCallRecord,
    TurnRecord,
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
    e = episodes.c
    where: list[ColumnElement[bool]] = []
    if f.run_ids:
        where.append(e.run_id.in_(f.run_ids))
    if f.model:
        where.append(e.model == f.model)
    if f.dialect:
        where.append(e.dialect == f.dialect)
    if f.dataset:
        where.append(e.dataset == f.dataset)
    if f.status:
        where.append(e.status.in_(f.status))
    if f.correct is not None:
        where.append(func.coalesce(e.human_correct, e.correct) == f.correct)
    if f.judged is not None:
        verdict = func.coalesce(e.human_correct, e.correct)
        where.append(verdict.is_not(None) if f.judged else verdict.is_(None))
    if f.pattern:
        where.append(pattern_condition(f.pattern))
    if f.review:
        where.append(e.review_state == f.review)
    if f.annotator:
        where.append(
            e.id.in_(select(annotations.c.episode_id).where(annotations.c.annotator == f.annotator).scalar_subquery())
        )
    if f.text and _text_words(f.text):
        where.append(_text_condition(store, f.text))
    return where


def pattern_condition(pattern: str) -> ColumnElement[bool]:
    """The episodes of one action pattern (PATTERNS), as a SQL condition (also traces.stats' tool-usage shares)."""
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


def _text_condition(store: TraceStore, query: str) -> ColumnElement[bool]:
    words = _text_words(query)  # callers pass text with at least one word
    if store.dialect == "sqlite":
        # Each word quoted: user text can never be read as FTS5 syntax (AND/OR/NEAR/column filters).
        match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
        # `id + 0` keeps SQLite from driving the query by the FTS rowid list (then sorting every match: 480 ms
        # for a word in most episodes at 100k); instead it walks the started_at index and probes the match set,
        # stopping after one page. Worst case (a rare word) is one index walk: ~25 ms at 100k episodes.
        fts = text("SELECT rowid FROM episodes_fts WHERE episodes_fts MATCH :f_text").bindparams(f_text=match)
        return (episodes.c.id + 0).in_(fts)
    if store.dialect == "postgresql":
        return func.to_tsvector(literal_column("'simple'"), episodes.c.search_text).op("@@")(
            func.plainto_tsquery(literal_column("'simple'"), " ".join(words))
        )
    return and_(*[episodes.c.search_text.ilike(f"%{w}%") for w in words])


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
    """The SELECT behind a page (fetches limit + 1 rows to know whether another page follows)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}")
    where = _conditions(store, filters or EpisodeFilter())
    key = tuple_(episodes.c.started_at, episodes.c.id)
    if after:
        bound = tuple_(*decode_cursor(after))
        where.append(key < bound if newest_first else key > bound)
    order = (
        (episodes.c.started_at.desc(), episodes.c.id.desc()) if newest_first else (episodes.c.started_at, episodes.c.id)
    )
    return select(*_SUMMARY_COLUMNS).where(*where).order_by(*order).limit(limit + 1)


def list_episodes(
    store: TraceStore,
    filters: EpisodeFilter | None = None,
    *,
    limit: int = 50,
    after: str | None = None,
    newest_first: bool = True,
) -> Page:
    """One page of episodes, newest first. `after` is the previous page's `next_cursor`."""
    stmt = list_statement(store, filters, limit=limit, after=after, newest_first=newest_first)
    with store.read() as conn:
        rows = conn.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([_summary(r) for r in rows], encode_cursor(rows[-1].started_at, rows[-1].id) if more else None)


def iter_episodes(
    store: TraceStore,
    filters: EpisodeFilter | None = None,
    *,
    newest_first: bool = True,
    page_size: int = MAX_PAGE,
) -> Iterator[EpisodeSummary]:
    """Every episode `filters` selects, read a page at a time as the iterator is consumed."""
    after = None
    while True:
        page = list_episodes(store, filters, limit=page_size, after=after, newest_first=newest_first)
        yield from page.items
        if page.next_cursor is None:
            return
        after = page.next_cursor


def _summary(row: Any) -> EpisodeSummary:
    """From a row holding the `_SUMMARY_COLUMNS` (the list query, or the whole episode row)."""
    return EpisodeSummary(
        id=row.uid,
        run_id=row.run_id,
        question=row.question,
        status=row.status,
        final_answer=row.final_answer,
        correct=row.correct,
        human_correct=row.human_correct,
        model=row.model,
        dialect=row.dialect,
        dataset=row.dataset,
        n_turns=row.n_turns,
        n_tool_calls=row.n_tool_calls,
        n_text=row.n_text,
        n_whole=row.n_whole,
        n_crop=row.n_crop,
        response_tokens=row.response_tokens,
        elapsed_s=row.elapsed_s,
        review_state=row.review_state,
        started_at=row.started_at,
        image_sha256=row.image_sha256,
    )


def count_episodes(store: TraceStore, filters: EpisodeFilter | None = None) -> int:
    stmt = select(func.count()).select_from(episodes).where(*_conditions(store, filters or EpisodeFilter()))
    with store.read() as conn:
        return int(conn.execute(stmt).scalar_one())


MIN_ID_PREFIX = 4  # shorter prefixes match too much to be worth typing (git asks for 4 as well)


def resolve_episode_id(store: TraceStore, given: str) -> str:
    """The episode id that `given` names: the id itself, or an unambiguous prefix of one (at least 4 characters).

    Raises NotFoundError when no episode matches and AmbiguousIdError (listing a few matches) when several do.
    """
    given = given.strip()
    with store.read() as conn:
        if conn.execute(select(episodes.c.uid).where(episodes.c.uid == given)).first() is not None:
            return given
        if len(given) < MIN_ID_PREFIX:
            raise NotFoundError(f"no episode {given!r} (a shortened id needs at least {MIN_ID_PREFIX} characters)")
        matches = list(
            conn.execute(
                select(episodes.c.uid)
                .where(episodes.c.uid.startswith(given, autoescape=True))
                .order_by(episodes.c.uid)
                .limit(6)
            ).scalars()
        )
    matches = [m for m in matches if m.startswith(given)]  # SQLite's LIKE ignores case; ids do not
    if not matches:
        raise NotFoundError(f"no episode id starts with {given!r} (`python -m traces list` shows the ids)")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise AmbiguousIdError(f"{given!r} starts several episode ids ({shown}): give more characters")
    return matches[0]


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


# Built once at import: an episode is opened on every click, and these never change (values are bound per call).
_CROP = images.alias("crop")


def _columns_except(table: Any, *names: str) -> list[Any]:
    # Only what the records need: skipping bookkeeping columns (and the episode's search_text, as long as the
    # question and answers together) saves converting and carrying them on every open.
    return [c for c in table.c if c.name not in names]


_OPEN_EPISODE = (
    select(
        *_columns_except(episodes, "search_text", "writer", "source_row", "updated_at"),
        images.c.data.label("image_data"),
    )
    .outerjoin(images, images.c.sha256 == episodes.c.image_sha256)
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
_OPEN_RUN = select(runs).where(runs.c.id == bindparam("run_id"))


def load_episode(store: TraceStore, episode_id: str) -> EpisodeDetail:
    """The whole episode: summary, run, turns with their tool calls (boxes, crop images) and notes, the image."""
    with store.read() as conn:
        row = conn.execute(_OPEN_EPISODE, {"uid": episode_id}).first()
        if row is None:
            raise NotFoundError(f"no episode {episode_id!r}")
        run_row = conn.execute(_OPEN_RUN, {"run_id": row.run_id}).one()
        turn_rows = conn.execute(_OPEN_TURNS, {"pk": row.id}).all()
        call_rows = conn.execute(_OPEN_CALLS, {"pk": row.id}).all()
        note_rows = conn.execute(_OPEN_NOTES, {"pk": row.id}).all()
    calls_by_turn: dict[int, list[ToolCallRecord]] = {}
    for c in call_rows:
        calls_by_turn.setdefault(c.turn_index, []).append(_tool_call(c))
    notes_by_turn: dict[int, list[dict[str, Any]]] = {}
    for n in note_rows:
        notes_by_turn.setdefault(n.turn_index, []).append({"type": n.type, **(n.payload or {})})
    return EpisodeDetail(
        summary=_summary(row),
        run=_run_record(run_row),  # episodes left at 0: not counted when opening one episode
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
        turns=[_turn(t, calls_by_turn.get(t.index, []), notes_by_turn.get(t.index, [])) for t in turn_rows],
        image_bytes=bytes(row.image_data) if row.image_data is not None else None,
    )


def _turn(t: Any, calls: list[ToolCallRecord], notes: list[dict[str, Any]]) -> TurnRecord:
    return TurnRecord(
        index=t.index,
        raw_text=t.raw_text,
        complete=t.complete,
        reason=t.reason,
        action=t.action,
        argument=t.argument,
        format_ok=t.format_ok,
        error=t.error,
        tokens=t.tokens,
        latency_s=t.latency_s,
        tool_calls=calls,
        notes=notes,
    )


def _tool_call(c: Any) -> ToolCallRecord:
    box = (c.crop_x0, c.crop_y0, c.crop_x1, c.crop_y1)
    return ToolCallRecord(
        turn_index=c.turn_index,
        call_index=c.call_index,
        kind=c.kind,
        argument=c.argument,
        provider=c.provider,
        status=c.status,
        items=list(c.items or []),
        summary=c.summary,
        information=c.information,
        error=c.error,
        cache_hit=bool(c.cache_hit),
        latency_s=c.latency_s,
        crop_box=tuple(box) if None not in box else None,
        crop_image_sha256=c.crop_image_sha256,
        crop_image_bytes=bytes(c.crop_data) if c.crop_data is not None else None,
        grounding_fallback=bool(c.grounding_fallback),
        grounding_score=c.grounding_score,
        grounding_note=c.grounding_note,
    )
