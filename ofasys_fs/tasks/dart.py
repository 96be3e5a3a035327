"""Task "dart": table-to-text generation from (subject, relation, object) triples (DART)."""
from ..registry import register_task
from .base import Task


@register_task("dart")
class DART(Task):
    """Triples (a STRUCT table of 3-cell rows) -> a sentence describing them; sacreBLEU against the references."""

    family = "tables"
    default_instruction = ('<BOS> structured knowledge: " [STRUCT:database,uncased] "  . how to describe the '
                           'tripleset ? <EOS> -> <BOS> [TEXT:tgt] <EOS>')
    default_metric = "sacrebleu"
    default_generation = {"beam": 5, "max_len_b": 100, "no_repeat_ngram_size": 3}
