"""FeTaQA -> shards for the built-in task "fetaqa" (columns database, src, tgt, feta_id).

Input: the FeTaQA release (Nan et al., TACL 2022, https://github.com/Yale-LILY/FeTaQA, data/
fetaQA-v1_{train,dev,test}.jsonl), one example per line, the table as an array whose first row is the header:

    {"feta_id": 18162, "page_wikipedia_url": "http://en.wikipedia.org/wiki/Colin_Kaepernick",
     "table_source_json": "totto_source/train_json/example-10461.json", "table_page_title": "Colin Kaepernick",
     "table_section_title": "Professional statistics",
     "table_array": [["Year", "Team", "Games", ...], ["2011", "SF", "3", ...], ...],
     "highlighted_cells_idx": [[5, 3], ...], "question": "How many passing yards did Kaepernick ...?",
     "answer": "Colin Kaepernick threw for 2,763 yards ...", "source": "mturk-approved"}

One row per example; `database` is {"header": table_array[0], "rows": table_array[1:]}.
"""
import argparse
import sys
from collections.abc import Iterator

from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, field, read_jsonl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jsonl", required=True, help="fetaQA-v1_<split>.jsonl")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    for where, record in read_jsonl(args.jsonl):
        table = field(record, "table_array", where)
        if not isinstance(table, list) or not table or not all(isinstance(row, list) for row in table):
            raise ConversionError(f"{where}: 'table_array' must be a non-empty list of rows, the header first")
        yield {"database": {"header": table[0], "rows": table[1:]}, "src": field(record, "question", where),
               "tgt": field(record, "answer", where), "feta_id": field(record, "feta_id", where)}


CONVERTER = Converter("fetaqa/convert.py", __doc__, add_arguments, read_rows, "fetaqa")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
