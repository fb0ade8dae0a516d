"""Run statistics: the eval report, `python -m traces stats` and the Compare tab read these functions (DESIGN.md §3.8).

`run_report(store, run_id)` is accuracy over judged episodes with a bootstrap interval, the same per data source,
which judge decided, the paper's tool-usage categories (Fig. 4), and mean turns, tool calls, tokens and latency.
`compare_runs(store, a, b)` pairs two runs by item key: accuracy difference, an exact McNemar p-value and the
questions whose verdict flipped; `paired_questions(store, a, b)` lists every shared question with both verdicts
(the Compare tab's CSV). `run_report(..., steps=(lo, hi))` reports a slice of a rollout run (its GRPO steps).

Everything is computed by SQL aggregates over `episodes` (a handful of queries per run, no per-episode Python),
so two runs of 10,000 episodes compare in well under a second. The bootstrap needs only counts: resampling n
judged episodes of which k are correct is drawing Binomial(n, k/n), so it runs on the two numbers.

Definitions:
- n: episodes in the run. completed: ended `answered`, `budget_exhausted` or `format_error` (what a judge reads).
- judged: episodes with a decided verdict (correct or incorrect); unknown: the judge could not decide (counted
  apart, fixable with `--rejudge`); unjudged: completed but never judged; errors: status `error`.
- accuracy = correct / judged.
- Tool-usage shares are over completed episodes and overlap (an episode with a crop and two text searches counts
  in crop, image-and-text and several-text-searches); they match the Traces tab's action-pattern filters, except
  that "answered directly" also needs an answer (an episode that ended in format errors without searching is not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, case, func, literal, select

from agent.events import COMPLETED_STATUSES
from traces.errors import NotFoundError
from traces.models import episodes, runs
from traces.queries import pattern_condition
from traces.store import TraceStore

BOOTSTRAP_RESAMPLES = 10_000

# The paper's tool-usage categories, in the order reports print them.
TOOL_USAGE_LABELS = {
    "answered_directly": "answered directly",
    "text_search_only": "text search only",
    "whole_image_search": "whole-image search",
    "crop_search": "crop search",
    "image_and_text_search": "image and text search",
    "several_text_searches": "several text searches",
    "self_correction": "self-correction",
}


# The categories that are one of the Traces tab's action patterns as they are (traces.queries.PATTERNS).
_PATTERN_OF = {
    "text_search_only": "text_only",
    "whole_image_search": "whole_image",
    "crop_search": "crop",
    "image_and_text_search": "mixed",
    "several_text_searches": "multi_text",
}


def tool_usage_condition(category: str) -> ColumnElement[bool]:
    """The episodes of one tool-usage category, as a SQL condition."""
    e = episodes.c
    if category == "answered_directly":
        return and_(e.status == "answered", pattern_condition("direct"))
    if category == "self_correction":
        # a second text search with a new query after reading the first one's results (traces.recorder)
        return e.self_corrected.is_(True)
    return pattern_condition(_PATTERN_OF[category])


@dataclass(frozen=True)
class SourceStats:
    source: str
    n: int
    judged: int
    correct: int
    unknown: int
    accuracy: float | None
    ci95: tuple[float, float] | None


@dataclass(frozen=True)
class RunReport:
    run_id: int
    run_name: str
    kind: str
    model: str | None
    dataset: str | None
    n: int
    completed: int
    judged: int
    correct: int
    unknown: int
    unjudged: int
    errors: int
    status_counts: dict[str, int]
    accuracy: float | None
    ci95: tuple[float, float] | None
    judge: dict[str, Any]  # the run's judge description (kind, model, prompt version) and `names`: {judge: episodes}
    by_source: dict[str, SourceStats]
    tool_usage: dict[str, float | None]  # share of completed episodes per category (TOOL_USAGE_LABELS)
    tool_usage_counts: dict[str, int]
    any_tool_share: float | None
    format_ok_share: float | None
    mean_turns: float | None
    mean_tool_calls: float | None
    mean_response_tokens: float | None
    mean_latency_s: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    human_judged: int  # annotators' consensus verdicts
    human_accuracy: float | None
    mean_text_searches: float | None = None  # over completed episodes
    steps: tuple[int, int] | None = None  # the GRPO steps reported (a rollout run's slice), None: the whole run


def bootstrap_ci(
    correct: int, n: int, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of an accuracy k/n, from the counts (fixed seed: reports repeat)."""
    if n <= 0:
        return None
    draws = np.random.default_rng(seed).binomial(n, correct / n, size=resamples) / n
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _scope(run_id: int, steps: tuple[int, int] | None) -> ColumnElement[bool]:
    """The run's episodes, or those of its GRPO steps lo..hi (inclusive) when `steps` is given."""
    e = episodes.c
    if steps is None:
        return e.run_id == run_id
    return and_(e.run_id == run_id, e.train_step.between(steps[0], steps[1]))


def run_report(
    store: TraceStore, run_id: int, *, steps: tuple[int, int] | None = None, resamples: int = BOOTSTRAP_RESAMPLES
) -> RunReport:
    e = episodes.c
    scope = _scope(run_id, steps)
    completed = e.status.in_(COMPLETED_STATUSES)
    judged = e.correct.is_not(None)
    timed = and_(completed, e.elapsed_s.is_not(None))
    totals = select(
        func.count().label("n"),
        _count_if(completed).label("completed"),
        _count_if(judged).label("judged"),
        _count_if(e.correct.is_(True)).label("correct"),
        _count_if(e.verdict == "unknown").label("unknown"),
        _count_if(and_(completed, e.correct.is_(None), func.coalesce(e.verdict, "") != "unknown")).label("unjudged"),
        _count_if(e.status == "error").label("errors"),
        _count_if(and_(completed, e.n_tool_calls > 0)).label("any_tool"),
        _count_if(and_(completed, e.format_ok.is_(True))).label("format_ok"),
        _count_if(e.human_correct.is_not(None)).label("human_judged"),
        _count_if(e.human_correct.is_(True)).label("human_correct"),
        _count_if(timed).label("timed"),
        func.avg(case((completed, e.n_turns))).label("turns"),
        func.avg(case((completed, e.n_tool_calls))).label("calls"),
        func.avg(case((completed, e.n_text))).label("texts"),
        func.avg(case((completed, e.response_tokens))).label("tokens"),
        func.avg(case((timed, e.elapsed_s))).label("latency"),
        *(_count_if(and_(completed, tool_usage_condition(c))).label(c) for c in TOOL_USAGE_LABELS),
    ).where(scope)
    source = func.coalesce(e.dataset, literal(""))
    by_source = (
        select(
            source.label("source"),
            func.count().label("n"),
            _count_if(judged).label("judged"),
            _count_if(e.correct.is_(True)).label("correct"),
            _count_if(e.verdict == "unknown").label("unknown"),
        )
        .where(scope)
        .group_by(source)
        .order_by(source)
    )
    with store.read() as conn:
        run = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        t = conn.execute(totals).one()
        statuses = {s: int(k) for s, k in conn.execute(select(e.status, func.count()).where(scope).group_by(e.status))}
        names = {
            j: int(k)
            for j, k in conn.execute(select(e.judge, func.count()).where(scope, e.judge.is_not(None)).group_by(e.judge))
        }
        sources = conn.execute(by_source).all()
        p50, p95 = _percentiles(conn, scope, timed, int(t.timed))
    completed_n = int(t.completed)
    judge = dict((run.config or {}).get("judge") or {})
    judge["names"] = names
    return RunReport(
        run_id=run_id,
        run_name=run.name,
        kind=run.kind,
        model=run.model,
        dataset=run.dataset,
        n=int(t.n),
        completed=completed_n,
        judged=int(t.judged),
        correct=int(t.correct),
        unknown=int(t.unknown),
        unjudged=int(t.unjudged),
        errors=int(t.errors),
        status_counts=statuses,
        accuracy=_ratio(int(t.correct), int(t.judged)),
        ci95=bootstrap_ci(int(t.correct), int(t.judged), resamples=resamples),
        judge=judge,
        by_source={
            r.source: SourceStats(
                r.source,
                int(r.n),
                int(r.judged),
                int(r.correct),
                int(r.unknown),
                _ratio(int(r.correct), int(r.judged)),
                bootstrap_ci(int(r.correct), int(r.judged), resamples=resamples),
            )
            for r in sources
        },
        tool_usage={c: _ratio(int(getattr(t, c)), completed_n) for c in TOOL_USAGE_LABELS},
        tool_usage_counts={c: int(getattr(t, c)) for c in TOOL_USAGE_LABELS},
        any_tool_share=_ratio(int(t.any_tool), completed_n),
        format_ok_share=_ratio(int(t.format_ok), completed_n),
        mean_turns=_float(t.turns),
        mean_tool_calls=_float(t.calls),
        mean_response_tokens=_float(t.tokens),
        mean_latency_s=_float(t.latency),
        latency_p50_s=p50,
        latency_p95_s=p95,
        human_judged=int(t.human_judged),
        human_accuracy=_ratio(int(t.human_correct), int(t.human_judged)),
        mean_text_searches=_float(t.texts),
        steps=steps,
    )


def train_step_ranges(store: TraceStore, run_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """First and last GRPO step recorded in each run that has any (rollout runs), by run id."""
    if not run_ids:
        return {}
    e = episodes.c
    stmt = (
        select(e.run_id, func.min(e.train_step), func.max(e.train_step))
        .where(e.run_id.in_(list(run_ids)), e.train_step.is_not(None))
        .group_by(e.run_id)
    )
    with store.read() as conn:
        return {int(r): (int(lo), int(hi)) for r, lo, hi in conn.execute(stmt)}


def _percentiles(
    conn: Any, scope: ColumnElement[bool], condition: ColumnElement[bool], count: int
) -> tuple[float | None, ...]:
    """Nearest-rank p50 and p95 of the run's latencies: one sort in the database, two rows back."""
    if not count:
        return None, None
    ranks = [max(1, math.ceil(q / 100 * count)) for q in (50, 95)]
    e = episodes.c
    ranked = (
        select(e.elapsed_s.label("v"), func.row_number().over(order_by=e.elapsed_s).label("rank"))
        .where(scope, condition)
        .subquery()
    )
    values = dict(conn.execute(select(ranked.c.rank, ranked.c.v).where(ranked.c.rank.in_(ranks))).all())
    return tuple(_float(values.get(rank)) for rank in ranks)


def report_dict(report: RunReport) -> dict[str, Any]:
    """The report as JSON-able data (what `--report FILE` writes and `traces stats --json` prints)."""
    data = asdict(report)
    data["ci95"] = list(report.ci95) if report.ci95 else None
    data["steps"] = list(report.steps) if report.steps else None
    for source in data["by_source"].values():
        source["ci95"] = list(source["ci95"]) if source["ci95"] else None
    return data


def percent(x: float | None) -> str:
    """A share as a percentage with one decimal ("42.5%"), "-" when there is none: reports, tables, the Compare tab."""
    return "-" if x is None else f"{100 * x:.1f}%"


def number(x: float | None, fmt: str = ".1f") -> str:
    """A mean or a latency in `fmt`, "-" when there is none."""
    return "-" if x is None else format(x, fmt)


def judge_label(judge: dict[str, Any]) -> str:
    if judge.get("kind") == "llm":
        label = f"llm {judge.get('model')} (prompt {judge.get('prompt_version')})"
    elif judge.get("kind") == "rule":
        label = f"rule ({judge.get('prompt_version', 'rule')})"
    else:
        label = "not recorded"
    names = judge.get("names") or {}
    if len(names) > 1:
        label += "; episodes judged by " + ", ".join(f"{k} ({v})" for k, v in sorted(names.items()))
    return label


def format_report(report: RunReport) -> str:
    """The table printed at the end of an eval and by `python -m traces stats --run ID`."""
    ci = f" [95% CI {percent(report.ci95[0])} - {percent(report.ci95[1])}]" if report.ci95 else ""
    lines = [
        f"run {report.run_id} {report.run_name!r} ({report.kind}, {report.model or '-'})",
        f"  accuracy     {percent(report.accuracy)}{ci}: {report.correct} correct of {report.judged} judged",
        f"  episodes     {report.n}: {report.completed} completed, {report.unknown} unknown verdicts, "
        f"{report.unjudged} not judged, {report.errors} errors",
        "  statuses     " + ", ".join(f"{k} {v}" for k, v in sorted(report.status_counts.items())),
        f"  judge        {judge_label(report.judge)}",
    ]
    if report.by_source:
        lines.append("  by source")
        width = max(len(s or "(none)") for s in report.by_source)
        for name, s in report.by_source.items():
            lines.append(
                f"    {(name or '(none)'):{width}}  {percent(s.accuracy):>6}  {s.correct}/{s.judged} judged, n {s.n}"
            )
    lines.append(f"  tool use     (share of {report.completed} completed episodes; categories overlap)")
    for key, label in TOOL_USAGE_LABELS.items():
        lines.append(f"    {label:24} {percent(report.tool_usage[key]):>6}  ({report.tool_usage_counts[key]})")
    lines.append(
        f"  means        turns {number(report.mean_turns)}, tool calls {number(report.mean_tool_calls)}, "
        f"tokens {number(report.mean_response_tokens, '.0f')}, latency {number(report.mean_latency_s, '.2f')} s "
        f"(p50 {number(report.latency_p50_s, '.2f')}, p95 {number(report.latency_p95_s, '.2f')})"
    )
    if report.human_judged:
        lines.append(f"  annotators   {percent(report.human_accuracy)} correct of {report.human_judged} reviewed")
    return "\n".join(lines)


def runs_table(reports: Sequence[RunReport]) -> str:
    """One line per run (accuracy, unknowns, errors, tool-usage shares, means) and its statuses: `traces stats`."""
    short = {
        "answered_directly": "direct",
        "text_search_only": "text",
        "whole_image_search": "whole",
        "crop_search": "crop",
        "image_and_text_search": "img+txt",
        "several_text_searches": "texts2+",
        "self_correction": "selfc",
    }
    usage = " ".join(f"{label:>7}" for label in short.values())
    lines = [
        f"{'id':>4} {'kind':9} {'name':28} {'model':24} {'eps':>6} {'acc':>6} {'judged':>6} {'unk':>4} {'err':>4} "
        f"{usage} {'turns':>5} {'calls':>5} {'tok':>6} {'lat s':>6} {'human':>6}"
    ]
    for r in reports:
        shares = " ".join(f"{percent(r.tool_usage[key]):>7}" for key in short)
        lines.append(
            f"{r.run_id:>4} {r.kind[:9]:9} {r.run_name[:28]:28} {(r.model or '-')[-24:]:24} {r.n:>6} "
            f"{percent(r.accuracy):>6} {r.judged:>6} {r.unknown:>4} {r.errors:>4} {shares} {number(r.mean_turns):>5} "
            f"{number(r.mean_tool_calls):>5} {number(r.mean_response_tokens, '.0f'):>6} {number(r.mean_latency_s):>6} "
            f"{percent(r.human_accuracy):>6}"
        )
        lines.append(f"{'':4} statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(r.status_counts.items())))
    return "\n".join(lines)


# ---- paired comparison -------------------------------------------------------------------------------------


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts: a binomial test of b against
    Binomial(b + c, 1/2). 1.0 when there are no discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Flip:
    item_key: str
    question: str
    episode_a: str
    episode_b: str
    answer_a: str | None
    answer_b: str | None
    correct_a: bool
    correct_b: bool


@dataclass(frozen=True)
class PairedComparison:
    run_a: int
    run_b: int
    name_a: str
    name_b: str
    shared: int  # item keys completed in both runs
    only_a: int  # completed in A only
    only_b: int
    paired: int  # shared and judged in both: what accuracy and McNemar use
    accuracy_a: float | None
    accuracy_b: float | None
    difference: float | None  # accuracy_b - accuracy_a over the paired questions
    both_correct: int
    both_incorrect: int
    a_only_correct: int  # right in A, wrong in B (McNemar's b)
    b_only_correct: int  # wrong in A, right in B (McNemar's c)
    p_value: float
    flips: tuple[Flip, ...]  # up to `max_flips`, B's gains first
    flips_total: int


def _paired(run_a: int, run_b: int) -> tuple[Any, Any, ColumnElement[bool]]:
    """Two aliases of `episodes` and the join condition: completed episodes of A and B with the same item key."""
    a, b = episodes.alias("a"), episodes.alias("b")
    pair = and_(
        a.c.run_id == run_a,
        b.c.run_id == run_b,
        a.c.item_key == b.c.item_key,
        a.c.status.in_(COMPLETED_STATUSES),
        b.c.status.in_(COMPLETED_STATUSES),
    )
    return a, b, pair


def _pair_columns(a: Any, b: Any) -> list[Any]:
    """A paired question's row: its key, question and source, and each run's episode, answer and verdict."""
    return [
        a.c.item_key,
        a.c.question,
        a.c.dataset,
        a.c.uid.label("ua"),
        b.c.uid.label("ub"),
        a.c.final_answer.label("fa"),
        b.c.final_answer.label("fb"),
        a.c.correct.label("ca"),
        b.c.correct.label("cb"),
    ]


def compare_runs(store: TraceStore, run_a: int, run_b: int, *, max_flips: int = 1000) -> PairedComparison:
    """Pair completed episodes of two runs by item key (SQL join) and compare their verdicts."""
    a, b, pair = _paired(run_a, run_b)
    both = and_(a.c.correct.is_not(None), b.c.correct.is_not(None))
    counts = select(
        func.count().label("shared"),
        _count_if(both).label("paired"),
        _count_if(and_(a.c.correct.is_(True), b.c.correct.is_(True))).label("tt"),
        _count_if(and_(a.c.correct.is_(False), b.c.correct.is_(False))).label("ff"),
        _count_if(and_(a.c.correct.is_(True), b.c.correct.is_(False))).label("tf"),
        _count_if(and_(a.c.correct.is_(False), b.c.correct.is_(True))).label("ft"),
    ).where(pair)
    flipped = and_(pair, both, a.c.correct != b.c.correct)
    flips = select(*_pair_columns(a, b)).where(flipped).order_by(b.c.correct.desc(), a.c.item_key).limit(max_flips)
    e = episodes.c

    def completed_keys(run_id: int) -> Any:
        return select(func.count(func.distinct(e.item_key))).where(
            e.run_id == run_id, e.status.in_(COMPLETED_STATUSES), e.item_key.is_not(None)
        )

    with store.read() as conn:
        names = dict(conn.execute(select(runs.c.id, runs.c.name).where(runs.c.id.in_((run_a, run_b)))).all())
        for run_id in (run_a, run_b):
            if run_id not in names:
                raise NotFoundError(f"no run {run_id}")
        c = conn.execute(counts).one()
        in_a = int(conn.execute(completed_keys(run_a)).scalar_one())
        in_b = int(conn.execute(completed_keys(run_b)).scalar_one())
        rows = conn.execute(flips).all()
    paired, tf, ft = int(c.paired), int(c.tf), int(c.ft)
    acc_a = _ratio(int(c.tt) + tf, paired)
    acc_b = _ratio(int(c.tt) + ft, paired)
    return PairedComparison(
        run_a=run_a,
        run_b=run_b,
        name_a=names[run_a],
        name_b=names[run_b],
        shared=int(c.shared),
        only_a=in_a - int(c.shared),
        only_b=in_b - int(c.shared),
        paired=paired,
        accuracy_a=acc_a,
        accuracy_b=acc_b,
        difference=None if acc_a is None or acc_b is None else acc_b - acc_a,
        both_correct=int(c.tt),
        both_incorrect=int(c.ff),
        a_only_correct=tf,
        b_only_correct=ft,
        p_value=mcnemar_exact(tf, ft),
        flips=tuple(Flip(r.item_key, r.question, r.ua, r.ub, r.fa, r.fb, bool(r.ca), bool(r.cb)) for r in rows),
        flips_total=tf + ft,
    )


@dataclass(frozen=True)
class PairedQuestion:
    """One question both runs completed, with each run's answer and verdict (None: not judged)."""

    item_key: str
    question: str
    data_source: str | None
    episode_a: str
    episode_b: str
    answer_a: str | None
    answer_b: str | None
    correct_a: bool | None
    correct_b: bool | None

    @property
    def flipped(self) -> bool:
        return self.correct_a is not None and self.correct_b is not None and self.correct_a != self.correct_b


def paired_questions(store: TraceStore, run_a: int, run_b: int) -> list[PairedQuestion]:
    """Every question completed in both runs, in item-key order: the per-question table behind `compare_runs`."""
    a, b, pair = _paired(run_a, run_b)
    stmt = select(*_pair_columns(a, b)).where(pair).order_by(a.c.item_key)
    with store.read() as conn:
        rows = conn.execute(stmt).all()
    return [PairedQuestion(r.item_key, r.question, r.dataset, r.ua, r.ub, r.fa, r.fb, r.ca, r.cb) for r in rows]


def comparison_dict(comparison: PairedComparison) -> dict[str, Any]:
    return asdict(comparison)


def format_comparison(c: PairedComparison, *, show_flips: int = 20) -> str:
    diff = "-" if c.difference is None else f"{100 * c.difference:+.1f} points"
    lines = [
        f"A: run {c.run_a} {c.name_a!r}   B: run {c.run_b} {c.name_b!r}",
        f"  questions     {c.shared} in both (A only {c.only_a}, B only {c.only_b}); {c.paired} judged in both",
        f"  accuracy      A {percent(c.accuracy_a)}   B {percent(c.accuracy_b)}   B - A {diff}",
        f"  pairs         both correct {c.both_correct}, both wrong {c.both_incorrect}, "
        f"A right only {c.a_only_correct}, B right only {c.b_only_correct}",
        f"  McNemar       exact p = {c.p_value:.4g}",
    ]
    if c.only_a or c.only_b:
        lines.append("  note          the runs cover different questions: only the shared ones are compared")
    if c.flips:
        lines.append(f"  flipped       {c.flips_total} (showing {min(show_flips, len(c.flips))})")
        for f in c.flips[:show_flips]:
            arrow = "B gains" if f.correct_b else "B loses"
            lines.append(f"    {arrow}: {f.question[:70]!r}  A: {str(f.answer_a)[:30]!r}  B: {str(f.answer_b)[:30]!r}")
    return "\n".join(lines)
