"""Task "dart": table-to-text generation from (subject, relation, object) triples (DART)."""
from ..registry import register_task
from .table_to_text import TableToTextTask


@register_task("dart")
class DART(TableToTextTask):
    """Triples (a STRUCT table of 3-cell rows) -> a sentence describing them; sacreBLEU against the references."""

    default_instruction = ('<BOS> structured knowledge: " [STRUCT:database,uncased] "  . how to describe the '
                           'tripleset ? <EOS> -> <BOS> [TEXT:tgt] <EOS>')
