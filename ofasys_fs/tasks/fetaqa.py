"""Task "fetaqa": free-form table question answering (FeTaQA)."""
from ..registry import register_task
from .table_to_text import TableToTextTask


@register_task("fetaqa")
class FeTaQA(TableToTextTask):
    """Table ({"header", "rows"} or rows) + question -> a sentence answer; sacreBLEU."""

    default_instruction = ('structured knowledge: " [STRUCT:database,uncased] "  . what is the answer of the '
                           'question " [TEXT:src] " ? -> [TEXT:tgt]')
