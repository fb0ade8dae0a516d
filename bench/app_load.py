"""20 concurrent sessions through gradio_client against `python app.py` on scripted chat endpoints.

Each session gets its own scripted endpoint (typed into the settings panel, as a user could), so the
endpoint's emission time of every token is known; the client stamps when each token first shows in a
streamed frame, as the frame arrives (StampedMessages says why not later). The three parties run as
separate processes, as they would in production (the endpoints on a GPU server, the clients in
browsers): the app, one process serving every scripted endpoint, and a few client processes. Times are
CLOCK_MONOTONIC, which all processes of a machine share.

Prints, last, one JSON line: errors, p50/p95 episode latency, p50/p95 per-token overhead (endpoint emits
→ client receives: the app's own cost, loop + Gradio + localhost network), and the CPU each party used
over the run (on a 2-core machine the clients and endpoints compete with the app for the same cores).
Run: python bench/app_load.py [--sessions 20] [--words 200] [--token-delay 0.01] [--ramp 2] [--client-processes 4]
[--image photo.jpg] [--samples-out tokens.jsonl] [--on-go "py-spy record -p {pid} -d 8 -o app.svg"]
"""

import argparse
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORD = re.compile(r"w(\d{5})")


def turns_for(words: int) -> list[str]:
    # Numbered words, one per streamed chunk (tags glued to words): a token's arrival is read off the chat.
    first = " ".join(f"w{i:05d}" for i in range(1, words))
    second = " ".join(f"w{i:05d}" for i in range(words + 1, 2 * words))
    return [
        f"<reason>{first}</reason><text_search>w{words:05d}</text_search>",
        f"<reason>{second}</reason><answer>w{2 * words:05d}</answer>",
    ]


def chunk_of_word(words: int) -> dict[int, int]:
    """Word number → index of the chunk that carries it, in the order a session's endpoint streams them. The
    scripted server sends one whitespace-separated piece per chunk, so a turn's last word shares its chunk
    with the word before it."""
    index, chunk = {}, 0
    for turn in turns_for(words):
        for piece in re.findall(r"\S+\s*", turn):
            for number in WORD.findall(piece):
                index[int(number)] = chunk
            chunk += 1
    return index


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the endpoints' process -----------------------------------------------------------------------


def serve_endpoints(sessions: int, words: int, token_delay: float, conn) -> None:
    from tests.servers.chat_completions import scripted_chat_server

    with ExitStack() as stack:
        servers = [
            stack.enter_context(scripted_chat_server(turns_for(words), token_delay_s=token_delay))
            for _ in range(sessions)
        ]
        conn.send([s.base_url for s in servers])
        conn.recv()  # the run is over
        conn.send({s.base_url: list(s.emitted_at) for s in servers})


# --- the clients' processes -----------------------------------------------------------------------


def newest_word(chat: list) -> int:
    """The highest word number in the streamed chat. Words only grow, so the last message that has
    any holds the highest: scanning from the end keeps the client's own cost per frame small."""
    for message in reversed(chat):
        numbers = WORD.findall(str(message.get("content") if isinstance(message, dict) else message))
        if numbers:
            return max(int(n) for n in numbers)
    return 0


class StampedMessages(deque):
    """A session's queue of SSE messages in gradio_client, stamping each as the client's stream reader
    appends it: the moment the client has received the frame.

    gradio_client hands a received frame on to the caller only when the job's thread next polls this
    queue, every 50 ms (`stream_sse_v1plus`); a browser applies each message as it arrives. Stamping at
    the append measures what the page would show, not the poll. The job's thread turns each message that
    carries output data (all but the closing one) into one entry of `job.outputs`, in order, so the k-th
    such stamp belongs to the k-th output; a count mismatch is reported as the session's error."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.stamps: list[float] = []

    def append(self, message) -> None:
        if (
            isinstance(message, dict)
            and message.get("msg") != "process_completed"
            and (message.get("output") or {}).get("data")
        ):
            self.stamps.append(time.monotonic())
        super().append(message)


class StampingRegistry(dict):
    """Stands in for gradio_client's `Client.pending_messages_per_event`: every event's message queue is
    made a StampedMessages, and kept here after the client drops it. (Should an upgrade rename that
    attribute or make its queues differently, sessions fail the count check: no silently wrong figure.)"""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[StampedMessages] = []

    def _stamped(self, queue) -> StampedMessages:
        if isinstance(queue, StampedMessages):
            return queue
        stamped = StampedMessages(queue)
        self.made.append(stamped)
        return stamped

    def __setitem__(self, key, queue) -> None:
        super().__setitem__(key, self._stamped(queue))

    def setdefault(self, key, queue=None):
        if key not in self:
            self[key] = queue if queue is not None else deque()
        return self[key]


def session(client, base_url: str, words: int, delay: float, image: str | None, ready, go, out: list) -> None:
    try:
        registry = StampingRegistry()
        client.pending_messages_per_event = registry  # before any job: every queue it makes is stamped
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask"]["parameters"]
        labels = [p["label"] for p in api]
        args = [p.get("parameter_default") for p in api]
        args[labels.index("Question")] = "Which bridge is this?"
        if image:
            from gradio_client import handle_file

            args[labels.index("Image")] = handle_file(image)
        args[labels.index("Endpoint (openai backend)")] = base_url
        # The page opens the session (its load event) before anyone asks: do the same, outside the timing.
        client.predict(api_name="/stop")
        ready.release()
        go.wait()
        time.sleep(delay)
        start = time.monotonic()
        # Waiting on the job's future, not iterating it: iterating polls every millisecond per session,
        # which took most of a core on a 2-core machine (a browser does not poll).
        job = client.submit(*args, api_name="/ask")
        job.result()
        latency = time.monotonic() - start
        frames = list(job.outputs())
        stamps = [t for queue in registry.made for t in queue.stamps]
        if len(stamps) != len(frames):
            raise RuntimeError(f"{len(stamps)} stamped messages for {len(frames)} frames (has gradio_client changed?)")
        seen = 0
        received: dict[int, float] = {}
        for output, stamp in zip(frames, stamps, strict=True):
            top = newest_word(output[0] if isinstance(output[0], list) else [])
            for k in range(seen + 1, top + 1):
                received[k] = stamp
            seen = max(seen, top)
        error = None if seen >= 2 * words else f"saw {seen} of {2 * words} tokens"
        out.append(
            {
                "base_url": base_url,
                "latency": latency,
                "received": received,
                "error": error,
                "start": start,
                "end": start + latency,
            }
        )
    except Exception as exc:  # counted, not raised: the figure is the error count
        ready.release()  # (a second release after a late failure is harmless: nobody waits any more)
        out.append({"base_url": base_url, "error": f"{type(exc).__name__}: {exc}"})


def run_clients(
    url: str, base_urls: list[str], delays: list[float], words: int, image: str | None, ready, go, results
) -> None:
    import httpx
    from gradio_client import Client

    # gradio_client builds a new httpx client for most requests, and each loads the CA bundle (about 30 ms
    # of CPU, several per session start, on the cores the app under test needs; browsers run elsewhere).
    # It hands `ssl_verify` to httpx as `verify`, which takes a ready context: one serves every client here.
    context = httpx.create_ssl_context()

    # download_files=False: a browser fetches an image once; gradio_client would re-download it per frame.
    clients = [Client(url, verbose=False, download_files=False, ssl_verify=context) for _ in base_urls]
    out: list = []
    threads = [
        threading.Thread(target=session, args=(c, b, words, d, image, ready, go, out))
        for c, b, d in zip(clients, base_urls, delays, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(out)


# --- the run --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument(
        "--words", type=int, default=200, help="streamed words (tokens) per turn; two turns per episode"
    )
    parser.add_argument("--token-delay", type=float, default=0.01, help="seconds between tokens at the endpoint")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument(
        "--ramp", type=float, default=2.0, help="seconds over which the sessions start, evenly spaced (0: all at once)"
    )
    parser.add_argument(
        "--on-go",
        help="shell command started (not awaited) as the sessions start, {pid} being the app's: a profiler, say",
    )
    parser.add_argument(
        "--image", help="an image every session uploads with its question (default: none, a text-only question)"
    )
    parser.add_argument(
        "--samples-out",
        type=Path,
        help="also write every token's [endpoint, word, emitted, received] here as JSON lines",
    )
    args = parser.parse_args()
    ctx = mp.get_context("spawn")

    from tests.ui.stack import app_stack

    endpoints_conn, child_conn = ctx.Pipe()
    endpoints = ctx.Process(
        target=serve_endpoints, args=(args.sessions, args.words, args.token_delay, child_conn), daemon=True
    )
    endpoints.start()
    base_urls = endpoints_conn.recv()
    with (
        tempfile.TemporaryDirectory(prefix="app-load-") as workdir,
        app_stack(Path(workdir), auth=None, extra=["--max-concurrent-episodes", str(args.sessions)]) as running,
    ):
        ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
        # Session k starts k·ramp/sessions seconds after the go (0 = all at once).
        delays = [k * args.ramp / args.sessions for k in range(args.sessions)]
        shares = [
            (base_urls[i :: args.client_processes], delays[i :: args.client_processes])
            for i in range(args.client_processes)
        ]
        clients = [
            ctx.Process(
                target=run_clients,
                args=(running.url, urls, waits, args.words, args.image, ready, go, results),
                daemon=True,
            )
            for urls, waits in shares
            if urls
        ]
        for c in clients:
            c.start()
        for _ in base_urls:  # every session connected, its page open and its arguments ready
            ready.acquire()
        time.sleep(3.0)  # let the app's background warm-up finish, as it would before real visitors arrive
        parties = {"app": [running.process.pid], "endpoints": [endpoints.pid], "clients": [c.pid for c in clients]}
        cpu_before = {name: [cpu_seconds(p) for p in pids] for name, pids in parties.items()}
        wall = time.monotonic()
        if args.on_go:
            subprocess.Popen(args.on_go.format(pid=running.process.pid), shell=True)
        go.set()
        sessions = [s for _ in clients for s in results.get()]
        wall = time.monotonic() - wall
        cpu_after = {name: [cpu_seconds(p) for p in pids] for name, pids in parties.items()}
        for c in clients:
            c.join()
    endpoints_conn.send("done")
    emitted = endpoints_conn.recv()
    endpoints.join(timeout=10)

    errors = [s["error"] for s in sessions if s["error"]]
    ok = [s for s in sessions if not s["error"]]
    latencies = [s["latency"] for s in ok]
    chunk = chunk_of_word(args.words)
    overheads_ms = [
        (t - emitted[s["base_url"]][chunk[k]]) * 1000
        for s in ok
        for k, t in s["received"].items()
        if chunk[k] < len(emitted[s["base_url"]])
    ]
    if args.samples_out:
        with args.samples_out.open("w") as f:
            for s in ok:
                for k, t in s["received"].items():
                    if chunk[k] < len(emitted[s["base_url"]]):
                        f.write(json.dumps([s["base_url"], k, emitted[s["base_url"]][chunk[k]], t]) + "\n")
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)

    def cpu_share(name: str) -> float | None:
        spent = [
            a - b for a, b in zip(cpu_after[name], cpu_before[name], strict=True) if a is not None and b is not None
        ]
        return round(sum(spent) / wall, 2) if spent else None

    # How many episodes ran at once: the most, and on average over the time any ran (sampled every 10 ms).
    spans = [(s["start"], s["end"]) for s in ok]
    counts = []
    if spans:
        t, last = min(a for a, _ in spans), max(b for _, b in spans)
        while t < last:
            counts.append(sum(1 for a, b in spans if a <= t < b))
            t += 0.01
    figures = {
        "sessions": args.sessions,
        "errors": len(errors) + args.sessions - len(sessions),
        "episode_latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "episode_latency_p95_s": round(pct(latencies, 0.95), 3) if latencies else None,
        "token_overhead_p50_ms": round(pct(overheads_ms, 0.5), 1) if overheads_ms else None,
        "token_overhead_p95_ms": round(pct(overheads_ms, 0.95), 1) if overheads_ms else None,
        "tokens_measured": len(overheads_ms),
        "concurrent_episodes_max": max(counts, default=0),
        "concurrent_episodes_mean": round(statistics.mean(counts), 1) if counts else 0,
        "token_delay_s": args.token_delay,
        "wall_s": round(wall, 2),
        "cpu_cores_used": {name: cpu_share(name) for name in parties},
        "cores": os.cpu_count(),
    }
    print(json.dumps(figures))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
