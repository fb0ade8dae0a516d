"""A Qwen2-VL / Qwen2.5-VL processor that needs no torchvision.

Why this exists: in transformers 5 the stock `Qwen2_5_VLProcessor` (and `AutoProcessor`) require a video
processor, and every video processor imports torchvision, which has no CPU build matching our torch
(huggingface/transformers#48558). `AutoProcessor.from_pretrained` on such a directory silently returns a
bare tokenizer instead. This subclass keeps only the image processor (PIL backend) and the tokenizer, so
the same class loads both a hub checkpoint and our tiny local one.
"""

from __future__ import annotations

from transformers import AutoTokenizer
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin


class QwenVLImageProcessor(Qwen2_5_VLProcessor):
    """Qwen-VL processor for images and text only (no video)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.image_token
        )
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.video_token
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    @classmethod
    def load(
        cls, path: str, *, min_pixels: int | None = None, max_pixels: int | None = None, **hub_kwargs
    ) -> QwenVLImageProcessor:
        """Load from a hub id or directory; `min_pixels`/`max_pixels` bound the image resize."""
        size_kwargs = {}
        if min_pixels is not None or max_pixels is not None:
            base = Qwen2VLImageProcessorPil.from_pretrained(path, **hub_kwargs)
            size_kwargs["size"] = {
                "shortest_edge": min_pixels if min_pixels is not None else base.size.shortest_edge,
                "longest_edge": max_pixels if max_pixels is not None else base.size.longest_edge,
            }
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, **size_kwargs, **hub_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs)
        chat_template = getattr(tokenizer, "chat_template", None)
        try:
            processor_template = cls.from_pretrained(path, **hub_kwargs).chat_template
        except Exception:  # older layouts keep the template only in the tokenizer config
            processor_template = None
        return cls(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=processor_template or chat_template
        )


def load_processor(path: str, *, min_pixels: int | None = None, max_pixels: int | None = None) -> ProcessorMixin:
    """The processor of any image-text model folder or hub id: ours for Qwen2-VL and Qwen2.5-VL (whose own needs
    torchvision), transformers' AutoProcessor otherwise. Errors are the library's; callers word them."""
    from transformers import AutoConfig, AutoProcessor

    if AutoConfig.from_pretrained(path).model_type in ("qwen2_vl", "qwen2_5_vl"):
        return QwenVLImageProcessor.load(path, min_pixels=min_pixels, max_pixels=max_pixels)
    return AutoProcessor.from_pretrained(path)
