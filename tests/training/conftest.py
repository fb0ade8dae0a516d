"""Training fixtures: the taught tiny model, built once per session with the project's own SFT."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def taught_tiny(tmp_path_factory) -> Path:
    """`python -m training teach-tiny` output: vlm/, grounding/, corpus.db, questions.jsonl (about a minute)."""
    import torch

    from training.teach import teach_tiny

    out = tmp_path_factory.mktemp("taught")
    threads = torch.get_num_threads()
    teach_tiny(out)
    torch.set_num_threads(threads)
    return out
