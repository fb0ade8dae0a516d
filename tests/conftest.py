import os
from pathlib import Path

import pytest

# The tests never reach a model hub: say so before anything imports huggingface_hub or datasets, which read these
# once at import. Without them a hub lookup waits for its network timeouts before it fails.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint in hub layout, built locally (no download)."""
    from agent.models.tiny import write_tiny_vlm

    return write_tiny_vlm(tmp_path_factory.mktemp("tiny") / "vlm")


@pytest.fixture(scope="session")
def fvqa_sample() -> Path:
    path = SHARED_DATA / "fvqa_mini.parquet"
    if not path.exists():
        pytest.skip(f"real FVQA sample not found at {path} (../shared/data is absent outside the workplace)")
    return path
