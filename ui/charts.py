"""Plotly figures for the Train and Compare tabs. Pure functions: job metrics and run reports in, figures out.

- `job_figure(kind, history)`: one figure with a panel per metric group the job logged (SFT: loss, learning
  rate, grad norm; GRPO: reward mean and std, judge accuracy and format rate, KL, clip ratio, tool calls per
  episode, completion length; eval: accuracy so far). Only groups with logged values get a panel.
- `accuracy_figure`, `tool_usage_figure`, `behaviour_figure`: the Compare tab's charts from `traces.stats`
  reports (accuracy per data source with 95% intervals; the paper's tool-usage categories, Fig. 4 style; crop
  rate, mean text searches, turns, tokens and latency).
- `plot_value(figure, filename)`: what a `gr.Plot` shows, with the modebar's "Download plot as a png" saving
  `filename.png`. PNGs are made by plotly.js in the browser (bundled with Gradio, works offline): server-side
  export would need kaleido and a headless Chrome per image (about 3.7 s each here), for no gain.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from gradio.components.plot import PlotData
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from traces.records import JobMetricRecord
from traces.stats import TOOL_USAGE_LABELS, RunReport

PALETTE = qualitative.Plotly
FONT = dict(size=12)


@dataclass(frozen=True)
class MetricPanel:
    """One panel of a job's chart: the logged keys it draws (first found wins per series) and its title."""

    title: str
    series: tuple[tuple[str, tuple[str, ...]], ...]  # (legend label, metric keys to try in order)
    unit_interval: bool = False  # shares: the axis runs from 0 to 1


# TRL's own log keys (SFTTrainer, GRPOTrainer 1.16) and ours (training.rewards: episodes/*; eval jobs: accuracy).
JOB_PANELS: dict[str, tuple[MetricPanel, ...]] = {
    "sft": (
        MetricPanel("Loss", (("train loss", ("loss",)), ("eval loss", ("eval_loss",)))),
        MetricPanel("Learning rate", (("learning rate", ("learning_rate",)),)),
        MetricPanel("Grad norm", (("grad norm", ("grad_norm",)),)),
        MetricPanel("Token accuracy", (("token accuracy", ("mean_token_accuracy",)),), unit_interval=True),
    ),
    "grpo": (
        MetricPanel("Reward", (("mean", ("reward",)), ("std", ("reward_std",)))),
        MetricPanel(
            "Judge accuracy and format rate",
            (
                ("judge accuracy", ("rewards/judge_reward/mean",)),
                ("format rate", ("rewards/format_reward/mean",)),
                ("answered", ("episodes/answered",)),
            ),
            unit_interval=True,
        ),
        MetricPanel("KL to the reference", (("KL", ("kl",)),)),
        MetricPanel(
            "Clip ratio",
            (
                ("region", ("clip_ratio/region_mean",)),
                ("low", ("clip_ratio/low_mean",)),
                ("high", ("clip_ratio/high_mean",)),
            ),
        ),
        MetricPanel(
            "Tool calls per episode", (("tool calls", ("episodes/tool_calls",)), ("turns", ("episodes/turns",)))
        ),
        MetricPanel("Completion length", (("mean tokens", ("completions/mean_length",)),)),
        MetricPanel("Loss", (("loss", ("loss",)),)),
        MetricPanel("Learning rate", (("learning rate", ("learning_rate",)),)),
    ),
    "eval": (
        MetricPanel("Accuracy so far", (("accuracy", ("accuracy",)),), unit_interval=True),
        MetricPanel("Questions done", (("done", ("done",)), ("judged", ("judged",)))),
    ),
}


def _empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    fig.update_layout(
        height=220, xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(l=20, r=20, t=30, b=20)
    )
    return fig


def _series(history: Sequence[JobMetricRecord], keys: tuple[str, ...]) -> tuple[list[int], list[float]]:
    for key in keys:
        points = [(h.step, h.values[key]) for h in history if key in h.values]
        if points:
            return [p[0] for p in points], [p[1] for p in points]
    return [], []


def job_panels(kind: str, history: Sequence[JobMetricRecord]) -> list[tuple[MetricPanel, list]]:
    """The panels of `kind` with data, each with its drawable series (label, steps, values)."""
    out = []
    for panel in JOB_PANELS.get(kind, ()):
        drawn = []
        for label, keys in panel.series:
            steps, values = _series(history, keys)
            if steps:
                drawn.append((label, steps, values))
        if drawn:
            out.append((panel, drawn))
    return out


def job_figure(kind: str, history: Sequence[JobMetricRecord]) -> go.Figure:
    """A grid of the job's metric panels over training steps (two columns)."""
    panels = job_panels(kind, history)
    if not panels:
        return _empty("No metrics logged yet: charts appear with the job's first logged step.")
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[p.title for p, _ in panels], vertical_spacing=0.5 / max(rows, 1) / 1.5
    )
    for i, (panel, drawn) in enumerate(panels):
        row, col = i // cols + 1, i % cols + 1
        for j, (label, steps, values) in enumerate(drawn):
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=values,
                    name=label,
                    mode="lines+markers" if len(steps) < 50 else "lines",
                    line=dict(color=PALETTE[j % len(PALETTE)]),
                    legendgroup=panel.title,
                    showlegend=len(drawn) > 1,
                    hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
        fig.update_xaxes(title_text="step", row=row, col=col)
        if panel.unit_interval:
            fig.update_yaxes(range=[0, 1.02], row=row, col=col)
    fig.update_layout(
        height=260 * rows + 40, margin=dict(l=50, r=20, t=40, b=40), font=FONT, legend=dict(orientation="h", y=-0.08)
    )
    return fig


# ---- Compare tab ---------------------------------------------------------------------------------------------


def run_label(report: RunReport) -> str:
    """How a run (or a rollout run's slice of steps) is named in charts and tables."""
    name = report.run_name if len(report.run_name) <= 40 else report.run_name[:39] + "…"
    steps = f" [steps {report.steps[0]}-{report.steps[1]}]" if report.steps else ""
    return f"#{report.run_id} {name}{steps}"


def accuracy_figure(reports: Sequence[RunReport]) -> go.Figure:
    """Accuracy (correct among judged) per data source and overall, one bar per run, 95% bootstrap intervals."""
    judged = [r for r in reports if r.judged]
    if not judged:
        return _empty("No judged episodes in these runs: accuracy needs verdicts (eval --rejudge adds them).")
    sources = sorted({s for r in judged for s in r.by_source if r.by_source[s].judged})
    fig = go.Figure()
    for i, report in enumerate(reports):
        xs, ys, up, down, text = [], [], [], [], []
        cells = [("all", report.accuracy, report.ci95, report.correct, report.judged)]
        cells += [
            (s or "(none)", st.accuracy, st.ci95, st.correct, st.judged)
            for s, st in report.by_source.items()
            if s in sources
        ]
        for name, acc, ci, correct, n in cells:
            if acc is None:
                continue
            xs.append(name)
            ys.append(acc)
            up.append((ci[1] - acc) if ci else 0.0)
            down.append((acc - ci[0]) if ci else 0.0)
            text.append(f"{correct}/{n}")
        fig.add_trace(
            go.Bar(
                x=xs,
                y=ys,
                name=run_label(report) + ("" if report.judged else " (no judged episodes)"),
                marker_color=PALETTE[i % len(PALETTE)],
                error_y=dict(type="data", array=up, arrayminus=down, visible=True),
                customdata=text,
                hovertemplate="%{x}: %{y:.1%} (%{customdata} correct)<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        title="Accuracy per data source (95% bootstrap interval)",
        barmode="group",
        yaxis=dict(title="accuracy", tickformat=".0%", range=[0, 1.05]),
        xaxis=dict(categoryorder="array", categoryarray=["all", *[s or "(none)" for s in sources]]),
        height=380,
        margin=dict(l=60, r=20, t=50, b=40),
        font=FONT,
        legend=dict(orientation="h", y=-0.15),
    )
    return fig


def tool_usage_figure(reports: Sequence[RunReport]) -> go.Figure:
    """Share of completed episodes in each of the paper's tool-usage categories (they overlap), per run."""
    if not any(r.completed for r in reports):
        return _empty("No completed episodes in these runs.")
    labels = list(TOOL_USAGE_LABELS.values())
    fig = go.Figure()
    for i, report in enumerate(reports):
        shares = [report.tool_usage[key] for key in TOOL_USAGE_LABELS]
        counts = [report.tool_usage_counts[key] for key in TOOL_USAGE_LABELS]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[s if s is not None else 0.0 for s in shares],
                name=run_label(report),
                marker_color=PALETTE[i % len(PALETTE)],
                text=[f"{s:.0%}" if s is not None else "" for s in shares],
                textposition="outside",
                customdata=[f"{c} of {report.completed}" for c in counts],
                hovertemplate="%{x}: %{y:.1%} (%{customdata})<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        title="Tool use (share of completed episodes; categories overlap)",
        barmode="group",
        yaxis=dict(title="share of episodes", tickformat=".0%", range=[0, 1.12]),
        height=380,
        margin=dict(l=60, r=20, t=50, b=40),
        font=FONT,
        legend=dict(orientation="h", y=-0.22),
    )
    return fig


BEHAVIOUR_PANELS = (
    ("Crop rate", "crop", ".0%"),
    ("Text searches / episode", "texts", ".2f"),
    ("Turns / episode", "turns", ".2f"),
    ("Response tokens / episode", "tokens", ".0f"),
    ("Latency (s): mean, p50, p95", "latency", ".2f"),
)


def _behaviour(report: RunReport, key: str) -> float | None:
    return {
        "crop": report.tool_usage.get("crop_search"),
        "texts": report.mean_text_searches,
        "turns": report.mean_turns,
        "tokens": report.mean_response_tokens,
        "latency": report.mean_latency_s,
    }[key]


def behaviour_figure(reports: Sequence[RunReport]) -> go.Figure:
    """Crop rate, mean text searches, turns, tokens and latency per run: one small panel each."""
    if not any(r.completed for r in reports):
        return _empty("No completed episodes in these runs.")
    fig = make_subplots(rows=1, cols=len(BEHAVIOUR_PANELS), subplot_titles=[p[0] for p in BEHAVIOUR_PANELS])
    for col, (_, key, fmt) in enumerate(BEHAVIOUR_PANELS, start=1):
        for i, report in enumerate(reports):
            value = _behaviour(report, key)
            error = None
            if key == "latency" and value is not None and report.latency_p50_s is not None:
                # whiskers from p50 to p95 around the mean show the latency tail
                error = dict(
                    type="data",
                    array=[max(0.0, (report.latency_p95_s or value) - value)],
                    arrayminus=[max(0.0, value - report.latency_p50_s)],
                    visible=True,
                )
            fig.add_trace(
                go.Bar(
                    x=[f"#{report.run_id}"],
                    y=[value if value is not None else 0.0],
                    name=run_label(report),
                    legendgroup=str(i),
                    showlegend=col == 1,
                    marker_color=PALETTE[i % len(PALETTE)],
                    error_y=error,
                    hovertemplate=f"%{{y:{fmt}}}<extra>{run_label(report)}</extra>",
                ),
                row=1,
                col=col,
            )
        if key == "crop":
            fig.update_yaxes(tickformat=".0%", row=1, col=col)
    fig.update_layout(
        height=320, margin=dict(l=40, r=20, t=50, b=40), font=FONT, legend=dict(orientation="h", y=-0.2), bargap=0.3
    )
    fig.update_annotations(font_size=12)
    return fig


def plot_value(figure: go.Figure, filename: str) -> PlotData:
    """The figure as a `gr.Plot` value whose "Download plot as a png" button saves `filename`.png."""
    data = json.loads(figure.to_json())
    data["config"] = {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2},
    }
    return PlotData(type="plotly", plot=json.dumps(data))
