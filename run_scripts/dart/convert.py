"""DART -> shards for the built-in task "dart" (columns database, tgt).

Input: the DART release (Nan et al., NAACL 2021, https://github.com/Yale-LILY/dart, data/v1.1.1/
dart-v1.1.1-full-{train,dev,test}.json): a JSON list of triple sets with their reference sentences:

    [{"tripleset": [["Mars Hill College", "JOINED", "1973"],
                    ["Mars Hill College", "LOCATION", "Mars Hill, North Carolina"]],
      "subtree_was_extended": false,
      "annotations": [{"source": "WikiSQL_decl_sents",
                       "text": "A school from Mars Hill, North Carolina, joined in 1973."}]}, ...]

`database` is the triple set as a STRUCT table of [subject, relation, object] rows. Train: one row per
annotation; valid/test: one row per triple set with every annotation's text as references (sacreBLEU).
"""
import argparse
import sys
from collections.abc import Iterator

from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, field, read_json, reference_rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, help="dart-v1.1.1-full-<split>.json")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    records = read_json(args.json)
    if not isinstance(records, list):
        raise ConversionError(f"{args.json}: expected a JSON list of triple sets, got {type(records).__name__}")
    for index, record in enumerate(records):
        where = f"{args.json}, record {index}"
        triples = field(record, "tripleset", where)
        if not all(isinstance(triple, list) and len(triple) == 3 for triple in triples):
            raise ConversionError(f"{where}: 'tripleset' must be a list of [subject, relation, object] triples")
        texts = [field(annotation, "text", where) for annotation in field(record, "annotations", where)]
        if not texts:
            raise ConversionError(f"{where}: the triple set has no annotations")
        yield from reference_rows({"database": triples}, "tgt", texts, args.split)


CONVERTER = Converter("dart/convert.py", __doc__, add_arguments, read_rows, "dart")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
