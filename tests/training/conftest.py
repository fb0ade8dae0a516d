"""Training fixtures: the taught tiny model, built once per session with the project's own SFT."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def taught_tiny(tmp_path_factory) -> Path:
    """`python -m training teach-tiny` output: vlm/, grounding/, corpus.db, questions.jsonl (about a minute)."""
    from training.teach import teach_tiny

    out = tmp_path_factory.mktemp("taught")
    teach_tiny(out)  # it sets torch's thread count back when it is done
    return out
