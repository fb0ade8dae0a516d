"""GRPO rollouts with the tiny model: how much of a rollout is spent outside generation (target <= 15%).

Runs real GRPO steps (TRL's GRPOTrainer, our rollout function) on the local corpus and question set that
`python -m training teach-tiny` writes, recording every episode in a trace store and judging it with the rule
judge. A rollout call's wall time is split into time inside transformers `generate` (the batched rounds) and the
rest: the episode loop, the policy backend's token bookkeeping, the tools, the judge, the trace-store writes and
the moments when no turn is ready to generate. That rest is what this project adds to TRL; on a GPU generation
is where the time should go.

`--model` takes a taught tiny model (`python -m training teach-tiny runs/tiny` then `--model runs/tiny/vlm`:
two-turn episodes like a real agent's); without it a random tiny model is used, whose episodes are malformed
turns and retries (the script still measures, but that is not the workload the target is about). Generation on
a 64-wide CPU model is far cheaper than on a 7B GPU model, so the share here is an upper bound. Prints its
figures last as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_SHARE = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a taught tiny model folder (teach-tiny's OUT/vlm); default: random tiny")
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps (the first is a warm-up, not counted)")
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="rollouts per step (per_device_train_batch_size)")
    parser.add_argument("--max-turn-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-record", action="store_true", help="leave the trace store out (to see its share)")
    args = parser.parse_args()

    import torch

    from agent.judge import JudgeConfig
    from agent.loop import Budgets
    from agent.models.tiny import write_tiny_vlm
    from traces.store import open_store
    from training.config import GRPOSettings
    from training.grpo import train_grpo
    from training.teach import corpus_tools, write_question_set

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="rollout-overhead-") as tmp:
        work = Path(tmp)
        questions, corpus = write_question_set(work)
        model = args.model or str(write_tiny_vlm(work / "random"))
        store = open_store(work / "traces.db")
        settings = GRPOSettings(
            model=model,
            data=str(questions),
            output_dir=str(work / "out"),
            max_steps=args.steps,
            num_generations=args.num_generations,
            per_device_train_batch_size=args.batch,
            gradient_checkpointing=False,
            save_steps=10**6,
            logging_steps=10**6,
            record_rollouts=not args.no_record,
        )
        tools = corpus_tools(corpus)
        budgets = Budgets(max_turn_tokens=args.max_turn_tokens, max_response_tokens=4 * args.max_turn_tokens)
        start = time.perf_counter()
        result = train_grpo(settings, budgets, tools, JudgeConfig(judge="rule"), store=store)
        total_s = time.perf_counter() - start
        calls = result.rollouts.stats.calls
        measured = calls[1:] or calls  # the first call pays for warm-up (allocations, lazy imports)
        rollout_s = sum(c.seconds for c in measured)
        generate_s = sum(c.generate_seconds for c in measured)
        rounds = sum(c.generate_rounds for c in measured)
        episodes = sum(c.episodes for c in measured)
        stats = result.rollouts.stats
        turns = [r.finished.turns for r in result.rollouts.last_results]
        share = (rollout_s - generate_s) / rollout_s if rollout_s else None
        figures = {
            "bench": "rollout_overhead",
            "model": "taught tiny" if args.model else "random tiny",
            "rollout_calls_measured": len(measured),
            "episodes_measured": episodes,
            "turns_per_episode_last_step": round(sum(turns) / len(turns), 2) if turns else None,
            "statuses": dict(stats.statuses),
            "rollout_s": round(rollout_s, 3),
            "generate_s": round(generate_s, 3),
            "generate_rounds": rounds,
            "rows_per_round": round(episodes * (sum(turns) / max(len(turns), 1)) / rounds, 2) if rounds else None,
            "outside_generation_ms_per_episode": round(1000 * (rollout_s - generate_s) / episodes, 2)
            if episodes
            else None,
            "outside_generation_share": round(share, 4) if share is not None else None,
            "target_share": TARGET_SHARE,
            "total_s": round(total_s, 2),
        }
        store.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
