"""Trace-store benchmark: append latency with durable commits, list and open latency at scale.

    python bench/trace_store.py                 # 100,000 episodes (~1M turns); a few minutes on 2 cores
    python bench/trace_store.py --episodes 2000 # quick

Builds a SQLite store (schema from our migrations; rows bulk-loaded with sqlite3 for speed, shaped like recorded
episodes: mixed tool patterns, ~10 turns each, shared images), then measures on that file:
- append: Recorder.__call__ for every non-TextDelta event of fresh episodes (each a committed, fsync'd transaction);
- list: traces.queries.list_episodes with several filters (incl. full text), first and deeper keyset pages;
- open: traces.queries.load_episode of random episodes (turns, tool calls, crop and input image bytes).
For information only (not a target), the same list/open queries also run through a plain sqlite3 connection on
the same file (the list SQL is our statement compiled with literal values; the open queries are written by
hand): the ratio shows what SQLAlchemy Core and the record constructors add.
Figures go last, as one JSON line. Targets: append p95 <= 2 ms, list p95 <= 50 ms, open p95 <= 30 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402
from sqlalchemy.dialects import sqlite as sqlite_dialect  # noqa: E402

from agent.events import TextDelta, image_sha256  # noqa: E402
from traces import EpisodeFilter, Recorder, open_store  # noqa: E402
from traces.queries import list_episodes, list_statement, load_episode  # noqa: E402

PATTERNS = ["direct", "text_only", "multi_text", "whole_image", "crop", "mixed"]
WORDS = (
    "eiffel tower bridge cathedral mountain river painting statue museum palace garden temple castle harbour".split()
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))]


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(values, 50) * 1e3, 3), "p95_ms": round(pct(values, 95) * 1e3, 3)}


def build(path: Path, n: int, seed: int = 0) -> list[str]:
    """Create the schema through open_store, then bulk-load n episodes with sqlite3 in one transaction."""
    open_store(path).close()
    rng = random.Random(seed)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous = OFF")  # bulk load only; the measured store uses FULL
    con.execute("BEGIN")
    now = time.time() - n
    for r, (model, dialect) in enumerate(
        [("model-a", "deepmmsearch"), ("model-b", "deepmmsearch"), ("model-c", "mmsearch-r1")], 1
    ):
        con.execute(
            "INSERT INTO runs (id, name, kind, model, dialect, config, created_at) VALUES (?, ?, 'eval', ?, ?, '{}', ?)",
            (r, f"run {r}", model, dialect, now),
        )
    shas = []
    for i in range(200):
        img = Image.new("RGB", (320, 240), (i % 256, (i * 7) % 256, 120))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        sha = image_sha256(img)
        shas.append(sha)
        con.execute("INSERT INTO images VALUES (?, 'image/png', 320, 240, ?, ?)", (sha, buf.getvalue(), now))
    uids, ep_rows, turn_rows, call_rows, event_rows = [], [], [], [], []

    def flush() -> None:
        con.executemany(
            "INSERT INTO episodes (id, uid, run_id, question, image_sha256, gold_answers, model, backend, dialect, dataset, config, status, reason, final_answer, correct, format_ok, n_turns, n_tool_calls, n_text, n_whole, n_crop, n_format_errors, self_corrected, response_tokens, elapsed_s, started_at, finished_at, updated_at, extra, search_text, review_state, human_correct) VALUES (?,?,?,?,?,?,?,'transformers',?,?,'{}',?,'',?,?,?,?,?,?,?,?,0,?,?,?,?,?,?,'{}',?,?,?)",
            ep_rows,
        )
        con.executemany(
            "INSERT INTO turns (episode_id, [index], seq, parsed_seq, raw_text, complete, reason, action, argument, format_ok, tokens, latency_s, started_at) VALUES (?,?,?,?,?,1,?,?,?,1,?,?,?)",
            turn_rows,
        )
        con.executemany(
            "INSERT INTO tool_calls (episode_id, turn_index, call_index, seq, finished_seq, kind, argument, provider, status, items, summary, information, cache_hit, latency_s, crop_x0, crop_y0, crop_x1, crop_y1, crop_image_sha256, grounding_fallback, grounding_note) VALUES (?,?,?,?,?,?,?,'serpapi','finished',?,?,?,0,0.4,?,?,?,?,?,0,'')",
            call_rows,
        )
        con.executemany(
            "INSERT INTO events (episode_id, seq, turn_index, type, payload) VALUES (?,?,?,'answer',?)", event_rows
        )
        ep_rows.clear(), turn_rows.clear(), call_rows.clear(), event_rows.clear()

    items = json.dumps(
        [{"title": "Result title", "snippet": "a snippet of text " * 4, "url": "https://example.org/page"}] * 5
    )
    for pk in range(1, n + 1):
        uid = uuid.uuid4().hex
        uids.append(uid)
        pattern = PATTERNS[pk % len(PATTERNS)]
        kinds = {
            "direct": [],
            "text_only": ["text_search"],
            "multi_text": ["text_search"] * rng.randint(2, 6),
            "whole_image": ["image_search_whole"],
            "crop": ["image_search_region"],
            "mixed": [rng.choice(["image_search_whole", "image_search_region"])] + ["text_search"] * rng.randint(1, 5),
        }[pattern]
        n_turns = 10  # ~1M turns at 100k episodes: tool turns, then reflection turns, then the answer
        question = f"What is the name of this {rng.choice(WORDS)} near the {rng.choice(WORDS)}?"
        queries = [f"{rng.choice(WORDS)} {rng.choice(WORDS)} history" for k in kinds if k != "image_search_whole"]
        seq = 0
        for t in range(n_turns):
            kind = kinds[t] if t < len(kinds) else ("answer" if t == n_turns - 1 else "text_search")
            arg = queries[t] if t < len(queries) else ("Answer text" if kind == "answer" else "")
            raw = f"<reason>{'thinking about the evidence ' * 6}</reason><{kind}>{arg}</{kind}>"
            turn_rows.append(
                (
                    pk,
                    t,
                    seq + 1,
                    seq + 2,
                    raw,
                    "thinking",
                    kind if t < len(kinds) or kind == "answer" else "none",
                    arg,
                    60,
                    0.8,
                    now,
                )
            )
            seq += 2
            if t < len(kinds):
                crop = kinds[t] == "image_search_region"
                call_rows.append(
                    (
                        pk,
                        t,
                        t,
                        seq + 1,
                        seq + 2,
                        kinds[t],
                        arg,
                        items,
                        "summary " * 30,
                        "summary " * 30,
                        *((10, 10, 120, 90, shas[(pk + 1) % 200]) if crop else (None, None, None, None, None)),
                    )
                )
                seq += 2
        event_rows.append((pk, seq + 1, n_turns - 1, json.dumps({"text": "Answer text"})))
        n_text = kinds.count("text_search")
        correct = rng.random() < 0.55
        review = rng.choices(["none", "annotated", "approved", "rejected", "disputed"], [90, 4, 3, 2, 1])[0]
        model = rng.choice(["model-a", "model-b", "model-c"])
        ep_rows.append(
            (
                pk,
                uid,
                pk % 3 + 1,
                question,
                shas[pk % 200],
                '["x"]',
                model,
                "mmsearch-r1" if model == "model-c" else "deepmmsearch",
                rng.choice(["infoseek", "okvqa", "dynvqa"]),
                rng.choices(["answered", "budget_exhausted", "interrupted"], [90, 8, 2])[0],
                "Answer text",
                correct,
                True,
                n_turns,
                len(kinds),
                n_text,
                kinds.count("image_search_whole"),
                kinds.count("image_search_region"),
                n_text > 1,
                600,
                rng.uniform(2, 30),
                now + pk,
                now + pk + 5,
                now + pk,
                "\n".join([question, *queries, "Answer text"]),
                review,
                None if review == "none" else correct,
            )
        )
        if pk % 5000 == 0:
            flush()
    flush()
    con.execute("COMMIT")
    con.execute("PRAGMA optimize")
    con.execute("ANALYZE")
    con.close()
    return uids


def bench_append(store, n_episodes: int, by_type: dict[str, list[float]] | None = None) -> list[float]:
    from tests.traces.helpers import synthetic_episode  # the loop-shaped stream the recorder tests use

    recorder = Recorder(store, run_kind="eval", run_name="bench append")
    times = []
    for _ in range(n_episodes):
        for event in synthetic_episode(turns=6):
            start = time.perf_counter()
            recorder(event)
            if not isinstance(event, TextDelta):
                times.append(time.perf_counter() - start)
                if by_type is not None:
                    by_type.setdefault(event.type, []).append(times[-1])
    return times


def filters() -> list[EpisodeFilter]:
    return [
        EpisodeFilter(),
        EpisodeFilter(run_ids=(2,), pattern="crop"),
        EpisodeFilter(status=("answered",), correct=False),
        EpisodeFilter(review="approved"),
        EpisodeFilter(model="model-b", pattern="multi_text"),
        EpisodeFilter(dataset="dynvqa", pattern="mixed", correct=True),
        EpisodeFilter(text="cathedral harbour"),
        EpisodeFilter(dialect="mmsearch-r1", review="none"),
    ]


def bench_list(store, raw: sqlite3.Connection, rounds: int, rng: random.Random) -> tuple[list[float], list[float]]:
    ours, theirs = [], []
    cursors: dict[int, list[str | None]] = {}
    for i, f in enumerate(filters()):
        pages, after = [None], None
        for _ in range(5):  # remember a few deeper cursors
            page = list_episodes(store, f, limit=50, after=after)
            if page.next_cursor is None:
                break
            pages.append(page.next_cursor)
            after = page.next_cursor
        cursors[i] = pages
    fs = filters()
    for _ in range(rounds):
        i = rng.randrange(len(fs))
        after = rng.choice(cursors[i])
        stmt = list_statement(store, fs[i], limit=50, after=after)
        sql = str(stmt.compile(dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True}))
        start = time.perf_counter()
        list_episodes(store, fs[i], limit=50, after=after)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        raw.execute("BEGIN")
        raw.execute(sql).fetchall()
        raw.execute("COMMIT")
        theirs.append(time.perf_counter() - start)
    return ours, theirs


RAW_OPEN = [
    "SELECT episodes.*, images.data FROM episodes LEFT OUTER JOIN images ON images.sha256 = episodes.image_sha256 WHERE episodes.uid = ?",
    "SELECT * FROM runs WHERE id = ?",
    "SELECT * FROM turns WHERE episode_id = ? ORDER BY [index]",
    "SELECT tool_calls.*, crop.data FROM tool_calls LEFT OUTER JOIN images AS crop ON crop.sha256 = tool_calls.crop_image_sha256 WHERE tool_calls.episode_id = ? ORDER BY call_index",
    "SELECT * FROM events WHERE episode_id = ? ORDER BY seq",
]


def raw_open(raw: sqlite3.Connection, uid: str) -> None:
    raw.execute("BEGIN")
    ep = raw.execute(RAW_OPEN[0], (uid,)).fetchone()
    pk, run_id = ep[0], ep[2]
    raw.execute(RAW_OPEN[1], (run_id,)).fetchone()
    for sql in RAW_OPEN[2:]:
        raw.execute(sql, (pk,)).fetchall()
    raw.execute("COMMIT")


def bench_open(
    store, raw: sqlite3.Connection, uids: list[str], rounds: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    ours, theirs = [], []
    for _ in range(rounds):
        uid = rng.choice(uids)
        start = time.perf_counter()
        load_episode(store, uid)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        raw_open(raw, uid)
        theirs.append(time.perf_counter() - start)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=400, help="timed list/open queries each")
    parser.add_argument("--append-episodes", type=int, default=60)
    parser.add_argument("--db", help="where to build (default: a temporary file, removed afterwards)")
    args = parser.parse_args()
    tmp = None if args.db else tempfile.TemporaryDirectory()
    path = Path(args.db) if args.db else Path(tmp.name) / "bench.db"
    if path.exists():
        sys.exit(f"{path} exists; give a new path")
    t0 = time.perf_counter()
    uids = build(path, args.episodes)
    build_s = time.perf_counter() - t0
    print(f"built {args.episodes} episodes in {build_s:.1f}s ({path.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)

    store = open_store(path)
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA mmap_size = 268435456")
    raw.execute("PRAGMA cache_size = -65536")
    rng = random.Random(1)
    turns = raw.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
    # Warm both paths once (page cache, SQLAlchemy statement cache) so neither pays first-touch costs.
    bench_list(store, raw, 40, random.Random(2))
    bench_open(store, raw, uids, 40, random.Random(3))
    list_ours, list_raw = bench_list(store, raw, args.rounds, rng)
    open_ours, open_raw = bench_open(store, raw, uids, args.rounds, rng)
    by_type: dict[str, list[float]] = {}
    append = bench_append(store, args.append_episodes, by_type)
    sync = raw.execute("PRAGMA synchronous").fetchone()[0]
    store.close()
    raw.close()
    if tmp is not None:
        tmp.cleanup()

    def ratio(a: list[float], b: list[float], q: float) -> float:
        return round(pct(a, q) / pct(b, q), 2)

    figures = {
        "episodes": args.episodes,
        "turns": turns,
        "build_s": round(build_s, 1),
        "append_event": {
            **ms(append),
            "events": len(append),
            "durable": "WAL + synchronous=FULL (fsync per commit)",
            "by_type_p95_ms": {k: ms(v)["p95_ms"] for k, v in sorted(by_type.items())},
        },
        "list_page": {
            **ms(list_ours),
            "raw_sqlite3": ms(list_raw),
            "ratio_p50": ratio(list_ours, list_raw, 50),
            "ratio_p95": ratio(list_ours, list_raw, 95),
        },
        "open_episode": {
            **ms(open_ours),
            "raw_sqlite3": ms(open_raw),
            "ratio_p50": ratio(open_ours, open_raw, 50),
            "ratio_p95": ratio(open_ours, open_raw, 95),
        },
        "targets_met": {
            "append_p95_le_2ms": pct(append, 95) <= 0.002,
            "list_p95_le_50ms": pct(list_ours, 95) <= 0.050,
            "open_p95_le_30ms": pct(open_ours, 95) <= 0.030,
        },
        "sqlite_synchronous_default_conn": sync,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
