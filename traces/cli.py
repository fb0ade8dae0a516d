"""`python -m traces list|stats|import|export|annotate|labels ...`: inspect, load and dump the trace store.

The database comes from --db, else $TRACES_DB, else runs/traces.db (a path or any SQLAlchemy URL).
Errors print one line saying what to do and exit with status 2; nothing is ever overwritten. Wherever a command
takes an episode id, an unambiguous prefix of it will do (as `list` prints them). When the reader of the output
goes away (`... | head`), the command stops quietly with status 141, as other Unix tools do.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any

from traces.annotations import annotate, get_label_set, set_label_set
from traces.errors import StoreError
from traces.queries import (
    MAX_PAGE,
    PATTERNS,
    REVIEW_STATES,
    EpisodeFilter,
    count_episodes,
    get_run,
    iter_episodes,
    list_runs,
    resolve_episode_id,
)
from traces.records import FINAL_STATUSES, EpisodeSummary
from traces.stats import format_report, report_dict, run_report, runs_table
from traces.store import TraceStore, open_store

DEFAULT_DB = "runs/traces.db"


def _db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("TRACES_DB", DEFAULT_DB),
        help="path or SQLAlchemy URL (default $TRACES_DB or runs/traces.db)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m traces", description="Inspect, load and dump the trace store.")
    sub = parser.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="episodes with their ids, newest first, filtered as in the app's Traces tab")
    _db_arg(ls)
    ls.add_argument("--run", type=int, action="append", help="only this run id (repeatable)")
    ls.add_argument(
        "--status",
        action="append",
        choices=[*FINAL_STATUSES, "running", "pending"],
        help="only this status (repeatable)",
    )
    ls.add_argument("--review", choices=REVIEW_STATES, help="annotation state")
    ls.add_argument("--verdict", choices=["correct", "incorrect", "unjudged"], help="annotators' verdict, else judge's")
    ls.add_argument("--pattern", choices=PATTERNS, help="tool use")
    ls.add_argument("--model", help="model name, exactly as recorded")
    ls.add_argument("--dialect", help="tag dialect")
    ls.add_argument("--dataset", help="dataset name")
    ls.add_argument("--annotator", help="annotated by this person")
    ls.add_argument("--text", help="words that must all occur in the question, answer or search queries")
    ls.add_argument("--limit", type=int, default=20, help="how many episodes (default 20)")
    ls.add_argument("--oldest-first", action="store_true")
    ls.add_argument("--json", action="store_true", help="one JSON object per episode, one per line (full ids)")

    stats = sub.add_parser("stats", help="runs and their aggregates (tool use, accuracy, tokens, latency)")
    _db_arg(stats)
    stats.add_argument("--run", type=int, help="only this run id")
    stats.add_argument("--json", action="store_true", help="one JSON object per run, one per line")
    stats.add_argument("--check", action="store_true", help="also run SQLite's full integrity check")

    imp = sub.add_parser("import", help="load a question set, eval output or rollout logs")
    _db_arg(imp)
    imp.add_argument("kind", choices=["fvqa", "mmsearch-r1", "trl", "verl"], help="file format")
    imp.add_argument("path", help="the file (or, for trl/verl, a directory of them)")
    imp.add_argument("--run-name", help="name of the new run (default: from the file name)")
    imp.add_argument("--model", help="model that produced the trajectories")
    imp.add_argument(
        "--dialect", help="tag dialect of the trajectories (default: mmsearch-r1 for mmsearch-r1, else deepmmsearch)"
    )
    imp.add_argument(
        "--reward-columns",
        action="append",
        metavar="A,B",
        help="trl: the columns that are reward functions (comma-separated or repeated); every other logged column "
        "is kept as an extra (default: the reward names in a checkpoint's trainer_state.json beside the logs)",
    )
    imp.add_argument("--correct-column", help="trl: a logged column that is a 0/1 accuracy")
    imp.add_argument(
        "--again",
        action="store_true",
        help="import even if this importer already imported the same content (a second run with copies)",
    )
    imp.add_argument("--no-progress", action="store_true")

    exp = sub.add_parser("export", help="dump SFT data or annotations")
    exp_sub = exp.add_subparsers(dest="what", required=True)
    sft = exp_sub.add_parser(
        "sft",
        help="approved episodes, corrections applied, as TRL SFT chat-messages data (train with assistant_only_loss)",
    )
    _db_arg(sft)
    sft.add_argument(
        "out", help="the file to write: NAME.jsonl or NAME.parquet (images alongside go in NAME_images/ beside it)"
    )
    sft.add_argument("--format", choices=["jsonl", "parquet"], help="default: from the file's suffix")
    sft.add_argument(
        "--images",
        choices=["alongside", "embedded"],
        default="alongside",
        help="alongside: image files, rows hold their absolute paths; embedded: inside the file",
    )
    sft.add_argument("--run", type=int, action="append", help="only these run ids (repeatable)")
    sft.add_argument("--review", default="approved", help="annotation state to export (default approved)")
    sft.add_argument(
        "--include-failed-turns", action="store_true", help="keep malformed turns and their correction prompts"
    )
    sft.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    sft.add_argument("--no-progress", action="store_true")
    ann = exp_sub.add_parser("annotations", help="annotations table + agreement table (.csv/.jsonl/.parquet)")
    _db_arg(ann)
    ann.add_argument("out", help="output file; the agreement goes beside it as <stem>_agreement<suffix>")
    ann.add_argument("--run", type=int)
    ann.add_argument("--history", action="store_true", help="every version, not only current annotations")

    note = sub.add_parser("annotate", help="add or edit your annotation of an episode")
    _db_arg(note)
    note.add_argument("episode_id", help="the episode's id, or an unambiguous prefix of it (see `list`)")
    note.add_argument("--annotator", required=True)
    note.add_argument("--label", action="append", help="a label from the label set (repeatable)")
    note.add_argument("--correct", choices=["yes", "no"])
    note.add_argument("--corrected-answer")
    note.add_argument("--crop-verdict", choices=["right_region", "wrong_region", "should_not_crop"])
    note.add_argument("--approve", dest="approved", action="store_const", const=True)
    note.add_argument("--reject", dest="approved", action="store_const", const=False)
    note.add_argument("--comment")
    note.add_argument("--label-set")

    labels = sub.add_parser("labels", help="show or set a label set")
    _db_arg(labels)
    labels.add_argument("--name", default="default")
    labels.add_argument("--set", nargs="+", metavar="LABEL", help="replace the set's labels (the old version is kept)")
    return parser


SHORT_ID = 12  # characters of an id shown in the table: unambiguous in practice for uuid4 hex ids (48 bits)


def list_filter(args: argparse.Namespace) -> EpisodeFilter:
    return EpisodeFilter(
        run_ids=tuple(args.run or ()),
        status=tuple(args.status or ()),
        review=args.review,
        correct={"correct": True, "incorrect": False}.get(args.verdict or ""),
        judged=False if args.verdict == "unjudged" else None,
        pattern=args.pattern,
        model=args.model,
        dialect=args.dialect,
        dataset=args.dataset,
        annotator=args.annotator,
        text=args.text,
    )


def _verdict(s: EpisodeSummary) -> str:
    value = s.human_correct if s.human_correct is not None else s.correct
    return "-" if value is None else ("correct" if value else "incorrect")


def _one_line(text: str | None, width: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_list(store: TraceStore, args: argparse.Namespace) -> None:
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    filters = list_filter(args)
    # pages of at most MAX_PAGE, so any --limit works
    pages = iter_episodes(store, filters, newest_first=not args.oldest_first, page_size=min(MAX_PAGE, args.limit))
    items = list(itertools.islice(pages, args.limit))
    if args.json:
        for s in items:
            print(json.dumps({**asdict(s), "pattern": s.pattern}))
        return
    print(f"{'id':{SHORT_ID}} {'run':>4} {'status':16} {'verdict':9} {'review':9} {'pattern':11} ", end="")
    print(f"{'turns':>5} {'started':16} question")
    for s in items:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started_at))
        print(
            f"{s.id[:SHORT_ID]:{SHORT_ID}} {s.run_id:>4} {s.status:16} {_verdict(s):9} {s.review_state:9} "
            f"{s.pattern:11} {s.n_turns:>5} {started:16} {_one_line(s.question, 60)}"
        )
    total = count_episodes(store, filters)
    matches = "1 episode matches" if total == 1 else f"{total} episodes match"
    more = f"; showing the first {len(items)} (--limit for more)" if total > len(items) else ""
    print(f"{matches}{more}")


def cmd_stats(store: TraceStore, args: argparse.Namespace) -> None:
    recovered = store.recover_interrupted()
    runs = [get_run(store, args.run)] if args.run is not None else list_runs(store)
    if args.check:
        print(f"integrity_check: {store.integrity_check()}", file=sys.stderr)
    # The same statistics as `python -m agent eval`'s report and the Compare tab: one implementation, traces.stats.
    reports = [run_report(store, run.id) for run in runs]
    if args.json:
        for run, report in zip(runs, reports, strict=True):
            print(json.dumps({"run": asdict(run), "stats": report_dict(report)}, default=str))
        return
    print(
        f"{store.url}: {len(runs)} runs, {count_episodes(store)} episodes"
        + (f" ({recovered} marked interrupted)" if recovered else "")
    )
    print(format_report(reports[0]) if args.run is not None else runs_table(reports))


def cmd_import(store: TraceStore, args: argparse.Namespace) -> int:
    from traces.importers import IMPORTERS

    if args.kind != "trl" and (args.reward_columns or args.correct_column):
        raise ValueError("--reward-columns and --correct-column apply to trl imports only")
    kwargs: dict[str, Any] = {"run_name": args.run_name, "progress": not args.no_progress}
    if args.model:
        kwargs["model"] = args.model
    if args.dialect:
        kwargs["dialect"] = args.dialect
    if args.correct_column:
        kwargs["correct_column"] = args.correct_column
    if args.reward_columns:
        kwargs["reward_columns"] = [c.strip() for group in args.reward_columns for c in group.split(",") if c.strip()]
    if args.again:
        kwargs["again"] = True
    report = IMPORTERS[args.kind](store, args.path, **kwargs)
    print(report.summary())
    return 1 if report.bad_rows and not report.imported else 0


def cmd_export(store: TraceStore, args: argparse.Namespace) -> None:
    if args.what == "sft":
        from traces.export_sft import export_sft

        filters = EpisodeFilter(run_ids=tuple(args.run or ()), review=args.review)
        report = export_sft(
            store,
            args.out,
            fmt=args.format,
            images=args.images,
            filters=filters,
            include_failed_turns=args.include_failed_turns,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    else:
        from traces.export_annotations import export_annotations

        report = export_annotations(store, args.out, run_id=args.run, history=args.history)
    print(report.summary())


def cmd_annotate(store: TraceStore, args: argparse.Namespace) -> None:
    fields: dict[str, Any] = {}
    if args.label is not None:
        fields["labels"] = args.label
    if args.correct is not None:
        fields["correct"] = args.correct == "yes"
    for name in ("corrected_answer", "crop_verdict", "approved", "comment", "label_set"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    record = annotate(store, resolve_episode_id(store, args.episode_id), args.annotator, **fields)
    print(json.dumps(asdict(record)))


def cmd_labels(store: TraceStore, args: argparse.Namespace) -> None:
    label_set = set_label_set(store, args.name, args.set) if args.set else get_label_set(store, args.name)
    print(f"{label_set.name}: {', '.join(label_set.labels)}")


def main(argv: list[str] | None = None) -> int:
    try:
        code = run_command(argv)
        sys.stdout.flush()  # output still buffered for a reader that left fails here, inside the handler
        return code
    except BrokenPipeError:
        # The reader closed the pipe (`python -m traces list | head`): stop quietly, with the status of a process
        # ended by SIGPIPE (128 + 13). Point stdout at devnull so the interpreter's last flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def run_command(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from traces.importers.common import ImportFileError

    try:
        with open_store(args.db) as store:
            if args.command == "list":
                cmd_list(store, args)
            elif args.command == "stats":
                cmd_stats(store, args)
            elif args.command == "import":
                return cmd_import(store, args)
            elif args.command == "export":
                cmd_export(store, args)
            elif args.command == "annotate":
                cmd_annotate(store, args)
            elif args.command == "labels":
                cmd_labels(store, args)
    except (StoreError, ImportFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
