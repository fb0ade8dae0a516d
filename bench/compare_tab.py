"""Benchmark: the Compare tab's figures and tables for two eval runs of N episodes each, and the Train tab's
jobs list with M jobs in the store.

Builds a SQLite trace store with two eval runs over the same N questions (verdicts that flip both ways, data
sources, tool use, latencies) and M jobs (mixed statuses, a metric history for one of them), then times what
the tabs do on a click, through the same functions their callbacks call:
- compare: `load_comparison` (run reports and the paired McNemar comparison, SQL aggregates) + `render_comparison`
  (three plotly figures, the summary, notes, the flips table) + `plot_value` for each figure; target <= 1 s.
- csv: the per-question CSV of the pair (every shared question), written when the comparison is shown.
- jobs list: `training.runner.list_jobs` (newest 100, dead processes marked) + the table rows; target <= 200 ms.
- job detail: one job's row, metric history (500 steps) and chart.

Prints one JSON line. `--episodes 200 --jobs 50` is the smallest scale (tests/bench).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from traces.models import episodes, job_metrics, jobs  # noqa: E402
from traces.store import open_store  # noqa: E402


def episode_rows(run_id: int, n: int, flip: int) -> list[dict]:
    now = time.time()
    rows = []
    for i in range(n):
        right = (i + flip * (i % 7 == 0)) % 3 != 0
        n_text, n_crop = i % 3, int(i % 5 == 0 and flip)
        rows.append(
            {
                "uid": uuid.uuid4().hex,
                "run_id": run_id,
                "question": f"question {i}?",
                "gold_answers": ["gold"],
                "config": {},
                "status": "answered" if i % 50 else "budget_exhausted",
                "reason": "",
                "final_answer": f"answer {i}",
                "verdict": "correct" if right else "incorrect",
                "correct": right,
                "judge": "rule",
                "item_key": f"k{i}",
                "started_at": now,
                "updated_at": now,
                "extra": {},
                "search_text": "",
                "dataset": f"source{i % 6}",
                "n_turns": 1 + n_text + n_crop,
                "n_tool_calls": n_text + n_crop,
                "n_text": n_text,
                "n_whole": 0,
                "n_crop": n_crop,
                "self_corrected": n_text == 2 and i % 4 == 0,
                "response_tokens": 100 + i % 300,
                "elapsed_s": float(1 + i % 40),
            }
        )
    return rows


def add_jobs(store, count: int, host: str) -> int:
    """`count` finished and queued jobs (no live process: listing them marks nothing), one with 500 metric steps."""
    now = time.time()
    statuses = ("succeeded", "failed", "cancelled", "interrupted", "queued")
    rows = [
        {
            "kind": ("sft", "grpo", "eval")[i % 3],
            "name": f"job {i}",
            "status": statuses[i % len(statuses)],
            "config": {"SFTSettings": {"model": "m", "learning_rate": 1e-4}},
            "metrics": {"last": {"loss": 1.0 / (i + 1)}},
            "created_at": now - count + i,
            "started_at": now - count + i,
            "finished_at": None if statuses[i % len(statuses)] == "queued" else now - count + i + 10,
            "updated_at": now,
            "host": host,
            "launched_by": "bench",
            "step": i % 100,
            "max_steps": 100,
            "error": "out of memory" if i % len(statuses) == 1 else None,
        }
        for i in range(count)
    ]
    with store.write() as conn:
        conn.execute(insert(jobs), rows)
        job_id = int(conn.execute(jobs.select().order_by(jobs.c.id.desc()).limit(1)).first().id)
        conn.execute(
            insert(job_metrics),
            [
                {
                    "job_id": job_id,
                    "step": s,
                    "created_at": now,
                    "values": {"loss": 2.0 / (s + 1), "learning_rate": 1e-4, "grad_norm": 1.0},
                }
                for s in range(1, 501)
            ],
        )
    return job_id


def timed(fn, rounds: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10_000, help="episodes per eval run")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the store")
    parser.add_argument("--rounds", type=int, default=5, help="timed repetitions of each measurement")
    args = parser.parse_args(argv)

    import socket

    from training import runner
    from ui.charts import job_figure, plot_value
    from ui.compare_view import RunSlice, load_comparison, per_question_csv, render_comparison
    from ui.jobs_view import jobs_table
    from ui.train_tab import JOBS_SHOWN

    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.db") as store:
        a = store.create_run("eval sft", "eval", model="sft")
        b = store.create_run("eval rl", "eval", model="rl")
        start = time.perf_counter()
        with store.write() as conn:
            conn.execute(insert(episodes), episode_rows(a, args.episodes, 0) + episode_rows(b, args.episodes, 1))
        build_s = time.perf_counter() - start
        detail_job = add_jobs(store, args.jobs, socket.gethostname())

        def compare():
            slices = [RunSlice(a), RunSlice(b)]
            view = render_comparison(load_comparison(store, slices, (slices[0], slices[1])))
            return [plot_value(f, "x") for f in (view.accuracy, view.tool_usage, view.behaviour)], view

        compare_times, (_, view) = timed(compare, args.rounds)
        pair = load_comparison(store, [RunSlice(a), RunSlice(b)], (RunSlice(a), RunSlice(b))).pair
        csv_times, csv_text = timed(lambda: per_question_csv(store, pair), args.rounds)
        list_times, rows = timed(lambda: jobs_table(runner.list_jobs(store, limit=JOBS_SHOWN)), args.rounds)

        def detail():
            job = runner.get_job(store, detail_job)
            return plot_value(job_figure(job.kind, runner.metric_history(store, job.id)), "job")

        detail_times, _ = timed(detail, args.rounds)

    result = {
        "episodes_per_run": args.episodes,
        "jobs": args.jobs,
        "rounds": args.rounds,
        "store_fill_s": round(build_s, 2),
        "compare_s_median": round(statistics.median(compare_times), 3),
        "compare_s_max": round(max(compare_times), 3),
        "compare_target_s": 1.0,
        "flips_listed": len(view.flips),
        "csv_s_median": round(statistics.median(csv_times), 3),
        "csv_rows": csv_text.count("\n") - 1,
        "jobs_list_ms_median": round(1000 * statistics.median(list_times), 1),
        "jobs_list_ms_max": round(1000 * max(list_times), 1),
        "jobs_list_target_ms": 200,
        "jobs_listed": len(rows),
        "job_detail_ms_median": round(1000 * statistics.median(detail_times), 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
