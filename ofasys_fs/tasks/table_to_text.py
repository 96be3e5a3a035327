"""The base of the tasks that read a table and write free text (dart, fetaqa)."""
from ..generators.config import GenerationConfig
from .base import Task


class TableToTextTask(Task):
    """A STRUCT table in, a sentence out: sacreBLEU, decoded as OFA does (beam 5, at most 100 tokens, no repeated
    3-grams). Shared so that the table-to-text tasks keep one decoding recipe."""

    family = "tables"
    default_metric = "sacrebleu"
    default_generation = GenerationConfig(max_len_b=100, no_repeat_ngram_size=3)
