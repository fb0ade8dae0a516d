"""Training at full size on a GPU: Qwen2.5-VL-7B architecture with random bf16 weights.

- LoRA SFT (the paper's rank 8 on the language model, gradient checkpointing) on episodes of `--tokens` tokens
  (4096 by default, image tokens included): seconds per optimizer step and peak GPU memory.
- One GRPO step with `--rollouts` rollouts (8, one question's group) through our rollout function, the local
  corpus and the rule judge: step time, of which rollout and generation, and peak memory.

Random weights decode noise, so each rollout is a few malformed turns up to the turn budget: the generation cost
is real, the episode shapes are not. Without a CUDA GPU it prints a `skipped` line and exits 0; `--scale tiny`
runs the same code on the tiny model on CPU, to check the script. Prints its figures last as one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def sft_rows(tokens: int, tokenizer, count: int) -> list[dict]:
    """Synthetic episodes padded with search results to about `tokens` tokens each (the builder renders them)."""
    from agent.protocol import get_dialect
    from training.teach import SUBJECTS, TeachSettings, synthetic_rows

    dialect = get_dialect("deepmmsearch")
    rows = synthetic_rows(TeachSettings(episodes=count), dialect)
    filler = " ".join(f"The {s} is a landmark that many people visit every year." for s in SUBJECTS)
    for row in rows:
        user = row["messages"][3]["content"][0]
        while len(tokenizer(user["text"], add_special_tokens=False)["input_ids"]) < tokens - 400:
            user["text"] = user["text"].replace("</information>", " " + filler + "</information>", 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=["7b", "tiny"], default="7b")
    parser.add_argument("--tokens", type=int, default=4096, help="SFT episode length in tokens")
    parser.add_argument("--sft-steps", type=int, default=3, help="timed SFT steps (after one warm-up step)")
    parser.add_argument("--rollouts", type=int, default=8, help="GRPO rollouts in the step (one group)")
    parser.add_argument("--turn-tokens", type=int, default=256, help="GRPO rollout turn budget")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if args.scale == "7b" and not cuda:
        print(json.dumps({"bench": "train_7b", "skipped": "no CUDA GPU: run it where a GPU is lent (see README)"}))
        return
    from model_7b import build

    from agent.judge import JudgeConfig
    from agent.loop import Budgets
    from traces.store import open_store
    from training.config import GRPOSettings, SFTSettings
    from training.data import sft_dataset_from_rows
    from training.grpo import train_grpo
    from training.sft import train_sft
    from training.teach import corpus_tools, write_question_set

    device = "cuda" if cuda else "cpu"
    figures: dict = {
        "bench": "train_7b",
        "scale": args.scale,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }
    with tempfile.TemporaryDirectory(prefix="train-7b-") as tmp:
        work = Path(tmp)
        model, processor, dtype = build(args.scale, device)
        model.generation_config.eos_token_id = None  # random weights: every turn runs to its budget
        figures["dtype"] = str(dtype).replace("torch.", "")
        figures["parameters_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)

        # ---- LoRA SFT ----
        tokens = args.tokens if args.scale == "7b" else min(args.tokens, 1024)
        dataset = sft_dataset_from_rows(sft_rows(tokens, processor.tokenizer, 4), source="synthetic")
        sft = SFTSettings(
            model="in-memory",
            data="synthetic",
            output_dir=str(work / "sft"),
            max_steps=1 + args.sft_steps,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=1,
            max_length=tokens + 512,
            gradient_checkpointing=cuda,
            bf16=cuda,
            save_steps=10**6,
        )
        step_times: list[float] = []

        from transformers import TrainerCallback

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *a, **k):
                if cuda:
                    torch.cuda.synchronize()
                self.t = time.perf_counter()

            def on_step_end(self, *a, **k):
                if cuda:
                    torch.cuda.synchronize()
                step_times.append(time.perf_counter() - self.t)

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        train_sft(
            sft, dataset, callbacks=[StepTimer()], trl_overrides={"save_strategy": "no"}, loaded=(model, processor)
        )
        timed = step_times[1:] or step_times
        figures["sft_tokens_per_episode"] = tokens
        figures["sft_s_per_step"] = round(sorted(timed)[len(timed) // 2], 3)
        figures["sft_peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None

        # ---- one GRPO step: 8 rollouts of one question ----
        # peft put the SFT adapter into the model's modules; GRPO starts from a fresh model with its own LoRA.
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        model, processor, _ = build(args.scale, device)
        model.generation_config.eos_token_id = None
        questions, corpus = write_question_set(work)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        store = open_store(work / "traces.db")
        grpo = GRPOSettings(
            model="in-memory",
            data=str(questions),
            output_dir=str(work / "grpo"),
            max_steps=1,
            num_generations=args.rollouts,
            per_device_train_batch_size=args.rollouts,
            gradient_checkpointing=cuda,
            bf16=cuda,
            save_steps=10**6,
            logging_steps=1,
        )
        tools = corpus_tools(corpus)
        budgets = Budgets(max_turn_tokens=args.turn_tokens, max_response_tokens=4 * args.turn_tokens)
        start = time.perf_counter()
        result = train_grpo(grpo, budgets, tools, JudgeConfig(judge="rule"), store=store, loaded=(model, processor))
        step_s = time.perf_counter() - start
        call = result.rollouts.stats.calls[0]
        figures.update(
            {
                "grpo_rollouts": call.episodes,
                "grpo_step_s": round(step_s, 2),
                "grpo_rollout_s": round(call.seconds, 2),
                "grpo_generate_s": round(call.generate_seconds, 2),
                "grpo_generate_rounds": call.generate_rounds,
                "grpo_statuses": dict(result.rollouts.stats.statuses),
                "grpo_peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            }
        )
        store.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
