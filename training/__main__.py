"""`python -m training teach-tiny|sft|grpo|jobs|cancel` (DESIGN.md §3.7).

`sft` and `grpo` train in this process and record a job row in `--db` (status, progress, metrics); with
`--background` (or `--num-processes N` > 1, through `accelerate launch`) they start the job as its own process
and print its id. `jobs` lists jobs; `cancel ID` stops one at the end of its current step.
Errors print one line that says what to do; exit status 2 for bad input, 1 for a failed run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

from agent.flags import add_config_arguments, config_from_args
from agent.judge import JudgeConfig
from agent.loop import Budgets
from agent.tools.config import ToolConfig
from training.config import GRPOSettings, LaunchSettings, SFTSettings


def _teach_tiny(args: argparse.Namespace) -> int:
    from training.teach import TeachSettings, check_taught, teach_tiny

    settings = TeachSettings(max_steps=args.max_steps, seed=args.seed)
    report = teach_tiny(args.out_dir, settings)
    check = check_taught(args.out_dir)
    print(
        f"taught tiny Qwen2.5-VL: {report['vlm']} ({report['steps']} steps, final loss {report['final_loss']:.3f}, "
        f"{report['total_s']:.0f} s)\ntiny Grounding DINO (random weights): {report['grounding']}\n"
        f"local corpus: {report['corpus']}\nGRPO questions: {report['questions']}\n"
        f"check: {check.well_formed}/{check.episodes} questions it was not taught with answered, every turn "
        f"well-formed; {check.correct} answered right (it learns the protocol's shape, not to read the results)"
    )
    print(
        f"try: python -m agent ask --model {report['vlm']} --text-search local --corpus {report['corpus']} --summariser none "
        f"--image-search off --grounding-model off --image {report['example_image']} "
        f"--question {json.dumps(report['example_question'])}"
    )
    return 0


def _launch_or_run(kind: str, configs: list[object], launch: LaunchSettings, work_factory) -> int:
    from training import runner
    from training.job import open_job, run_job

    if launch.job_id is None and (launch.background or launch.num_processes > 1):
        job_id = runner.launch(kind, configs, launch)
        from traces.store import open_store

        store = open_store(launch.db)
        job = runner.get_job(store, job_id)
        print(f"job {job_id} started (pid {job.pid}); log: {job.log_path}")
        if launch.background:
            print(f"watch: python -m training jobs --db {launch.db}; stop: python -m training cancel {job_id}")
            return 0
        return _follow(store, job_id)
    context = open_job(kind, runner.job_name(kind, configs), runner.job_configs(configs), launch)
    return run_job(context, work_factory)


def _follow(store, job_id: int) -> int:
    """Wait for a job started here, printing its log; Ctrl-C cancels it."""
    from traces.jobs import FINAL_STATUSES
    from training import runner

    printed = 0
    try:
        while True:
            job = runner.get_job(store, job_id)
            text = runner.log_tail(job, max_bytes=10_000_000)
            sys.stdout.write(text[printed:])
            sys.stdout.flush()
            printed = len(text)
            if job.status in FINAL_STATUSES:
                print(f"job {job_id}: {job.status}" + (f" ({job.error})" if job.error else ""))
                return 0 if job.status in ("succeeded", "cancelled") else 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        print(f"\ncancelling job {job_id} (it stops at the end of its step)", file=sys.stderr)
        job = runner.cancel(store, job_id)
        print(f"job {job_id}: {job.status}")
        return 130


def _sft(args: argparse.Namespace) -> int:
    from training.sft import sft_job

    try:
        settings = config_from_args(SFTSettings, args)
        launch = config_from_args(LaunchSettings, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _launch_or_run("sft", [settings], launch, sft_job(settings))


def _grpo(args: argparse.Namespace) -> int:
    from training.grpo import grpo_job

    try:
        settings = config_from_args(GRPOSettings, args)
        budgets = config_from_args(Budgets, args)
        tools = config_from_args(ToolConfig, args)
        # The GRPO reward judge uses the paper's strict reward prompt unless told otherwise.
        prompt = {} if args.judge_prompt or os.environ.get("JUDGE_PROMPT") else {"judge_prompt": "reward"}
        judge = config_from_args(JudgeConfig, args, **prompt)
        launch = config_from_args(LaunchSettings, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _launch_or_run("grpo", [settings, budgets, tools, judge], launch, grpo_job(settings, budgets, tools, judge))


def _jobs(args: argparse.Namespace) -> int:
    from traces.store import open_store
    from training import runner

    store = open_store(args.db)
    rows = runner.list_jobs(store, status=args.status, limit=args.limit)
    if args.json:
        for job in rows:
            print(json.dumps(asdict(job)))
        return 0
    if not rows:
        print(f"no jobs in {args.db}")
        return 0
    print(f"{'id':>4}  {'kind':5} {'status':11} {'step':>11}  {'last metrics':38} name")
    for job in rows:
        step = f"{job.step or 0}/{job.max_steps}" if job.max_steps else str(job.step or "-")
        last = job.metrics.get("last") or {}
        shown = ", ".join(
            f"{k}={v:.4g}"
            for k, v in list(last.items())[:3]
            if k in ("loss", "reward", "kl", "learning_rate", "grad_norm")
        )
        print(f"{job.id:>4}  {job.kind:5} {job.status:11} {step:>11}  {shown[:38]:38} {job.name}")
        if job.error:
            print(f"      {job.error}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from traces.errors import NotFoundError
    from traces.store import open_store
    from training import runner

    store = open_store(args.db)
    try:
        job = runner.cancel(store, args.job_id, grace_s=args.grace, wait=not args.no_wait)
    except (NotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"job {job.id}: {job.status}" + (f" ({job.error})" if job.error else ""))
    return 0


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("TRACES_DB", "runs/traces.db"),
        help="trace store (path or URL; default $TRACES_DB or runs/traces.db)",
    )


def build_parser() -> argparse.ArgumentParser:
    from training.teach import TeachSettings

    parser = argparse.ArgumentParser(prog="python -m training", description="SFT and GRPO for the search agent.")
    sub = parser.add_subparsers(dest="command", required=True)

    teach = sub.add_parser("teach-tiny", help="teach the tiny random model our tag format (OUT_DIR/vlm, /grounding)")
    teach.add_argument("out_dir")
    teach.add_argument(
        "--max-steps", type=int, default=TeachSettings.max_steps, help="SFT steps on the synthetic episodes"
    )
    teach.add_argument("--seed", type=int, default=TeachSettings.seed)
    teach.set_defaults(func=_teach_tiny)

    sft = sub.add_parser("sft", help="LoRA SFT on approved episodes (trace store) or an exported SFT file")
    add_config_arguments(sft, SFTSettings, title="sft")
    add_config_arguments(sft, LaunchSettings, title="job")
    sft.set_defaults(func=_sft)

    grpo = sub.add_parser("grpo", help="online GRPO whose rollouts are the agent's own episodes")
    add_config_arguments(grpo, GRPOSettings, title="grpo")
    add_config_arguments(grpo, Budgets, title="episode budgets")
    add_config_arguments(grpo, ToolConfig, title="tools", description="the rollouts' tools (env vars in brackets)")
    add_config_arguments(grpo, JudgeConfig, title="judge")
    add_config_arguments(grpo, LaunchSettings, title="job")
    grpo.set_defaults(func=_grpo)

    jobs = sub.add_parser("jobs", help="list training jobs (a job whose process died shows as interrupted)")
    _db(jobs)
    jobs.add_argument("--json", action="store_true", help="one JSON object per job")
    jobs.add_argument("--status", help="only jobs with this status")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.set_defaults(func=_jobs)

    cancel = sub.add_parser("cancel", help="stop a job at the end of its current step (SIGKILL after --grace s)")
    _db(cancel)
    cancel.add_argument("job_id", type=int)
    cancel.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL")
    cancel.add_argument("--no-wait", action="store_true", help="return at once (the escalation needs this process)")
    cancel.set_defaults(func=_cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun/accelerate every rank must leave the process group, or one aborts at exit (TRAINING-NOTES §1)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
