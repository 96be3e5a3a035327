"""Gigaword headline generation -> shards for the built-in task "gigaword" (columns src, tgt).

Input: the sentence-summary pairs of Rush et al. (EMNLP 2015), in the line-aligned plain-text release that
UniLM and OFA use (https://github.com/microsoft/unilm, org_data/: train.src.txt / train.tgt.txt,
dev.src.txt / dev.tgt.txt, test.src.txt / test.tgt.txt; harvardnlp's sumdata *.article.txt / *.title.txt
have the same layout): line i of the source file is an article's first sentence, line i of the target
file its headline, tokenised and lowercased, numbers as '#' and rare words as '<unk>':

    train.src.txt: australia 's current account deficit shrunk by a record #.## billion dollars ...
    train.tgt.txt: australian current account deficit narrows sharply

One row per line pair. As OFA (data/nlg_data/summary_dataset.py) '<unk>' becomes 'unk'.
"""
import argparse
import itertools
import sys
from collections.abc import Iterator

from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, read_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="the article file (e.g. train.src.txt)")
    parser.add_argument("--target", required=True, help="the headline file, line-aligned (e.g. train.tgt.txt)")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    for source, target in itertools.zip_longest(read_lines(args.source), read_lines(args.target)):
        if source is None or target is None:
            raise ConversionError(f"{(source or target)[0]}: {args.source} and {args.target} must have one line per "
                                  f"example, but this line has no partner in the other file")
        yield {"src": source[1].strip().replace("<unk>", "unk"), "tgt": target[1].strip().replace("<unk>", "unk")}


CONVERTER = Converter("gigaword/convert.py", __doc__, add_arguments, read_rows, "gigaword")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
