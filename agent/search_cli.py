"""`python -m agent search …`: run one tool by hand, to check keys, providers and the corpus.

    python -m agent search text QUERY [--provider P] [--question Q] [--json] [tool flags]
    python -m agent search image PATH [--region EXPR] [--provider P] [--question Q] [--save-crop OUT.png] [--json]
    python -m agent search build-corpus DOCS.jsonl OUT.db

Prints the results, the summary, the timing and whether the cache answered. Exit status: 0 on success,
1 when the tool is off or the call failed, 2 on bad usage. Keys come only from the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any, TextIO

from agent.aio import run_sync
from agent.events import ToolResult
from agent.flags import add_config_arguments, config_from_args
from agent.tools.config import IMAGE_PROVIDERS, TEXT_PROVIDERS, ToolConfig
from agent.tools.wiring import build_toolbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent search", description="Run one search tool by hand.")
    sub = parser.add_subparsers(dest="command", required=True)
    text = sub.add_parser("text", help="web text search: results, pages, summary")
    text.add_argument("query")
    text.add_argument("--provider", choices=TEXT_PROVIDERS, help="shortcut for --text-search")
    text.add_argument("--question", default="", help="the question the summary should answer (default: the query)")
    text.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_arguments(text, ToolConfig, title="tools")
    image = sub.add_parser("image", help="reverse image search on an image or a grounded region of it")
    image.add_argument("path")
    image.add_argument(
        "--region", default=None, help="referring expression: ground it with Grounding DINO and search the crop"
    )
    image.add_argument("--provider", choices=IMAGE_PROVIDERS, help="shortcut for --image-search")
    image.add_argument(
        "--question", default="What is shown in this image?", help="the question the summary should answer"
    )
    image.add_argument("--save-crop", default=None, help="write the searched crop to this PNG path")
    image.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_arguments(image, ToolConfig, title="tools")
    corpus = sub.add_parser(
        "build-corpus", help="build a local FTS5 corpus from JSONL ({text, title?, url?, id?} per line)"
    )
    corpus.add_argument("jsonl")
    corpus.add_argument("db")
    return parser


def result_dict(result: ToolResult) -> dict[str, Any]:
    """JSON-safe ToolResult (the crop image becomes its size; it is not printed)."""
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "crop_image"}
    data["items"] = [dataclasses.asdict(item) for item in result.items]
    data["crop_box"] = list(result.crop_box.as_tuple()) if result.crop_box else None
    return data


def _print_result(result: ToolResult, out: TextIO) -> None:
    status = "ERROR" if result.error else "ok"
    cached = "cache hit" if result.cache_hit else "live"
    print(f"provider: {result.provider}  [{status}, {cached}, {result.latency_s * 1000:.0f} ms]", file=out)
    if result.crop_box is not None:
        fallback = " (fallback: whole image)" if result.grounding_fallback else ""
        score = f", score {result.grounding_score:.2f}" if result.grounding_score is not None else ""
        print(f"crop box: {result.crop_box.as_tuple()}{score}{fallback}", file=out)
    if result.grounding_note:
        print(f"grounding: {result.grounding_note}", file=out)
    if result.error:
        print(f"error: {result.error}", file=out)
        return
    for n, item in enumerate(result.items, 1):
        print(f"\n{n}. {item.title}", file=out)
        if item.url:
            print(f"   {item.url}", file=out)
        if item.snippet:
            print(f"   {item.snippet}", file=out)
        if item.page_text:
            print(f"   [page text: {len(item.page_text):,} chars]", file=out)
    print(f"\nsummary:\n{result.summary or '(none)'}", file=out)


def _emit(result: ToolResult, args: argparse.Namespace, out: TextIO, extra: dict[str, Any] | None = None) -> int:
    if args.json:
        print(
            json.dumps({"command": args.command, **(extra or {}), "result": result_dict(result)}, ensure_ascii=False),
            file=out,
        )
    else:
        _print_result(result, out)
    return 0 if result.error is None else 1


def _run_text(args: argparse.Namespace, out: TextIO) -> int:
    if args.provider:
        args.text_search = args.provider
    toolbox = build_toolbox(config_from_args(ToolConfig, args))
    if toolbox.text_search is None:
        result = ToolResult(
            provider="off", error="text search is off: " + toolbox.off_reasons.get("text_search", "not configured")
        )
    else:
        result = run_sync(toolbox.text_search.search_text(args.query, question=args.question or args.query))
    return _emit(result, args, out, {"query": args.query})


def _run_image(args: argparse.Namespace, out: TextIO) -> int:
    from agent.events import Box
    from agent.images import ImageError, load_image

    if args.provider:
        args.image_search = args.provider
    if args.region is None:
        args.grounding_model = "off"  # whole-image search never loads Grounding DINO
    try:
        image = load_image(args.path)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    toolbox = build_toolbox(config_from_args(ToolConfig, args))
    if toolbox.image_search is None:
        return _emit(
            ToolResult(
                provider="off",
                error="image search is off: " + toolbox.off_reasons.get("image_search", "not configured"),
            ),
            args,
            out,
        )
    start = time.monotonic()
    crop, box, grounding = image, Box(0, 0, image.width, image.height), None
    if args.region is not None:
        if toolbox.grounder is None:
            return _emit(
                ToolResult(
                    provider="off",
                    error="region search needs grounding: " + toolbox.off_reasons.get("grounding", "off"),
                ),
                args,
                out,
            )
        grounding = toolbox.grounder.ground(image, args.region)
        if grounding.error is not None:
            return _emit(ToolResult(provider=toolbox.grounder.name, error=grounding.error), args, out)
        box = grounding.box
        crop = image.crop(box.as_tuple())
    if args.save_crop:
        crop.save(args.save_crop)
    result = run_sync(toolbox.image_search.search_image(crop, question=args.question))
    result = dataclasses.replace(
        result,
        crop_box=box,
        latency_s=time.monotonic() - start,
        grounding_fallback=bool(grounding and grounding.fallback),
        grounding_score=grounding.score if grounding else None,
        grounding_note=grounding.note if grounding else "",
    )
    extra = {
        "path": args.path,
        "region": args.region,
        "grounding_latency_s": grounding.latency_s if grounding else None,
    }
    return _emit(result, args, out, extra)


def _run_build_corpus(args: argparse.Namespace, out: TextIO) -> int:
    from agent.tools.local_corpus import build_corpus

    try:
        report = build_corpus(args.jsonl, args.db)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{report.path}: {report.documents:,} documents indexed", file=out)
    for line in report.skipped[:20]:
        print(f"skipped {line}", file=out)
    if len(report.skipped) > 20:
        print(f"... and {len(report.skipped) - 20} more skipped lines", file=out)
    return 0 if report.documents else 1


def main(argv: list[str], *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad usage (2)
        return int(exc.code or 0)
    try:
        if args.command == "text":
            return _run_text(args, out)
        if args.command == "image":
            return _run_image(args, out)
        return _run_build_corpus(args, out)
    except ValueError as exc:  # configuration errors (bad flag combinations) are usage errors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
