"""Helpers for the training tests: SFT files as export writes them, question sets for GRPO."""

from __future__ import annotations

import json
from pathlib import Path


def write_sft_file(directory: Path, episodes: int = 8, seed: int = 1) -> Path:
    """An SFT JSONL as `traces export sft` writes it (images alongside), from builder-made synthetic episodes."""
    from agent.protocol import get_dialect
    from training.teach import TeachSettings, synthetic_rows

    rows = synthetic_rows(TeachSettings(episodes=episodes, seed=seed), get_dialect("deepmmsearch"))
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    path = directory / "train.jsonl"
    with path.open("w") as f:
        for i, row in enumerate(rows):
            image_path = (images / f"{i}.png").resolve()
            row["images"][0].save(image_path)
            f.write(json.dumps({"messages": row["messages"], "images": [str(image_path)]}) + "\n")
    return path


def write_questions(taught: Path, directory: Path, golds: list[str], count: int = 2) -> Path:
    """The taught model's held-out questions with `golds` as every question's gold answers."""
    source = [json.loads(line) for line in (taught / "questions.jsonl").read_text().splitlines()][:count]
    path = directory / "questions.jsonl"
    with path.open("w") as f:
        for row in source:
            f.write(json.dumps({**row, "image": str(taught / row["image"]), "answers": golds}) + "\n")
    return path
