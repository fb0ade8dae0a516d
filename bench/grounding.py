"""Grounding latency per crop: full-size random-weight Grounding DINO tiny (GroundingDinoConfig()).

CPU: at the default CPU downscale (short side 400 px), through GroundingDinoGrounder.ground, the code the
agent runs. GPU (when CUDA is present): the same at the model's own 800 px, fp16; target ≤ 100 ms.
The model is built from its config (no download) and handed to the grounder in place of from_pretrained;
the tokenizer is the tiny local BERT one (ids fit BERT's vocabulary). Prints figures last as one JSON line.
`--scale tiny` times the tiny local Grounding DINO instead: it checks the script, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import AutoTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoProcessor  # noqa: E402
from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil  # noqa: E402

from agent.tools.grounding import GroundingDinoGrounder, GroundingSettings, write_tiny_grounding  # noqa: E402

IMAGE = Image.new("RGB", (1024, 768), (120, 140, 90))
EXPRESSION = "the red car on the left"


def measure(grounder: GroundingDinoGrounder, runs: int) -> list[float]:
    grounder.ground(IMAGE, EXPRESSION)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        g = grounder.ground(IMAGE, EXPRESSION)
        times.append(time.perf_counter() - start)
        assert g.error is None, g.error
    return times


def grounder_for(
    device: str, settings: GroundingSettings, tokenizer_dir: Path, model: GroundingDinoForObjectDetection
) -> GroundingDinoGrounder:
    size = (
        {"shortest_edge": settings.cpu_short_side, "longest_edge": settings.cpu_long_side}
        if device == "cpu"
        else {"shortest_edge": 800, "longest_edge": 1333}
    )
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size=size),
        tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir),
    )
    grounder = GroundingDinoGrounder(settings)
    grounder._loaded = (processor, model, device)  # what _load returns, minus the download
    return grounder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", choices=["full", "tiny"], default="full")
    parser.add_argument("--runs", type=int, default=3, help="timed crops on the CPU (20 on a GPU)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    settings = GroundingSettings(box_threshold=0.0, text_threshold=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = write_tiny_grounding(Path(tmp) / "tiny")
        start = time.perf_counter()
        if args.scale == "full":
            model = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
        else:
            model = GroundingDinoForObjectDetection.from_pretrained(tokenizer_dir).eval()
        build_s = time.perf_counter() - start
        params = sum(p.numel() for p in model.parameters())
        cpu = measure(grounder_for("cpu", settings, tokenizer_dir, model), runs=args.runs)
        figures = {
            "bench": "grounding",
            "scale": args.scale,
            "model": "GroundingDinoConfig() random weights (Swin-T + BERT-base)"
            if args.scale == "full"
            else "tiny local Grounding DINO",
            "params_m": round(params / 1e6, 1),
            "build_s": round(build_s, 2),
            "cpu_threads": torch.get_num_threads(),
            "cpu_short_side": settings.cpu_short_side,
            "cpu_s_per_crop_median": round(statistics.median(cpu), 3),
            "cpu_s_per_crop_min": round(min(cpu), 3),
            "gpu": None,
        }
        if torch.cuda.is_available():
            gpu_model = model.to("cuda", dtype=torch.float16)
            gpu = measure(grounder_for("cuda", settings, tokenizer_dir, gpu_model), runs=20)
            figures["gpu"] = torch.cuda.get_device_name(0)
            figures["gpu_ms_per_crop_median"] = round(statistics.median(gpu) * 1000, 1)
            figures["gpu_target_ms"] = 100
        else:
            figures["gpu_skipped"] = "no CUDA device"
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))
