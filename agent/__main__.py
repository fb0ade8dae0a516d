"""`python -m agent`: tiny checkpoints, one episode from the terminal, and tools by hand (DESIGN.md §3.7)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
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
from agent.visible_text import RunCollapser


def _tiny(args: argparse.Namespace) -> int:
    from agent.models.tiny import write_tiny_vlm
    from agent.tools.grounding import write_tiny_grounding

    out = Path(args.out_dir)
    vlm = write_tiny_vlm(out / "vlm")
    grounding = write_tiny_grounding(out / "grounding")
    print(f"tiny Qwen2.5-VL (random weights): {vlm}\ntiny Grounding DINO (random weights): {grounding}")
    print(f"try: python -m agent ask --model {vlm} --grounding-model {grounding} --image IMG --question '...'")
    return 0


class HumanPrinter:
    """Terminal rendering: stream the model's text, one line per tool call, the answer set apart.

    The model's text goes through a RunCollapser (agent.visible_text): a turn of thousands of newlines or
    of one repeated character prints as one "⏎ ×2000", not a screenful. Anything printed mid-turn first
    flushes the run held back."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout
        self.text = RunCollapser()

    def __call__(self, event: Event) -> None:
        out = self.out
        if not isinstance(event, TextDelta):
            self._flush_text()
        match event:
            case EpisodeStarted():
                print(f"episode {event.episode_id} | {event.backend}:{event.model} | dialect {event.dialect}", file=out)
                for tool, state in event.config.get("tools", {}).items():
                    print(f"  {tool}: {state}", file=out)
            case TurnStarted():
                print(f"\n--- turn {event.turn_index + 1} ---", file=out)
            case TextDelta():
                out.write(self.text.feed(event.text))
                out.flush()
            case ActionParsed():
                print(file=out)
            case FormatError():
                print(f"[format error] {event.error} ({event.retries_left} retries left)", file=out)
            case ToolStarted():
                print(
                    f"[{event.kind} via {event.provider}] {event.argument or '(whole image)'} ...", file=out, flush=True
                )
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

    def _flush_text(self) -> None:
        held = self.text.flush()
        if held:
            self.out.write(held)


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

    emit = (lambda e: print(json.dumps(event_to_dict(e)), flush=True)) if args.json else HumanPrinter()
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


# ---- eval ---------------------------------------------------------------------------------------------------
# `python -m agent eval` records every episode in the trace store, so (like `ask --db`) this entry point imports
# traces inside its functions; agent/eval.py itself knows no store.


def _eval(args: argparse.Namespace) -> int:
    from agent.eval import EvalConfig
    from agent.flags import config_from_args
    from agent.judge import JudgeConfig, build_judge
    from traces import StoreError, open_store
    from traces.eval_runs import EvalJob

    try:
        eval_cfg = config_from_args(EvalConfig, args)
        store = open_store(eval_cfg.db)
    except (ValueError, OSError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Launched by the job runner (the Train tab): keep its job row current, and stop on SIGTERM as on Ctrl-C.
    job = EvalJob(store, eval_cfg.job_id) if eval_cfg.job_id is not None else None
    if job is not None:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        judge = build_judge(config_from_args(JudgeConfig, args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if job is not None:
            job.finish("failed", str(exc))
        store.close()
        return 2
    try:
        if eval_cfg.rejudge:
            code = _eval_rejudge(eval_cfg, judge, store)
        else:
            code = _eval_run(args, eval_cfg, judge, store, job)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except BaseException as exc:
        if job is not None:
            job.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        judge.close()
    try:
        if job is not None:  # endings not recorded on the way (e.g. --rejudge) by exit code
            job.finish(
                *{0: ("succeeded",), 130: ("cancelled", "stopped by request")}.get(code, ("failed", "see the log"))
            )
    finally:
        store.close()
    return code


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _eval_run(args: argparse.Namespace, eval_cfg, judge, store, job=None) -> int:
    from tqdm import tqdm

    from agent.config import ModelConfig, build_backend, public_config
    from agent.eval import default_concurrency, run_eval
    from agent.flags import config_from_args
    from agent.loop import Budgets
    from agent.protocol import get_dialect
    from agent.tools.config import ToolConfig
    from agent.tools.wiring import build_toolbox
    from traces import Recorder
    from traces.eval_data import QuestionSetError, load_question_set
    from traces.eval_runs import WholeEpisodes, default_run_name, open_eval_run, record_outcome, rejudge_run
    from traces.stats import run_report

    try:
        cfg = config_from_args(ModelConfig, args)
        budgets = config_from_args(Budgets, args)
        tool_cfg = config_from_args(ToolConfig, args)
        dialect = get_dialect(cfg.dialect, cfg.prompts_file)
        questions = load_question_set(
            eval_cfg.data,
            store=store,
            split=eval_cfg.split,
            limit=eval_cfg.limit,
            data_sources=eval_cfg.data_source,
        )
        if not questions.items:
            raise QuestionSetError(f"{questions.source}: no questions to evaluate (after --data-source/--limit)")
        backend = build_backend(cfg)
        toolbox = build_toolbox(tool_cfg, summariser_model=backend)
        name = eval_cfg.run_name or default_run_name(cfg.model, questions.name)
        # Recorded with every episode; the run also keeps budgets, judge and data. No secrets in any of these.
        episode_config = {"model": public_config(cfg), "tool_config": dataclasses.asdict(tool_cfg)}
        run = open_eval_run(
            store,
            name,
            model=cfg.model,
            backend=cfg.backend,
            dialect=cfg.dialect,
            dataset=questions.name,
            config={
                **episode_config,
                "budgets": dataclasses.asdict(budgets),
                "judge": judge.describe(),
                "data": {"spec": eval_cfg.data, "source": questions.source, "split": eval_cfg.split},
            },
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if job is not None:
            job.finish("failed", str(exc))
        return 2
    for line in questions.skipped:
        print(f"skipped {line}", file=sys.stderr)
    total = len(questions.items)
    done_before = sum(item.key in run.done_keys for item in questions.items)
    print(
        f"eval run {run.run_id} {name!r}: {total} questions from {questions.source}, "
        f"{done_before} already done, {total - done_before} to run"
        + (f" ({run.discarded} failed attempts discarded)" if run.discarded else ""),
        file=sys.stderr,
    )
    if run.judge.get("name") and run.judge["name"] != judge.name:
        print(
            f"note: this run was judged by {run.judge['name']}; new episodes are judged by {judge.name} "
            "(--rejudge judges them all with one judge)",
            file=sys.stderr,
        )
    if run.resumed:  # answers whose judgement never landed (or was unknown) get one now
        rejudge_run(store, run.run_id, judge, other_judges=False)
    concurrency = default_concurrency(backend, eval_cfg.concurrency)
    if eval_cfg.concurrency and concurrency != eval_cfg.concurrency:
        print(f"note: the {cfg.backend} backend runs one episode at a time", file=sys.stderr)
    before = run_report(store, run.run_id)
    if job is not None:
        job.start(run.run_id, total, done_before)
    bar = tqdm(
        total=total,
        initial=done_before,
        disable=not eval_cfg.progress,
        file=sys.stderr,
        unit="q",
        dynamic_ncols=True,
    )

    def on_progress(p) -> None:
        judged, correct = before.judged + p.judged, before.correct + p.correct
        accuracy = f"{100 * correct / judged:.1f}%" if judged else "-"
        bar.set_postfix_str(f"acc {accuracy} of {judged}, unknown {before.unknown + p.unknown}, errors {p.errors}")
        bar.update(1)
        if job is not None:
            job.progress(done_before + p.done, judged, correct, before.unknown + p.unknown, before.errors + p.errors)

    recorder = Recorder(store, run_kind="eval", run_id=run.run_id)
    try:
        outcome = run_eval(
            questions.items,
            backend=backend,
            toolbox=toolbox,
            judge=judge,
            dialect=dialect,
            budgets=budgets,
            concurrency=concurrency,
            done_keys=run.done_keys,
            on_event=WholeEpisodes(recorder),
            on_outcome=lambda o: record_outcome(store, o),
            on_progress=on_progress,
            max_consecutive_failures=eval_cfg.max_consecutive_failures,
            config=episode_config,
        )
    except RuntimeError as exc:  # the store refused a write: stop rather than run unrecorded
        print(f"\nerror: {exc}", file=sys.stderr)
        if job is not None:
            job.finish("failed", str(exc))
        return 1
    finally:
        bar.close()
        recorder.close()
    if job is not None:
        if outcome.stopped == "interrupted":
            job.finish("cancelled", "stopped by request: finished episodes are kept; the same command resumes")
        elif outcome.stopped:
            job.finish("failed", outcome.stopped)
    return _finish_eval(store, run.run_id, eval_cfg.report, outcome.stopped)


def _finish_eval(store, run_id: int, report_path: str | None, stopped: str | None) -> int:
    from traces.stats import format_report, report_dict, run_report

    report = run_report(store, run_id)
    print(format_report(report))
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report_dict(report), indent=2) + "\n")
        print(f"report written to {report_path}", file=sys.stderr)
    if stopped == "interrupted":
        print("interrupted: finished episodes are kept; run the same command to resume", file=sys.stderr)
        return 130
    if stopped:
        print(f"error: {stopped}", file=sys.stderr)
        return 1
    return 0


def _eval_rejudge(eval_cfg, judge, store) -> int:
    from tqdm import tqdm

    from traces.eval_runs import find_eval_run, rejudge_run

    if not eval_cfg.run_name:
        print("error: --rejudge needs --run-name: the eval run whose answers to judge again", file=sys.stderr)
        return 2
    run = find_eval_run(store, eval_cfg.run_name)
    if run is None:
        print(f"error: no eval run named {eval_cfg.run_name!r} in {eval_cfg.db}", file=sys.stderr)
        return 2
    bar = tqdm(disable=not eval_cfg.progress, file=sys.stderr, unit="answer", desc=f"judging with {judge.name}")

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary = rejudge_run(store, run.id, judge, on_progress=on_progress)
    finally:
        bar.close()
    print(
        f"re-judged {summary.judged} answers of run {run.id} with {judge.name}: "
        f"{summary.changed} verdicts changed, {summary.unknown} still unknown",
        file=sys.stderr,
    )
    return _finish_eval(store, run.id, eval_cfg.report, None)


def _eval_compare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent eval compare",
        description="Paired comparison of two eval runs over their shared questions: accuracy difference, exact "
        "McNemar p-value and the questions whose verdict flipped.",
    )
    parser.add_argument("run_a", help="run id or name (A)")
    parser.add_argument("run_b", help="run id or name (B)")
    parser.add_argument("--db", default=None, help="trace store (default $TRACES_DB or runs/traces.db)")
    parser.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    parser.add_argument("--flips", type=int, default=20, help="flipped questions to list (default 20)")
    args = parser.parse_args(argv)
    from traces import NotFoundError, StoreError, open_store
    from traces.eval_runs import resolve_run
    from traces.stats import compare_runs, comparison_dict, format_comparison

    db = args.db or os.environ.get("TRACES_DB") or "runs/traces.db"
    try:
        with open_store(db) as store:
            comparison = compare_runs(
                store, resolve_run(store, args.run_a), resolve_run(store, args.run_b), max_flips=max(args.flips, 0)
            )
    except (ValueError, StoreError, NotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(comparison_dict(comparison)))
    else:
        print(format_comparison(comparison, show_flips=args.flips))
    return 0


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
    ask.add_argument(
        "--run-name",
        help="run to record under; episodes with the same name, model, backend and dialect share one run across "
        "calls (default name: 'demo <model> (<backend>, <dialect>)')",
    )
    from agent.config import add_episode_arguments

    add_episode_arguments(ask)
    ask.set_defaults(func=_ask)

    ev = sub.add_parser(
        "eval",
        help="evaluate a question set: episodes judged and recorded, accuracy and tool use (also: eval compare A B)",
        description="Run a question set through the agent, judge every answer, record all in the trace store and "
        "report accuracy and tool use. Running the same command again resumes. `python -m agent eval compare "
        "RUN_A RUN_B` compares two runs.",
    )
    from agent.eval import EvalConfig
    from agent.flags import add_config_arguments
    from agent.judge import JudgeConfig

    add_config_arguments(ev, EvalConfig, title="eval")
    add_config_arguments(ev, JudgeConfig, title="judge", description="key from JUDGE_API_KEY")
    add_episode_arguments(ev)
    ev.set_defaults(func=_eval)

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
    if argv[:2] == ["eval", "compare"]:
        return _eval_compare(argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
