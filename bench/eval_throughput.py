"""Eval harness throughput: many episodes at once against the scripted endpoint, recorded, judged by rule.

Each episode is three turns of `--turn-tokens` tokens streamed at `--tokens-per-s` (two text searches, then an
answer), and each search answers in `--tool-ms`. With `--concurrency` episodes in flight, the ideal wall time is
the number of waves times one episode's time, measured alone first. The figure that matters is their ratio
(target <= 1.3 at 256 episodes, 64 at once): how much the harness, the recorder and the judge add when many
episodes stream at once. Every episode is recorded in a SQLite trace store as eval records it (whole when it
finishes: `traces.eval_runs.WholeEpisodes`) and judged by the rule judge; errors must be 0 and every question must
have exactly one episode.

The scripted endpoint runs in its own process, as a real model server would (it is not the harness's cost).
Peak memory is this process's maximum resident set size. Prints its figures last as one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from agent.eval import keyed, run_eval  # noqa: E402
from agent.events import ResultItem, ToolResult  # noqa: E402
from agent.judge import RuleJudge  # noqa: E402
from agent.models.openai_backend import OpenAIBackend  # noqa: E402
from agent.tools.base import Toolbox  # noqa: E402
from traces import Recorder, open_store  # noqa: E402
from traces.eval_runs import WholeEpisodes, open_eval_run, record_outcome  # noqa: E402
from traces.stats import run_report  # noqa: E402

WORD = re.compile(r"\S+\s*|\s+")  # how the scripted server counts tokens


def turn_text(action: str, tokens: int) -> str:
    """A turn of exactly `tokens` streamed words: filler reasoning, then the action."""
    filler = max(0, tokens - len(WORD.findall("<reason>x</reason>" + action)) + 1)
    return "<reason>" + " ".join(["thinking"] * filler) + "</reason>" + action


def scripted_turns(tokens: int) -> list[str]:
    return [
        turn_text("<text_search>colour of the square in the picture</text_search>", tokens),
        turn_text("<text_search>name of that colour in English</text_search>", tokens),
        turn_text("<answer>red</answer>", tokens),
    ]


def serve(tokens_per_s: float, turn_tokens: int) -> None:
    """The scripted endpoint (run in a child process): prints its base URL, serves until stdin closes."""
    from tests.servers.chat_completions import scripted_chat_server

    with scripted_chat_server(scripted_turns(turn_tokens), token_delay_s=1.0 / tokens_per_s) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()


class SlowSearch:
    """A text search that answers after a fixed delay (a provider's round trip)."""

    provider = "bench-search"

    def __init__(self, delay_s: float):
        self.delay_s = delay_s

    async def search_text(self, query: str, *, question: str) -> ToolResult:
        import asyncio

        await asyncio.sleep(self.delay_s)
        return ToolResult(
            self.provider,
            items=(ResultItem(f"About {query}", "The square is red.", "https://example.org/red"),),
            summary="The results say the square in the picture is red.",
        )


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buf, format="PNG")
    return buf.getvalue()


def failures(store, run_id: int) -> list[str]:
    from sqlalchemy import select

    from traces.models import episodes

    with store.read() as conn:
        rows = conn.execute(
            select(episodes.c.status, episodes.c.reason).where(
                episodes.c.run_id == run_id, episodes.c.status != "answered"
            )
        ).all()
    return [f"{r.status}: {r.reason}" for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--turn-tokens", type=int, default=100)
    parser.add_argument("--tokens-per-s", type=float, default=200.0)
    parser.add_argument("--tool-ms", type=float, default=50.0)
    parser.add_argument("--solo-runs", type=int, default=3, help="episodes run alone to measure one episode's time")
    parser.add_argument("--db-dir", help="folder for the trace store (default: a temporary folder under $TMPDIR)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.tokens_per_s, args.turn_tokens)
        return 0

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--tokens-per-s", str(args.tokens_per_s), "--turn-tokens",
         str(args.turn_tokens)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    workdir = tempfile.TemporaryDirectory(prefix="eval_throughput_", dir=args.db_dir)
    try:
        base_url = server.stdout.readline().strip()
        if not base_url:
            raise RuntimeError("the scripted endpoint did not start")
        store = open_store(Path(workdir.name) / "traces.db")
        backend = OpenAIBackend("scripted-model", base_url)
        toolbox = Toolbox(text_search=SlowSearch(args.tool_ms / 1000))
        image = png()

        def evaluate(name: str, n: int, concurrency: int):
            items = keyed([(f"{name}: what colour is square {i}?", image, ("red",), "bench", i) for i in range(n)])
            run = open_eval_run(
                store,
                name,
                model="scripted-model",
                backend="openai",
                dialect="deepmmsearch",
                dataset="bench",
                config={},
            )
            recorder = Recorder(store, run_kind="eval", run_id=run.run_id)
            start = time.perf_counter()
            outcome = run_eval(
                items,
                backend=backend,
                toolbox=toolbox,
                judge=RuleJudge(),
                concurrency=concurrency,
                on_event=WholeEpisodes(recorder),
                on_outcome=lambda o: record_outcome(store, o),
            )
            wall = time.perf_counter() - start
            recorder.close()
            return outcome, wall, run_report(store, run.run_id)

        solo = [evaluate(f"solo {i}", 1, 1)[1] for i in range(args.solo_runs)]
        one_episode_s = statistics.median(solo)
        cpu_before = time.process_time()
        outcome, wall, report = evaluate("throughput", args.episodes, args.concurrency)
        cpu_s = time.process_time() - cpu_before
        failure_reasons = failures(store, report.run_id)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        workdir.cleanup()

    waves = math.ceil(args.episodes / args.concurrency)
    ideal = waves * one_episode_s
    errors = report.errors + (args.episodes - report.completed) + (0 if outcome.stopped is None else 1)
    figures = {
        "episodes": args.episodes,
        "concurrency": args.concurrency,
        "turn_tokens": args.turn_tokens,
        "tokens_per_s": args.tokens_per_s,
        "tool_ms": args.tool_ms,
        "one_episode_s": round(one_episode_s, 3),
        "one_episode_theory_s": round(3 * args.turn_tokens / args.tokens_per_s + 2 * args.tool_ms / 1000, 3),
        "waves": waves,
        "ideal_s": round(ideal, 3),
        "wall_s": round(wall, 3),
        "ratio": round(wall / ideal, 3),
        "errors": errors,
        "episodes_recorded": report.n,
        "statuses": report.status_counts,
        "mean_response_tokens": report.mean_response_tokens,
        "accuracy": report.accuracy,
        "harness_cpu_s": round(cpu_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if errors:
        for reason in failure_reasons:
            print(f"failed: {reason}", file=sys.stderr)
    print(json.dumps(figures))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
