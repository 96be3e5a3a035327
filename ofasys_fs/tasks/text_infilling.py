"""Task "text_infilling": BART-style denoising: restore a sentence whose spans were masked (train split only)."""
from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("text_infilling")
class TextInfilling(Task):
    """Masked sentence -> the sentence (the seed README's second task; the same column feeds both sides)."""

    family = "text"
    default_instruction = 'what is the complete text of " [TEXT:sentence,mask_ratio=0.3] "? -> [TEXT:sentence]'
    default_metric = "rouge"
    default_generation = GenerationConfig(max_len_b=128, no_repeat_ngram_size=0)  # a copy may repeat n-grams
