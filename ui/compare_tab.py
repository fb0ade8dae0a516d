"""The Compare tab: pick runs, see their accuracy and tool use side by side, pair two of them question by
question, and open a flipped question's two trajectories, drawn by the same panel as the Ask and Traces tabs.

Callbacks only wire components to `ui.compare_view` (statistics in, figures and tables out) and to the episode
panel's `panel_values`. Charts download as PNG from their own toolbar (plotly.js in the browser).
(No `from __future__ import annotations`: Gradio reads the gr.SelectData hint at runtime.)
"""

import re
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from traces.replay import episode_events
from traces.store import TraceStore
from ui.charts import plot_value
from ui.compare_view import (
    FLIP_COLUMNS,
    SUMMARY_COLUMNS,
    flip_episodes,
    keep_selection,
    list_choices,
    load_comparison,
    parse_choice,
    per_question_csv,
    pick_pair,
    render_comparison,
)
from ui.errors import friendly_error
from ui.panel import build_panel, panel_values
from ui.render import fold
from ui.safe import md_text
from ui.traces_tab import TRACES_CONCURRENCY, episode_header

INTRO = (
    "Compare runs: accuracy per data source, the paper's tool-usage categories and how much each run searches, "
    "crops and spends. Pick two or more runs (a rollout run's GRPO steps appear as slices, to compare early and "
    "late training). **A** and **B** are paired question by question (exact McNemar test); click a flipped "
    "question to see both trajectories. Each chart's toolbar has *Download plot as a png*."
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "run"


def build_compare_tab(store: TraceStore, tab: gr.Tab) -> None:
    """The tab's components and events, built inside `tab` (whose selection loads it)."""
    flips_state = gr.State([])  # (episode A, episode B) per row of the flips table

    gr.Markdown(INTRO)
    with gr.Row():
        runs = gr.Dropdown(
            [],
            value=[],
            multiselect=True,
            allow_custom_value=True,
            label="Runs",
            info="newest first; default: the two most recent eval runs",
            scale=4,
            elem_id="cmp-runs",
        )
        pair_a = gr.Dropdown([], value=None, label="A (paired)", scale=2, allow_custom_value=True, elem_id="cmp-a")
        pair_b = gr.Dropdown([], value=None, label="B (paired)", scale=2, allow_custom_value=True, elem_id="cmp-b")
    with gr.Row():
        reload_btn = gr.Button("Reload run list", size="sm", elem_id="cmp-reload")
        compare_btn = gr.Button("Compare", variant="primary", size="sm", elem_id="cmp-go")
    notes = gr.Markdown("", elem_id="cmp-notes")
    accuracy = gr.Plot(label="Accuracy per data source", elem_id="cmp-accuracy")
    with gr.Row():
        tool_usage = gr.Plot(label="Tool use", elem_id="cmp-tools")
    behaviour = gr.Plot(label="Crops, searches, turns, tokens, latency", elem_id="cmp-behaviour")
    summary = gr.Dataframe(
        headers=SUMMARY_COLUMNS, value=[], interactive=False, wrap=True, label="Runs", elem_id="cmp-summary"
    )
    gr.Markdown("### Paired comparison")
    pair_text = gr.Markdown("", elem_id="cmp-pair")
    flips = gr.Dataframe(
        headers=FLIP_COLUMNS,
        value=[],
        interactive=False,
        wrap=True,
        label="Flipped questions (click one)",
        max_height=300,
        elem_id="cmp-flips",
    )
    csv_file = gr.DownloadButton("Download per-question CSV", value=None, visible=False, size="sm", elem_id="cmp-csv")
    with gr.Row(equal_height=False):
        with gr.Column():
            header_a = gr.Markdown("**A**: click a flipped question", elem_id="cmp-head-a")
            panel_a = build_panel("cmp-a", chat_height=420)
        with gr.Column():
            header_b = gr.Markdown("**B**", elem_id="cmp-head-b")
            panel_b = build_panel("cmp-b", chat_height=420)

    def reload_choices(current: list[str] | None, a: str | None, b: str | None) -> tuple:
        """Fresh run list; the user's picks are kept (the default is the two most recent eval runs)."""
        try:
            choices, default = list_choices(store)
            selected = keep_selection(current or [], choices, default)
            pair = keep_selection([x for x in (a, b) if x], choices, selected[:2])
        except Exception as exc:
            return gr.skip(), gr.skip(), gr.skip(), f"⚠ {md_text(friendly_error(exc))}"
        a, b = (pair + [None, None])[:2]
        return (
            gr.update(choices=choices, value=selected),
            gr.update(choices=choices, value=a),
            gr.update(choices=choices, value=b),
            "" if selected else "*No runs with episodes yet: run `python -m agent eval …` or record episodes.*",
        )

    choice_inputs = [runs, pair_a, pair_b]
    choice_outputs = [runs, pair_a, pair_b, notes]

    def follow_selection(selected: list[str]) -> tuple:
        """A and B follow the first two picked runs (change them afterwards to pair others)."""
        picked = list(selected or [])
        return (picked + [None, None])[0], (picked + [None, None])[1]

    runs.input(follow_selection, [runs], [pair_a, pair_b], api_name=False)

    def compare(selected: list[str], a: str | None, b: str | None) -> list[Any]:
        keep = [gr.skip()] * 9
        if not selected:
            return [*keep[:4], "Pick at least one run.", *keep[5:]]
        try:
            slices = [parse_choice(c) for c in selected]
            comparison = load_comparison(store, slices, pick_pair(slices, a, b))
            view = render_comparison(comparison)
            download = gr.update(value=None, visible=False)
            if comparison.pair is not None and comparison.pair.shared:
                pair = comparison.pair
                path = Path(tempfile.mkdtemp(prefix="dmm-compare-")) / (
                    f"compare-{pair.run_a}-{_slug(pair.name_a)}-vs-{pair.run_b}-{_slug(pair.name_b)}.csv"
                )
                path.write_text(per_question_csv(store, pair), encoding="utf-8")
                download = gr.update(value=str(path), visible=True)
        except Exception as exc:
            return [*keep[:4], f"⚠ {md_text(friendly_error(exc))}", *keep[5:]]
        pairs = [list(flip_episodes(comparison, i) or ()) for i in range(len(view.flips))]
        return [
            plot_value(view.accuracy, "accuracy-per-source"),
            plot_value(view.tool_usage, "tool-usage"),
            plot_value(view.behaviour, "crops-searches-turns-tokens-latency"),
            view.summary,
            view.notes,
            view.pair,
            view.flips,
            download,
            pairs,
        ]

    compare_outputs = [accuracy, tool_usage, behaviour, summary, notes, pair_text, flips, csv_file, flips_state]
    compare_btn.click(
        compare, [runs, pair_a, pair_b], compare_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name="compare"
    )

    def open_side(episode_id: str, side: str) -> list[Any]:
        view = fold(episode_events(store, episode_id))
        verdict = ""
        if view.finished is not None:
            verdict = f" · {md_text(view.finished.status)}"
        return [f"**{side}** · {episode_header(view, episode_id)}{verdict}", *panel_values(view)]

    def open_pair(pairs: list, evt: gr.SelectData) -> list[Any]:
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        if not isinstance(row, int) or not 0 <= row < len(pairs) or len(pairs[row]) != 2:
            return [gr.skip()] * (2 + len(panel_a.outputs) + len(panel_b.outputs))
        try:
            return open_side(pairs[row][0], "A") + open_side(pairs[row][1], "B")
        except Exception as exc:
            message = f"⚠ {md_text(friendly_error(exc))}"
            return [message, *[gr.skip()] * len(panel_a.outputs), message, *[gr.skip()] * len(panel_b.outputs)]

    flips.select(
        open_pair,
        [flips_state],
        [header_a, *panel_a.outputs, header_b, *panel_b.outputs],
        concurrency_limit=TRACES_CONCURRENCY,
        api_name=False,
    )
    reload_btn.click(
        reload_choices, choice_inputs, choice_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name="compare_choices"
    )

    # Opening the tab reloads the run list and compares what is picked (the defaults the first time).
    tab.select(
        reload_choices, choice_inputs, choice_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False
    ).then(compare, [runs, pair_a, pair_b], compare_outputs, concurrency_limit=TRACES_CONCURRENCY, api_name=False)
