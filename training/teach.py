"""`python -m training teach-tiny OUT_DIR`: a tiny model that speaks our protocol, taught with our own SFT.

The tiny random Qwen2.5-VL of `agent.models.tiny` writes noise, so every episode it runs ends in a format error.
This module writes synthetic episodes in the deepmmsearch dialect (built by the one conversation builder; each
tool result is what the local corpus tool returns without a summariser, rendered by `Dialect.render_information`
as the loop renders it) and fine-tunes the tiny model on them with `training.sft` (a full fine-tune: LoRA on a
random 64-wide model learns too slowly). Every synthetic episode is a text search, its result and an answer.

The taught model answers questions it was never taught with in well-formed turns. Its answers are guesses of
the right kind from a small vocabulary: GRPO tests get varied rewards from a real judge. teach-tiny writes:
- OUT_DIR/vlm (the taught model) and OUT_DIR/grounding (a random tiny Grounding DINO), like `python -m agent tiny`;
- OUT_DIR/corpus.db: a local FTS5 corpus (`--text-search local --corpus`) with one fact per held-out question;
- OUT_DIR/questions.jsonl with OUT_DIR/images/: those held-out questions with gold answers, for GRPO and eval.

Synthetic, not meaningful: the model learns the protocol's shape, not facts.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from agent.conversation import ModelTurn, Step, ToolFeedback, build_messages
from agent.events import ResultItem, ToolResult
from agent.models.base import map_image_parts
from agent.protocol import Dialect, get_dialect
from agent.tools.config import ToolConfig
from agent.tools.summarise import snippet_digest

SUBJECTS = (
    "tower", "bridge", "church", "castle", "statue", "painting", "car", "ship", "stadium", "museum", "temple",
    "palace", "fountain", "train", "plane", "clock", "lighthouse", "monument", "garden", "market",
)  # fmt: skip
# Questions the tiny model is checked on, and GRPO's questions: subjects it never saw in training.
HELD_OUT_SUBJECTS = ("building", "dam", "mosque", "harbour", "arch", "tram", "opera house", "library", "canal")
# (question, query, how the result phrases it, answers). The query depends on the question's form only: a 2-layer
# model cannot learn to copy an unseen multi-token subject in a minute, and an unfinished copy is where it
# stopped mid-tag. Each form has a few short answers of its kind (few tokens in the tiny tokenizer), so a sampled
# answer is right now and then (GRPO).
TEMPLATES = (
    ("Who designed this {s}?", "who designed it", "was designed by", ("Wren", "Hadid", "Eiffel")),
    ("In which year was this {s} built?", "year it was built", "was built in", ("1889", "1900", "1950")),
    ("Which city is this {s} in?", "city where it is", "is in", ("Paris", "Rome", "Lima")),
    ("What is the name of this {s}?", "name of this landmark", "is called", ("Louvre", "Tower", "Big Ben")),
)
# One phrasing per step: every extra choice is a place where a barely trained model's greedy decoding mixes two
# continuations into a loop.
SEARCH_REASON = "I need to search the web."
ANSWER_REASON = "The results say it."
CORPUS_SOURCE = "local corpus"  # what LocalCorpusSearch puts in a result's source


@dataclass(frozen=True)
class TeachSettings:
    """What teach-tiny trains with (tuned to reach the format in about a minute of CPU)."""

    episodes: int = 160
    max_steps: int = 140  # 110 steps sufficed for some seeds; 140 answered every held-out question for each tried
    batch_size: int = 8
    learning_rate: float = 6e-3  # 3e-3 left a third of held-out questions malformed after the same steps
    seed: int = 0


def synthetic_image(seed: int, size: int = 56) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def fact(subject: str, template: tuple[str, str, str, tuple[str, ...]], answer: str) -> ResultItem:
    """One corpus document as the local corpus tool returns it."""
    text = f"The {subject} {template[2]} {answer}."
    return ResultItem(title=f"The {subject}", snippet=text, source=CORPUS_SOURCE, page_text=text)


def synthetic_episode(dialect: Dialect, rng: random.Random, subject: str) -> tuple[str, str, list[Step]]:
    """(question, answer, steps): a text search, its result (the fact among a few others, as the corpus ranks
    them), the answer."""
    template = rng.choice(TEMPLATES)
    question_t, query, _, answers = template
    question, answer = question_t.format(s=subject), rng.choice(answers)
    items = [fact(subject, template, answer)]
    for _ in range(rng.randint(0, 2)):
        other = rng.choice(TEMPLATES)
        items.append(fact(rng.choice(SUBJECTS), other, rng.choice(other[3])))
    rng.shuffle(items)
    information = dialect.render_information(
        ToolResult(provider="local", items=tuple(items), summary=snippet_digest(items))
    )
    return (
        question,
        answer,
        [
            ModelTurn(f"<reason>{SEARCH_REASON}</reason><text_search>{query}</text_search>"),
            ToolFeedback("text_search", information),
            ModelTurn(f"<reason>{ANSWER_REASON}</reason><answer>{answer}</answer>"),
        ],
    )


def synthetic_rows(settings: TeachSettings, dialect: Dialect, *, max_tool_calls: int = 10) -> list[dict[str, Any]]:
    """SFT rows (`messages` with an image placeholder, `images`) built by the conversation builder."""
    rng = random.Random(settings.seed)
    rows = []
    for i in range(settings.episodes):
        question, _, steps = synthetic_episode(dialect, rng, rng.choice(SUBJECTS))
        image = synthetic_image(settings.seed * 100_000 + i)
        messages = build_messages(dialect, question, image, steps, max_tool_calls=max_tool_calls)
        rows.append({"messages": map_image_parts(messages, lambda _: {"type": "image"}), "images": [image]})
    return rows


def held_out_questions(seed: int = 0) -> list[tuple[str, str, Image.Image, ResultItem]]:
    """(question, gold answer, image, the corpus fact that answers it) for every held-out subject and form."""
    rng = random.Random(seed + 1)
    out = []
    for i, subject in enumerate(HELD_OUT_SUBJECTS):
        for j, template in enumerate(TEMPLATES):
            answer = rng.choice(template[3])
            image = synthetic_image(1_000_000 + 10 * i + j)
            out.append((template[0].format(s=subject), answer, image, fact(subject, template, answer)))
    return out


def write_question_set(out: Path, seed: int = 0) -> tuple[Path, Path]:
    """OUT/questions.jsonl (+ OUT/images/) and OUT/corpus.db holding the fact behind each question."""
    from agent.tools.local_corpus import build_corpus

    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    questions = out / "questions.jsonl"
    docs = out / "corpus.jsonl"
    with questions.open("w", encoding="utf-8") as q, docs.open("w", encoding="utf-8") as d:
        for n, (question, answer, image, item) in enumerate(held_out_questions(seed)):
            image.save(images / f"q{n}.png")
            q.write(json.dumps({"question": question, "image": f"images/q{n}.png", "answers": [answer]}) + "\n")
            d.write(json.dumps({"id": f"fact-{n}", "title": item.title, "text": item.snippet}) + "\n")
    report = build_corpus(docs, out / "corpus.db")
    return questions, Path(report.path)


@dataclass(frozen=True)
class TaughtCheck:
    episodes: int
    well_formed: int  # answered with every turn well-formed
    correct: int  # of those, the answer matches the gold one (the rule judge)


def corpus_tools(corpus: str | Path) -> ToolConfig:
    """The tools the taught model runs with: text search over teach-tiny's local corpus and nothing else (the
    tiny model cannot summarise, and a tool cache would make repeated rollouts answer from memory)."""
    return ToolConfig(
        text_search="local",
        corpus_path=str(corpus),
        image_search="off",
        grounding_model="off",
        summariser="none",
        cache_path="",
    )


def check_taught(out_dir: str | Path, *, limit: int = 12, temperature: float = 0.0) -> TaughtCheck:
    """Run the taught model through the real loop and tools on held-out questions (greedy by default)."""
    from agent.judge import rule_verdict
    from agent.loop import Budgets, run_episode
    from agent.models.transformers_backend import TransformersBackend
    from agent.tools.wiring import build_toolbox

    out = Path(out_dir)
    backend = TransformersBackend(str(out / "vlm"), temperature=temperature, seed=0)
    tools = build_toolbox(corpus_tools(out / "corpus.db"))
    budgets = Budgets(max_turn_tokens=64, max_response_tokens=512)
    well_formed = correct = 0
    questions = held_out_questions()[:limit]
    for question, answer, image, _ in questions:
        *_, finished = run_episode(question, image, backend, tools, budgets=budgets)
        if finished.status == "answered" and finished.format_ok:
            well_formed += 1
            correct += rule_verdict(finished.final_answer or "", [answer])[0] == "correct"
    return TaughtCheck(len(questions), well_formed, correct)


def teach_tiny(out_dir: str | Path, settings: TeachSettings = TeachSettings()) -> dict[str, Any]:
    """Write OUT/vlm (taught), OUT/grounding (random tiny Grounding DINO), OUT/corpus.db and OUT/questions.jsonl;
    returns paths and timings."""
    import torch

    from agent.models.tiny import write_tiny_vlm
    from agent.tools.grounding import write_tiny_grounding
    from training.config import SFTSettings
    from training.data import sft_dataset_from_rows
    from training.sft import train_sft

    start = time.monotonic()
    out = Path(out_dir)
    dialect = get_dialect("deepmmsearch")
    # On a shared 2-core machine one intra-op thread is faster than two fighting for the cores; a tiny model
    # has nothing to split anyway.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="teach-tiny-") as tmp:
        base = write_tiny_vlm(Path(tmp) / "random", seed=settings.seed)
        dataset = sft_dataset_from_rows(synthetic_rows(settings, dialect), source="synthetic episodes")
        sft = SFTSettings(
            model=str(base),
            data="synthetic",
            output_dir=str(Path(tmp) / "sft"),
            use_peft=False,
            freeze_vision=True,
            max_steps=settings.max_steps,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=0.05,
            per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=1,
            max_length=2048,
            gradient_checkpointing=False,
            logging_steps=max(1, settings.max_steps // 5),
            save_steps=10**9,
            seed=settings.seed,
        )
        trained = time.monotonic()
        result = train_sft(sft, dataset, trl_overrides={"save_strategy": "no"})
        trained = time.monotonic() - trained
        vlm = out / "vlm"
        if vlm.exists():
            shutil.rmtree(vlm)
        shutil.copytree(result.final_dir, vlm)
    torch.set_num_threads(threads)
    grounding = write_tiny_grounding(out / "grounding")
    questions, corpus = write_question_set(out, settings.seed)
    return {
        "vlm": str(vlm),
        "grounding": str(grounding),
        "corpus": str(corpus),
        "questions": str(questions),
        "example_question": held_out_questions(settings.seed)[0][0],
        "example_image": str(out / "images" / "q0.png"),
        "steps": result.steps,
        "final_loss": result.losses[-1] if result.losses else None,
        "train_s": trained,
        "total_s": time.monotonic() - start,
    }
