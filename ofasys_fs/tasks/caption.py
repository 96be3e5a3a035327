"""Task "caption": image captioning (COCO) with the seed README's instruction and OFA's decoding."""
from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task

CAPTION_DECODING = GenerationConfig(max_len_b=16, no_repeat_ngram_size=3)  # OFA's COCO caption evaluation


@register_task("caption")
class Caption(Task):
    """Image -> caption. `cap` may be a list of references: training draws one per sample, CIDEr-D scores all."""

    family = "image_text"
    default_instruction = "[IMAGE:img] <BOS> what does the image describe? <EOS> -> <BOS> [TEXT:cap] <EOS>"
    default_metric = "cider"
    default_generation = CAPTION_DECODING
