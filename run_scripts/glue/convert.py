"""GLUE -> shards for the built-in tasks cola, sst2, mrpc, qqp, mnli, qnli, rte (label words as the tasks'
closed answer sets).

Input: the GLUE data (Wang et al., ICLR 2019, https://gluebenchmark.com/tasks, as written by
download_glue_data.py): tab-separated files, no quoting, one folder per task:

    CoLA/train.tsv, dev.tsv    no header: source  label(0/1)  original-judgement  sentence
                               e.g. "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose."
    SST-2/*.tsv                sentence  label(0/1)
    MRPC/*.tsv                 Quality(0/1)  #1 ID  #2 ID  #1 String  #2 String
    QQP/*.tsv                  id  qid1  qid2  question1  question2  is_duplicate(0/1)
    MNLI/train.tsv, dev_matched.tsv, dev_mismatched.tsv
                               index promptID pairID genre sentence1_binary_parse ... sentence1 sentence2
                               label1 [... label5] gold_label(entailment/neutral/contradiction)
    QNLI/*.tsv                 index  question  sentence  label(entailment/not_entailment)
    RTE/*.tsv                  index  sentence1  sentence2  label(entailment/not_entailment)
    <task>/test.tsv            the same text columns with a header and an index, without labels

One row per line; the label becomes the task's word (e.g. mnli: yes / maybe / no), None in test files.
A line with another number of fields than the header (a few in QQP's train.tsv) is skipped and counted.
"""
import argparse
import dataclasses
import sys
from collections.abc import Iterator
from typing import Optional, Union

import ofasys_fs.tasks  # noqa: F401  (registers the GLUE tasks, whose label words are used)
from ofasys_fs.registry import TASK_REGISTRY
from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, Skip, read_lines

BINARY = {"0": 0, "1": 1}
ENTAILMENT = {"entailment": 0, "not_entailment": 1}


@dataclasses.dataclass(frozen=True)
class GlueFormat:
    """A GLUE task's tsv: which header holds each task column and the label, and label value -> class index
    (the index into the task's label_words). `headerless`: field names of files written without a header."""

    columns: dict
    label: str
    classes: dict
    headerless: Optional[tuple] = None


FORMATS = {
    "cola": GlueFormat({"sentence": "sentence"}, "label", BINARY, ("source", "label", "judgement", "sentence")),
    "sst2": GlueFormat({"sentence": "sentence"}, "label", BINARY),
    "mrpc": GlueFormat({"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality", BINARY),
    "qqp": GlueFormat({"question1": "question1", "question2": "question2"}, "is_duplicate", BINARY),
    "mnli": GlueFormat({"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label",
                       {"entailment": 0, "neutral": 1, "contradiction": 2}),
    "qnli": GlueFormat({"question": "question", "sentence": "sentence"}, "label", ENTAILMENT),
    "rte": GlueFormat({"sentence1": "sentence1", "sentence2": "sentence2"}, "label", ENTAILMENT),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=sorted(FORMATS), help="the GLUE task")
    parser.add_argument("--tsv", required=True, help="the task's train.tsv / dev.tsv / test.tsv")


def header_of(fmt: GlueFormat, first: list[str], where: str) -> tuple[list[str], bool]:
    """(field names, whether the first line is a header) of a file whose first line is `first`."""
    if fmt.headerless and len(first) == len(fmt.headerless) and first[0] != "index":
        return list(fmt.headerless), False
    missing = [name for name in fmt.columns.values() if name not in first]
    if missing:
        raise ConversionError(f"{where}: the header {first} lacks the column(s) {missing} of this GLUE task")
    return first, True


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[Union[dict, Skip]]:
    fmt, label_words = FORMATS[args.task], TASK_REGISTRY.get(args.task).cls.label_words
    lines = read_lines(args.tsv)
    first = next(lines, None)
    if first is None:
        raise ConversionError(f"{args.tsv} is empty")
    names, has_header = header_of(fmt, first[1].lstrip("\ufeff").split("\t"), first[0])  # some files start with a BOM
    for where, line in lines if has_header else [first, *lines]:
        values = line.split("\t")
        if len(values) != len(names):
            yield Skip(f"a line has a different number of tab-separated fields than the header ({len(names)})")
            continue
        record = dict(zip(names, values))
        label = record.get(fmt.label)
        if label is not None and label not in fmt.classes:
            raise ConversionError(f"{where}: label {label!r} is not one of {sorted(fmt.classes)}")
        yield {**{column: record[name] for column, name in fmt.columns.items()},
               "label": None if label is None else label_words[fmt.classes[label]]}


CONVERTER = Converter("glue/convert.py", __doc__, add_arguments, read_rows, lambda args: args.task)

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
