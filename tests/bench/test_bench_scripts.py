"""Each benchmark script still runs end to end at its smallest scale and prints its JSON line.

These check that the scripts work (a dependency upgrade can break what they reach into, such as
gradio_client's internals in app_load), not their figures: timings are the scripts' job, on a quiet
machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, timeout: float = 240) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_app_load_measures_every_token_of_every_session(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 48), (90, 140, 200)).save(tmp_path / "photo.png")  # each session uploads it
    figures = _run(
        "app_load.py",
        *("--sessions", "2", "--words", "20", "--client-processes", "1", "--ramp", "0.2"),
        *("--image", str(tmp_path / "photo.png")),
    )
    assert figures["errors"] == 0
    assert figures["tokens_measured"] == 2 * 2 * 20  # two sessions, two turns of 20 words: every one stamped
    assert figures["token_overhead_p95_ms"] is not None and figures["cpu_cores_used"]["app"] is not None


@pytest.mark.parametrize(
    ("script", "args", "key"),
    [
        ("loop_overhead.py", ["--episodes", "2"], "overhead_ms_per_turn_median"),
        ("trace_store.py", ["--episodes", "200", "--rounds", "5", "--append-episodes", "3"], "append_event"),
        ("model_7b.py", ["--scale", "tiny", "--new-tokens", "8", "--image-size", "56"], "time_to_first_token_s"),
        ("text_search_pipeline.py", [], "ratio_to_slowest_page"),
        ("grounding.py", ["--scale", "tiny", "--runs", "1"], "cpu_s_per_crop_median"),
        ("compare_tab.py", ["--episodes", "200", "--jobs", "50", "--rounds", "1"], "compare_s_median"),
        (
            "eval_throughput.py",
            ["--episodes", "4", "--concurrency", "2", "--turn-tokens", "10", "--solo-runs", "1"],
            "ratio",
        ),
        (
            "rollout_overhead.py",
            ["--steps", "2", "--batch", "4", "--num-generations", "4", "--max-turn-tokens", "16"],
            "outside_generation_share",
        ),
        (
            "train_7b.py",
            ["--scale", "tiny", "--sft-steps", "1", "--rollouts", "4", "--turn-tokens", "16", "--tokens", "512"],
            "grpo_step_s",
        ),
    ],
)
def test_bench_script_runs_at_its_smallest_scale(script, args, key):
    assert _run(script, *args)[key] is not None
