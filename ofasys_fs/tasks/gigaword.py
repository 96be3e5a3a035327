"""Task "gigaword": abstractive summarisation of a news sentence (Gigaword), OFA's decoding."""
from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("gigaword")
class Gigaword(Task):
    """Article -> headline-style summary; ROUGE (headline ROUGE-L)."""

    family = "text"
    default_instruction = '<BOS> what is the summary of article " [TEXT:src] "? <EOS> -> <BOS> [TEXT:tgt] <EOS>'
    default_metric = "rouge"
    default_generation = GenerationConfig(beam=6, lenpen=0.7, max_len_b=32, no_repeat_ngram_size=3)
