"""Task "fetaqa": free-form table question answering (FeTaQA)."""
from ..registry import register_task
from .base import Task


@register_task("fetaqa")
class FeTaQA(Task):
    """Table ({"header", "rows"} or rows) + question -> a sentence answer; sacreBLEU."""

    family = "tables"
    default_instruction = ('structured knowledge: " [STRUCT:database,uncased] "  . what is the answer of the '
                           'question " [TEXT:src] " ? -> [TEXT:tgt]')
    default_metric = "sacrebleu"
    default_generation = {"beam": 5, "max_len_b": 100, "no_repeat_ngram_size": 3}
