"""`python -m agent`: tiny checkpoints, one episode from the terminal, and tools by hand (DESIGN.md §3.7)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path

from agent.events import (
    ActionParsed,
    Answer,
    BudgetExhausted,
    EpisodeFinished,
    EpisodeStarted,
    Event,
    FormatError,
    ModelError,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnStarted,
    event_to_dict,
)


def _tiny(args: argparse.Namespace) -> int:
    from agent.models.tiny import write_tiny_vlm
    from agent.tools.grounding import write_tiny_grounding

    out = Path(args.out_dir)
    vlm = write_tiny_vlm(out / "vlm")
    grounding = write_tiny_grounding(out / "grounding")
    print(f"tiny Qwen2.5-VL (random weights): {vlm}\ntiny Grounding DINO (random weights): {grounding}")
    print(f"try: python -m agent ask --model {vlm} --grounding-model {grounding} --image IMG --question '...'")
    return 0


def _print_human(event: Event, out=None) -> None:
    """Terminal rendering: stream the model's text, one line per tool call, the answer set apart."""
    out = out or sys.stdout
    match event:
        case EpisodeStarted():
            print(f"episode {event.episode_id} | {event.backend}:{event.model} | dialect {event.dialect}", file=out)
            for tool, state in event.config.get("tools", {}).items():
                print(f"  {tool}: {state}", file=out)
        case TurnStarted():
            print(f"\n--- turn {event.turn_index + 1} ---", file=out)
        case TextDelta():
            out.write(event.text)
            out.flush()
        case ActionParsed():
            print(file=out)
        case FormatError():
            print(f"[format error] {event.error} ({event.retries_left} retries left)", file=out)
        case ToolStarted():
            print(f"[{event.kind} via {event.provider}] {event.argument or '(whole image)'} ...", file=out, flush=True)
        case ToolFinished():
            r = event.result
            status = f"error: {r.error}" if r.error else f"{len(r.items)} results"
            box = f" box={r.crop_box.as_tuple()}" if r.crop_box else ""
            cache = " (cache)" if r.cache_hit else ""
            print(f"[{event.kind}] {status}{box} in {r.latency_s:.2f}s{cache}", file=out)
            if r.summary:
                print(f"  summary: {r.summary}", file=out)
        case BudgetExhausted():
            print(f"[budget: {event.budget}] {event.message}", file=out)
        case ModelError():
            print(f"[model error] {event.endpoint}: {event.message}", file=out)
        case Answer():
            print(f"\nANSWER: {event.text}", file=out)
        case EpisodeFinished():
            print(
                f"\nfinished: {event.status}{' (' + event.reason + ')' if event.reason else ''} | turns {event.turns} | "
                f"tool calls {event.tool_calls} | tokens {event.response_tokens} | {event.elapsed_s:.1f}s",
                file=out,
            )


def _ask(args: argparse.Namespace) -> int:
    from agent.config import ModelConfig, build_backend, public_config
    from agent.flags import config_from_args
    from agent.images import ImageError, load_image
    from agent.loop import Budgets, run_episode
    from agent.protocol import get_dialect
    from agent.tools.config import ToolConfig
    from agent.tools.wiring import build_toolbox

    try:
        image = load_image(args.image) if args.image else None
        cfg = config_from_args(ModelConfig, args)
        budgets = config_from_args(Budgets, args)
        dialect = get_dialect(cfg.dialect, cfg.prompts_file)
        backend = build_backend(cfg)
        tool_cfg = config_from_args(ToolConfig, args)
        toolbox = build_toolbox(tool_cfg, summariser_model=backend)
    except (ImageError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    recorder = None
    if args.db:
        # The CLI is an entry point, not the agent library: recording is opt-in and traces is only
        # imported here, so `agent` itself still depends on nothing else in the project.
        from traces import Recorder, open_store

        try:
            recorder = Recorder(open_store(args.db), run_kind="demo", run_name=args.run_name)
        except Exception as exc:
            print(f"error: cannot open trace store {args.db}: {exc}", file=sys.stderr)
            return 2

    emit = (lambda e: print(json.dumps(event_to_dict(e)), flush=True)) if args.json else _print_human
    final: list[EpisodeFinished] = []

    def on_event(event: Event) -> None:
        if recorder is not None:
            recorder(event)
        if isinstance(event, EpisodeFinished):
            final.append(event)

    cancel = threading.Event()
    events = run_episode(
        args.question,
        image,
        backend,
        toolbox,
        dialect=dialect,
        budgets=budgets,
        cancel=cancel,
        on_event=on_event,
        gold_answers=args.gold or (),
        config={"model": public_config(cfg), "tool_config": dataclasses.asdict(tool_cfg)},  # no secrets in either
    )
    try:
        for event in events:
            emit(event)
    except KeyboardInterrupt:
        cancel.set()
        events.close()  # the loop sends a `cancelled` EpisodeFinished to on_event
        if final:
            emit(final[-1])
    finally:
        if recorder is not None:
            recorder.close()
    status = final[-1].status if final else "cancelled"
    return {"answered": 0, "error": 1}.get(status, 0 if status != "cancelled" else 130)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent", description="DeepMMSearch-R1 agent: run episodes and tools."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tiny = sub.add_parser("tiny", help="write tiny random-weight checkpoints (VLM + Grounding DINO) for smoke tests")
    tiny.add_argument("out_dir", help="writes OUT_DIR/vlm and OUT_DIR/grounding")
    tiny.set_defaults(func=_tiny)

    ask = sub.add_parser("ask", help="run one episode on an image and a question")
    ask.add_argument("--image", help="path to the image (any Pillow format); omit for a text-only question")
    ask.add_argument("--question", required=True)
    ask.add_argument("--gold", action="append", help="a gold answer, recorded with the episode (repeatable)")
    ask.add_argument("--json", action="store_true", help="print one JSON object per event, one per line")
    ask.add_argument("--db", help="record the episode in this trace store (SQLite path or SQLAlchemy URL)")
    ask.add_argument("--run-name", help="run to record under (default: one per model and dialect)")
    from agent.config import add_episode_arguments

    add_episode_arguments(ask)
    ask.set_defaults(func=_ask)

    # Listed for --help only: main() hands `search ...` to agent.search_cli untouched, flags and all.
    sub.add_parser(
        "search", help="run one tool by hand: search text QUERY | image PATH | build-corpus (see `search --help`)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["search"]:
        from agent.search_cli import main as search_main

        return search_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
