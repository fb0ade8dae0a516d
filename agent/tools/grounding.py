"""Grounding DINO: find the box for a referring expression, pad it, and report it in original pixels.

Loading is the same for the real model (default `IDEA-Research/grounding-dino-tiny`) and the tiny random
one from `write_tiny_grounding`: `GroundingDinoForObjectDetection`, the PIL image processor (the default
one needs torchvision, which cannot be installed next to our torch) and `AutoTokenizer`, composed into a
`GroundingDinoProcessor` by hand rather than through AutoProcessor.

Behaviour the paper leaves open, configurable here: box and text thresholds; the best box by score wins;
padding (a fraction of the box size on each side) and a minimum crop size; when no box clears the
threshold, or the best box is degenerate (zero area, outside the image), the whole image is used and the
result says so (`fallback=True`). On CPU the image processor resizes to a smaller short side
(`cpu_short_side`, default 400 px) so one call stays within a few seconds; boxes come back normalised and
are scaled to the original image, so downscaling never changes the coordinate frame.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from agent.events import Box
from agent.tools.base import Grounding

DEFAULT_MODEL = "IDEA-Research/grounding-dino-tiny"
MAX_EXPRESSION_CHARS = 300  # BERT sees at most 256 tokens; longer expressions are not referring expressions


@dataclass(frozen=True)
class GroundingSettings:
    model: str = DEFAULT_MODEL
    device: str = "auto"  # "auto" = cuda when available, else cpu
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    padding: float = 0.1  # fraction of the box's width/height added on each side
    min_size: int = 32  # crops smaller than this (px, each side) are grown around their centre
    cpu_short_side: int = 400  # image processor short side on CPU (the model's default is 800)
    cpu_long_side: int = 666

    def __post_init__(self) -> None:
        if not (0.0 <= self.box_threshold <= 1.0 and 0.0 <= self.text_threshold <= 1.0):
            raise ValueError("grounding thresholds must be in [0, 1]")
        if (
            self.padding < 0
            or self.min_size < 1
            or self.cpu_short_side < 32
            or self.cpu_long_side < self.cpu_short_side
        ):
            raise ValueError("padding >= 0, min_size >= 1, 32 <= cpu_short_side <= cpu_long_side")


def normalise_expression(expression: str) -> str:
    """Grounding DINO was trained on lower-case phrases ending with '.'."""
    text = " ".join(expression.split()).lower().strip(" .")
    return f"{text[:MAX_EXPRESSION_CHARS]}." if text else ""


def finalize_box(
    raw: tuple[float, float, float, float], width: int, height: int, *, padding: float, min_size: int
) -> Box | None:
    """Pad, grow to `min_size`, clip to the image and round outward to whole pixels.

    Returns None for a box that is not finite, inverted, of zero area, or entirely outside the image:
    the caller falls back to the whole image instead of cropping nothing.
    """
    x0, y0, x1, y1 = raw
    if not all(math.isfinite(v) for v in raw) or x1 <= x0 or y1 <= y0:
        return None
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return None
    pad_x, pad_y = (x1 - x0) * padding, (y1 - y0) * padding
    x0, y0, x1, y1 = x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y
    x0, x1 = _grow(x0, x1, min(min_size, width))
    y0, y1 = _grow(y0, y1, min(min_size, height))
    box = Box(max(0, math.floor(x0)), max(0, math.floor(y0)), min(width, math.ceil(x1)), min(height, math.ceil(y1)))
    return box if box.width > 0 and box.height > 0 else None


def _grow(lo: float, hi: float, size: float) -> tuple[float, float]:
    """Widen [lo, hi] to at least `size` around its centre, shifted to stay inside [0, ∞) where possible."""
    if hi - lo >= size:
        return lo, hi
    centre = (lo + hi) / 2
    lo, hi = centre - size / 2, centre + size / 2
    if lo < 0:
        lo, hi = 0.0, hi - lo
    return lo, hi


class GroundingDinoGrounder:
    """The Grounder the loop calls. Loads the model on first use (start-up stays fast) and never raises."""

    def __init__(self, settings: GroundingSettings = GroundingSettings()):
        self.settings = settings
        self.name = f"grounding-dino:{Path(settings.model).name if Path(settings.model).exists() else settings.model}"
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, str] | None = None  # (processor, model, device)
        self._load_error: str | None = None

    def load(self) -> tuple[Any, Any, str]:
        """(processor, model, device); raises RuntimeError with a clear message when loading fails."""
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            if self._load_error is not None:
                raise RuntimeError(self._load_error)
            try:
                self._loaded = _load(self.settings)
            except Exception as exc:  # no network, wrong path, corrupt weights: all end up as a tool error
                self._load_error = (
                    f"could not load grounding model {self.settings.model!r}: {type(exc).__name__}: {str(exc)[:300]}"
                )
                raise RuntimeError(self._load_error) from None
            return self._loaded

    def ground(self, image: Image.Image, expression: str) -> Grounding:
        start = time.monotonic()
        whole = Box(0, 0, image.width, image.height)
        text = normalise_expression(expression)
        if not text:
            return Grounding(
                whole,
                None,
                True,
                "",
                time.monotonic() - start,
                "empty referring expression: say what to crop, e.g. <img_search>the red car</img_search>",
            )
        if image.width < 1 or image.height < 1:
            return Grounding(
                whole, None, True, "", time.monotonic() - start, f"image has zero area ({image.width}x{image.height})"
            )
        try:
            processor, model, device = self.load()
            raw, score = self._detect(processor, model, device, image, text)
        except Exception as exc:
            return Grounding(whole, None, True, "", time.monotonic() - start, f"grounding failed: {exc}")
        s = self.settings
        if raw is None:
            note = f"no box for {text!r} scored above the box threshold {s.box_threshold:g}; searched the whole image"
            return Grounding(whole, None, True, note, time.monotonic() - start)
        box = finalize_box(raw, image.width, image.height, padding=s.padding, min_size=s.min_size)
        if box is None:
            shown = ", ".join(f"{v:.0f}" for v in raw)
            note = f"best box for {text!r} ({shown}) has zero area or lies outside the {image.width}x{image.height} image; searched the whole image"
            return Grounding(whole, score, True, note, time.monotonic() - start)
        note = f"{text!r} found with score {score:.2f}"
        return Grounding(box, score, False, note, time.monotonic() - start)

    def _detect(
        self, processor: Any, model: Any, device: str, image: Image.Image, text: str
    ) -> tuple[tuple[float, float, float, float] | None, float | None]:
        import torch

        rgb = image.convert("RGB") if image.mode != "RGB" else image
        encoded = processor(images=rgb, text=text, return_tensors="pt")
        # Pixel values follow the model's dtype (fp16 on GPU); token ids and masks keep theirs.
        dtype = next(model.parameters()).dtype
        inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in encoded.items()}
        with self._lock, torch.inference_mode():
            outputs = model(**inputs)
        results = processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.settings.box_threshold,
            text_threshold=self.settings.text_threshold,
            target_sizes=[(image.height, image.width)],  # boxes are normalised; scale to original pixels
        )[0]
        scores = results["scores"]
        if scores.numel() == 0:
            return None, None
        best = int(torch.argmax(scores))
        x0, y0, x1, y1 = (float(v) for v in results["boxes"][best].tolist())
        return (x0, y0, x1, y1), float(scores[best])


def _load(settings: GroundingSettings) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoTokenizer, GroundingDinoForObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    image_processor = GroundingDinoImageProcessorPil.from_pretrained(settings.model)
    own = dict(image_processor.size or {}).get("shortest_edge") or 800
    if device == "cpu" and own > settings.cpu_short_side:
        # Downscale on CPU (never upscale a checkpoint that already works at a smaller size).
        size = {"shortest_edge": settings.cpu_short_side, "longest_edge": settings.cpu_long_side}
        image_processor = GroundingDinoImageProcessorPil.from_pretrained(settings.model, size=size)
    tokenizer = AutoTokenizer.from_pretrained(settings.model)
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    model = GroundingDinoForObjectDetection.from_pretrained(settings.model, dtype=dtype).to(device).eval()
    return processor, model, device


# Small enough to build and run in well under a second; the layer counts are the smallest that build
# (decoder_layers=1 raises a tie-weights error in transformers 5).
TINY_WORDS = (
    "a an the of on in at with and left right top bottom red blue green black white small large "
    "person man woman dog cat car bird tree building sign tower bridge boat flower face logo text animal"
).split()


def write_tiny_grounding(out_dir: Path) -> Path:
    """Save a tiny random Grounding DINO + local BERT tokenizer + PIL image processor to `out_dir`.

    Loadable with `GroundingSettings(model=str(out_dir))`, i.e. `--grounding-model OUT_DIR`, through the
    very same `_load` as the real checkpoint. Returns `out_dir`.
    """
    import torch
    from transformers import BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials + [".", ","] + TINY_WORDS)}
    # transformers 5 ignores vocab_file= on BertTokenizer; the vocab must be passed as a dict.
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    config = GroundingDinoConfig(
        backbone_config={
            "model_type": "swin",
            "embed_dim": 24,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 2, 3, 6],
            "window_size": 7,
            "out_indices": [2, 3, 4],
            "out_features": ["stage2", "stage3", "stage4"],
        },
        text_config={
            "model_type": "bert",
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 256,
        },
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=30,
        max_text_len=256,
    )
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(out_dir)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 224, "longest_edge": 384})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir
