"""Figures from job metrics and run reports: what is drawn is what was logged or computed, nothing else."""

from __future__ import annotations

import json

import pytest

from traces.records import JobMetricRecord
from traces.stats import TOOL_USAGE_LABELS, run_report
from traces.store import open_store
from ui.charts import accuracy_figure, behaviour_figure, job_figure, job_panels, plot_value, tool_usage_figure


def history(*rows: dict) -> list[JobMetricRecord]:
    return [JobMetricRecord(step, 0.0, values) for step, values in enumerate(rows, start=1)]


def titles(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_sft_chart_has_loss_learning_rate_and_grad_norm_from_the_history():
    h = history(
        {"loss": 2.0, "learning_rate": 1e-4, "grad_norm": 3.0},
        {"loss": 1.5, "learning_rate": 8e-5, "grad_norm": 2.0},
        {"train_runtime": 12.0, "train_loss": 1.7},  # the end-of-training summary: no panel of its own
    )
    fig = job_figure("sft", h)
    assert titles(fig) == ["Loss", "Learning rate", "Grad norm"]
    loss = next(t for t in fig.data if t.name == "train loss")
    assert list(loss.x) == [1, 2] and list(loss.y) == [2.0, 1.5]


def test_grpo_chart_draws_rewards_judge_accuracy_kl_clip_tools_and_length():
    h = history(
        {
            "reward": 0.4,
            "reward_std": 0.2,
            "rewards/judge_reward/mean": 0.5,
            "rewards/format_reward/mean": 0.9,
            "kl": 0.001,
            "clip_ratio/region_mean": 0.0,
            "episodes/tool_calls": 1.5,
            "episodes/turns": 2.5,
            "completions/mean_length": 120.0,
            "loss": 0.01,
        }
    )
    panels = [p.title for p, _ in job_panels("grpo", h)]
    assert panels == [
        "Reward",
        "Judge accuracy and format rate",
        "KL to the reference",
        "Clip ratio",
        "Tool calls per episode",
        "Completion length",
        "Loss",
    ]
    names = {t.name for t in job_figure("grpo", h).data}
    assert {"mean", "std", "judge accuracy", "format rate", "KL", "tool calls", "mean tokens"} <= names


def test_eval_job_chart_is_accuracy_so_far():
    fig = job_figure("eval", history({"accuracy": 0.5, "done": 2, "judged": 2}, {"accuracy": 0.6, "done": 5}))
    assert titles(fig)[0] == "Accuracy so far"


def test_a_job_with_no_metrics_yet_says_so():
    assert "No metrics logged yet" in titles(job_figure("sft", []))[0]
    assert "No metrics logged yet" in titles(job_figure("unknown-kind", history({"loss": 1.0})))[0]


def test_plot_value_names_the_png_download_and_keeps_the_figure():
    fig = job_figure("sft", history({"loss": 1.0}))
    value = plot_value(fig, "job-3-loss")
    data = json.loads(value.plot)
    assert value.type == "plotly"
    assert data["config"]["toImageButtonOptions"] == {"format": "png", "filename": "job-3-loss", "scale": 2}
    assert data["data"][0]["y"] == [1.0]


@pytest.fixture
def reports(tmp_path):
    from tests.ui.eval_fixtures import record_eval_run

    with open_store(tmp_path / "traces.db") as store:
        a = record_eval_run(store, "direct", "direct", 6)
        b = record_eval_run(store, "searcher", "searcher", 6)
        yield [run_report(store, a), run_report(store, b)]


def test_accuracy_bars_carry_the_bootstrap_interval(reports):
    fig = accuracy_figure(reports)
    direct = fig.data[0]
    assert direct.x[0] == "all" and direct.y[0] == reports[0].accuracy
    low, high = reports[0].ci95
    assert direct.error_y.array[0] == pytest.approx(high - reports[0].accuracy)
    assert direct.error_y.arrayminus[0] == pytest.approx(reports[0].accuracy - low)
    assert set(direct.x) == {"all", "source0", "source1"}


def test_tool_usage_bars_are_the_reports_shares_in_the_papers_categories(reports):
    fig = tool_usage_figure(reports)
    assert list(fig.data[0].x) == list(TOOL_USAGE_LABELS.values())
    assert list(fig.data[1].y) == [reports[1].tool_usage[k] for k in TOOL_USAGE_LABELS]
    assert fig.data[0].y[0] == 1.0 and fig.data[1].y[3] == 1.0  # direct answers directly; searcher crops


def test_behaviour_panels_show_crops_searches_turns_tokens_latency(reports):
    fig = behaviour_figure(reports)
    assert titles(fig) == [
        "Crop rate",
        "Text searches / episode",
        "Turns / episode",
        "Response tokens / episode",
        "Latency (s): mean, p50, p95",
    ]
    searcher_turns = [t for t in fig.data if t.xaxis == "x3" and t.name.startswith(f"#{reports[1].run_id}")]
    assert searcher_turns[0].y[0] == pytest.approx(3.0)
