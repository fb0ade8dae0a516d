"""Full-size Qwen2.5-VL-7B architecture on a GPU: build time, peak memory, time to first token, decode speed.

Builds the model from Qwen2.5-VL-7B-Instruct's public config with random bf16 weights directly on the GPU
(no download: weights are random, the cost of every kernel is real), then runs one image turn of 512
new tokens through our TransformersBackend.stream (the path the app and CLI use). Random weights make the
text meaningless; EOS is disabled so the turn always decodes exactly 512 tokens.

Without a CUDA GPU it prints a `skipped` line and exits 0. `--scale tiny` runs the same code on the tiny
config on CPU, to check the script itself. Prints its figures last as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Qwen/Qwen2.5-VL-7B-Instruct config.json (public), the values that shape compute and memory.
QWEN25_VL_7B_TEXT = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    "tie_word_embeddings": False,
}
QWEN25_VL_7B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
}


def build(scale: str, device: str):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from agent.models.qwen_processor import QwenVLImageProcessor
    from agent.models.tiny import QWEN_SPECIAL_TOKENS, QWEN_VL_CHAT_TEMPLATE, build_tiny_tokenizer, build_tiny_vlm

    if scale == "tiny":
        model, processor = build_tiny_vlm()
        return model.to(device), processor, torch.float32
    tokenizer = build_tiny_tokenizer()
    # Pad the local tokenizer to the real vocabulary so every id the random model emits decodes.
    tokenizer.add_tokens([f"<t{i}>" for i in range(QWEN25_VL_7B_TEXT["vocab_size"] - len(tokenizer))])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(QWEN25_VL_7B_TEXT, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=QWEN25_VL_7B_VISION,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    dtype = torch.bfloat16
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 3136, "longest_edge": 1280 * 28 * 28})
    processor = QwenVLImageProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_VL_CHAT_TEMPLATE
    )
    return model.eval(), processor, dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=["7b", "tiny"], default="7b")
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=672, help="square input image side in pixels")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from agent.models.transformers_backend import TransformersBackend

    cuda = torch.cuda.is_available()
    if args.scale == "7b" and not cuda:
        print(json.dumps({"bench": "model_7b", "skipped": "no CUDA GPU: run it where a GPU is lent (see README)"}))
        return
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model, processor, dtype = build(args.scale, device)
    if cuda:
        torch.cuda.synchronize()
    build_s = time.perf_counter() - start
    model.generation_config.eos_token_id = None  # random weights: never stop early
    backend = TransformersBackend.from_loaded(model, processor, f"qwen2.5-vl-{args.scale}-random")
    image = Image.new("RGB", (args.image_size, args.image_size), (200, 30, 30))
    messages = [
        {"role": "system", "content": "You are a research assistant."},
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "Question: what is shown here?"}],
        },
    ]
    vision_tokens = int((backend.prepare(messages)["input_ids"] == processor.image_token_id).sum())
    # Warm-up turn: CUDA kernels, allocator.
    list(backend.stream(messages, max_new_tokens=8, stop=[]))
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    for delta in backend.stream(messages, max_new_tokens=args.new_tokens, stop=[]):
        now = time.perf_counter()
        if first is None and delta.tokens:
            first = now
        tokens += delta.tokens
        last = now
    figures = {
        "bench": "model_7b",
        "scale": args.scale,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "build_s": round(build_s, 2),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "image_px": f"{args.image_size}x{args.image_size}",
        "vision_tokens": vision_tokens,
        "time_to_first_token_s": round(first - t0, 3),
        "new_tokens": tokens,
        "decode_tokens_per_s": round((tokens - 1) / (last - first), 1) if tokens > 1 and last > first else None,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
