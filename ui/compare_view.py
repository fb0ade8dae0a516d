"""The Compare tab's logic: which runs to compare, their statistics in, figures and tables out.

`load_comparison` reads everything the tab shows through `traces.stats` (SQL aggregates: a few queries per run,
one join for the pair), and `render_comparison` turns it into figures, tables and text without touching the
store. The tab's callbacks call these two; `bench/compare_tab.py` times them together.

A selection is a list of run choices, "ID · name (kind, N episodes)", or for a rollout run a slice of its GRPO
steps, "ID · name · steps LO-HI". The paired comparison (McNemar, flipped questions) needs two runs with one
episode per question, so it pairs whole runs only; a rollout slice is compared through its aggregates.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from traces.queries import list_runs
from traces.records import RunRecord
from traces.stats import (
    PairedComparison,
    PairedQuestion,
    RunReport,
    compare_runs,
    judge_label,
    number,
    paired_questions,
    percent,
    run_report,
    train_step_ranges,
)
from traces.store import TraceStore
from ui.charts import accuracy_figure, behaviour_figure, run_label, tool_usage_figure
from ui.safe import md_text, truncate

MAX_FLIPS_SHOWN = 500
SUMMARY_COLUMNS = [
    "run",
    "kind",
    "model",
    "episodes",
    "judged",
    "accuracy [95% CI]",
    "unknown",
    "errors",
    "crop rate",
    "text searches",
    "turns",
    "tokens",
    "latency p50 / p95 (s)",
    "judge",
]
FLIP_COLUMNS = ["change", "question", "answer A", "answer B", "item"]
CSV_COLUMNS = [
    "item_key",
    "question",
    "data_source",
    "answer_a",
    "correct_a",
    "answer_b",
    "correct_b",
    "flipped",
    "episode_a",
    "episode_b",
]
_CHOICE = re.compile(r"^\s*(\d+)\b")
_STEPS = re.compile(r"steps\s+(\d+)\s*-\s*(\d+)\s*$")


@dataclass(frozen=True)
class RunSlice:
    """A run, or the episodes of a rollout run's GRPO steps lo..hi."""

    run_id: int
    steps: tuple[int, int] | None = None


def parse_choice(choice: str) -> RunSlice:
    """'12 · name (eval, 500 episodes)' or '9 · name · steps 0-24' (a typed '9 steps 3-7' works too)."""
    match = _CHOICE.match(choice or "")
    if match is None:
        raise ValueError(f"{choice!r} is not a run: pick one from the list (it starts with the run id)")
    steps = _STEPS.search(choice)
    if steps is None:
        return RunSlice(int(match.group(1)))
    lo, hi = int(steps.group(1)), int(steps.group(2))
    return RunSlice(int(match.group(1)), (min(lo, hi), max(lo, hi)))


def step_slices(lo: int, hi: int, parts: int = 4) -> list[tuple[int, int]]:
    """Up to `parts` consecutive step ranges covering lo..hi (early steps against late ones)."""
    count = hi - lo + 1
    if count <= 1:
        return []
    parts = min(parts, count)
    bounds = [lo + round(i * count / parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]


def run_choices(runs: Sequence[RunRecord], steps: dict[int, tuple[int, int]]) -> list[str]:
    """Newest run first; each rollout run is followed by slices of its steps."""
    out = []
    for run in sorted(runs, key=lambda r: r.id, reverse=True):
        base = f"{run.id} · {truncate(run.name, 60)}"
        out.append(f"{base} ({run.kind}, {run.episodes} episodes)")
        if run.id in steps:
            out += [f"{base} · steps {lo}-{hi}" for lo, hi in step_slices(*steps[run.id])]
    return out


def default_selection(runs: Sequence[RunRecord], choices: Sequence[str]) -> list[str]:
    """The two most recent eval runs with episodes, older first (A, then B); else the two most recent runs."""
    evals = [r for r in runs if r.kind == "eval" and r.episodes]
    picked = sorted(evals or [r for r in runs if r.episodes], key=lambda r: r.id)[-2:]
    wanted = {r.id for r in picked}
    by_id = {parse_choice(c).run_id: c for c in choices if parse_choice(c).steps is None}
    return [by_id[i] for i in sorted(wanted) if i in by_id]


def keep_selection(current: Sequence[str], choices: Sequence[str], default: Sequence[str]) -> list[str]:
    """The user's selection carried over to a reloaded list (labels change as runs grow), else the default."""
    fresh = {parse_choice(c): c for c in choices}
    try:
        kept = [fresh.get(parse_choice(c)) for c in current or ()]
    except ValueError:
        return list(default)
    return [c for c in kept if c] or list(default)


def list_choices(store: TraceStore) -> tuple[list[str], list[str]]:
    """All run choices and the default selection."""
    runs = list_runs(store)
    choices = run_choices(runs, train_step_ranges(store, [r.id for r in runs if r.kind == "rollout"]))
    return choices, default_selection(runs, choices)


# ---- loading ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    reports: tuple[RunReport, ...]
    pair: PairedComparison | None
    pair_problem: str | None  # why there is no paired comparison, for the page


def pick_pair(slices: Sequence[RunSlice], a: str | None, b: str | None) -> tuple[RunSlice, RunSlice] | None:
    """The runs to pair: A and B when both are chosen, else the first two of the selection."""
    if a and b:
        return parse_choice(a), parse_choice(b)
    return (slices[0], slices[1]) if len(slices) >= 2 else None


def load_comparison(
    store: TraceStore, slices: Sequence[RunSlice], pair: tuple[RunSlice, RunSlice] | None
) -> Comparison:
    """Reports for every selected slice and the paired comparison of `pair` (store reads only)."""
    reports = tuple(run_report(store, s.run_id, steps=s.steps) for s in slices)
    problem = None
    paired = None
    if pair is None:
        problem = "Pick two runs to see the paired comparison."
    elif pair[0].run_id == pair[1].run_id:
        problem = "A and B are the same run: pick two different runs to pair."
    elif pair[0].steps is not None or pair[1].steps is not None:
        problem = (
            "The paired comparison needs whole runs with one episode per question (eval runs); slices of a "
            "rollout run's steps are compared by their charts and table above."
        )
    else:
        paired = compare_runs(store, pair[0].run_id, pair[1].run_id, max_flips=MAX_FLIPS_SHOWN)
    return Comparison(reports, paired, problem)


def per_question_csv(store: TraceStore, pair: PairedComparison) -> str:
    """Every question both runs of the pair completed, as CSV (read when the user asks for the download)."""
    return questions_csv(paired_questions(store, pair.run_a, pair.run_b))


# ---- rendering -------------------------------------------------------------------------------------------------


def summary_rows(reports: Sequence[RunReport]) -> list[list[str | int]]:
    rows = []
    for r in reports:
        ci = f" [{percent(r.ci95[0])} - {percent(r.ci95[1])}]" if r.ci95 else ""
        rows.append(
            [
                run_label(r),
                r.kind,
                r.model or "-",
                r.n,
                r.judged,
                percent(r.accuracy) + ci,
                r.unknown,
                r.errors,
                percent(r.tool_usage.get("crop_search")),
                number(r.mean_text_searches, ".2f"),
                number(r.mean_turns, ".2f"),
                number(r.mean_response_tokens, ".0f"),
                f"{number(r.latency_p50_s, '.2f')} / {number(r.latency_p95_s, '.2f')}",
                judge_label(r.judge),
            ]
        )
    return rows


def summary_notes(reports: Sequence[RunReport]) -> str:
    """What the numbers cannot show: runs without episodes or verdicts, undecided verdicts."""
    notes = []
    for r in reports:
        label = md_text(run_label(r))
        if r.n == 0:
            notes.append(f"- **{label}** has no episodes.")
        elif r.judged == 0:
            how = (
                f"judge them with `python -m agent eval --run-name {md_text(r.run_name)} --rejudge --judge rule`"
                if r.kind == "eval"
                else "only eval runs and GRPO rollouts carry verdicts"
            )
            notes.append(
                f"- **{label}** has no judged episodes, so it has no accuracy ({r.completed} completed; {how})."
            )
        elif r.unknown:
            notes.append(f"- **{label}**: {r.unknown} verdicts are unknown (the judge could not decide); not counted.")
    return "\n".join(notes)


def pair_markdown(comparison: Comparison) -> str:
    c = comparison.pair
    if c is None:
        return f"*{md_text(comparison.pair_problem or '')}*"
    a, b = md_text(f"#{c.run_a} {c.name_a}"), md_text(f"#{c.run_b} {c.name_b}")
    lines = [f"**A** = {a} · **B** = {b}"]
    if c.shared == 0:
        lines.append("These runs share no completed question: there is nothing to pair.")
        return "\n\n".join(lines)
    if c.only_a or c.only_b:
        lines.append(
            f"The runs cover different questions: **{c.shared} shared** (A only {c.only_a}, B only {c.only_b}); "
            "only the shared ones are compared."
        )
    else:
        lines.append(f"{c.shared} questions, all shared.")
    if c.paired == 0:
        lines.append("No shared question was judged in both runs, so there is no accuracy to compare.")
        return "\n\n".join(lines)
    diff = f"{100 * c.difference:+.1f} points" if c.difference is not None else "-"
    lines.append(
        f"On the {c.paired} questions judged in both: accuracy A **{percent(c.accuracy_a)}**, "
        f"B **{percent(c.accuracy_b)}**, B − A **{diff}**; exact McNemar p = **{c.p_value:.4g}**"
        + (" (the difference is significant at 5%)" if c.p_value < 0.05 else " (not significant at 5%)")
    )
    lines.append(
        f"Both right {c.both_correct} · both wrong {c.both_incorrect} · A right only {c.a_only_correct} · "
        f"B right only {c.b_only_correct}"
    )
    if c.flips_total > len(c.flips):
        lines.append(f"{c.flips_total} questions flipped; the table lists the first {len(c.flips)} (B's gains first).")
    elif c.flips_total:
        lines.append(f"{c.flips_total} questions flipped: click one to see both trajectories.")
    else:
        lines.append("No question flipped.")
    return "\n\n".join(lines)


def flip_rows(comparison: Comparison) -> list[list[str]]:
    c = comparison.pair
    if c is None:
        return []
    return [
        [
            "B gains" if f.correct_b else "B loses",
            truncate(f.question, 100),
            truncate(f.answer_a or "(no answer)", 60),
            truncate(f.answer_b or "(no answer)", 60),
            f.item_key[:12],
        ]
        for f in c.flips
    ]


def flip_episodes(comparison: Comparison | None, row: int) -> tuple[str, str] | None:
    """The two episode ids behind a row of the flips table."""
    if comparison is None or comparison.pair is None or not 0 <= row < len(comparison.pair.flips):
        return None
    flip = comparison.pair.flips[row]
    return flip.episode_a, flip.episode_b


def questions_csv(rows: Sequence[PairedQuestion]) -> str:
    """The per-question table (every shared question, both answers and verdicts) as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    verdict = {True: "correct", False: "incorrect", None: ""}
    for q in rows:
        writer.writerow(
            [
                q.item_key,
                q.question,
                q.data_source or "",
                q.answer_a or "",
                verdict[q.correct_a],
                q.answer_b or "",
                verdict[q.correct_b],
                "yes" if q.flipped else "no",
                q.episode_a,
                q.episode_b,
            ]
        )
    return out.getvalue()


@dataclass(frozen=True)
class RenderedComparison:
    accuracy: go.Figure
    tool_usage: go.Figure
    behaviour: go.Figure
    summary: list[list[str | int]]
    notes: str
    pair: str
    flips: list[list[str]]


def render_comparison(comparison: Comparison) -> RenderedComparison:
    reports = comparison.reports
    return RenderedComparison(
        accuracy=accuracy_figure(reports),
        tool_usage=tool_usage_figure(reports),
        behaviour=behaviour_figure(reports),
        summary=summary_rows(reports),
        notes=summary_notes(reports),
        pair=pair_markdown(comparison),
        flips=flip_rows(comparison),
    )
