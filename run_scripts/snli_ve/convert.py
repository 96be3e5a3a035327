"""SNLI-VE -> shards for the built-in task "snli_ve" (columns img, cap, hyp, label, pair_id).

Input: the SNLI-VE release (Xie et al. 2019, https://github.com/necla-ml/SNLI-VE): snli_ve_train.jsonl,
snli_ve_dev.jsonl, snli_ve_test.jsonl, one SNLI record per line with the Flickr30k image named under the
(misspelt, as published) key "Flikr30kID"; images from Flickr30k's flickr30k_images/ folder:

    {"annotator_labels": ["neutral"], "captionID": "3416050480.jpg#4", "gold_label": "neutral",
     "pairID": "3416050480.jpg#4r1n", "sentence1": "A person on a horse jumps over a broken down airplane.",
     "sentence2": "A person is training his horse for a competition.", "Flikr30kID": "3416050480.jpg", ...}

One row per line. As OFA (data/mm_data/snli_ve_dataset.py) the premise caption is given too (--add-caption)
and the labels are the words entailment -> yes, neutral -> maybe, contradiction -> no. A line whose
gold_label is none of the three (SNLI's "-": no annotator consensus) is skipped and counted.
"""
import argparse
import os
import sys
from collections.abc import Iterator
from typing import Union

from run_scripts.common.convert_lib import Converter, MediaReader, Skip, field, read_jsonl

LABEL_WORDS = {"entailment": "yes", "neutral": "maybe", "contradiction": "no"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jsonl", required=True, help="snli_ve_<split>.jsonl")
    parser.add_argument("--image-dir", required=True, help="Flickr30k's flickr30k_images/ folder")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[Union[dict, Skip]]:
    for where, record in read_jsonl(args.jsonl):
        label = LABEL_WORDS.get(field(record, "gold_label", where))
        if label is None:
            yield Skip(f"gold_label {record['gold_label']!r} is not entailment, neutral or contradiction")
            continue
        yield {"img": media(os.path.join(args.image_dir, field(record, "Flikr30kID", where)), where),
               "cap": field(record, "sentence1", where), "hyp": field(record, "sentence2", where), "label": label,
               "pair_id": field(record, "pairID", where)}


CONVERTER = Converter("snli_ve/convert.py", __doc__, add_arguments, read_rows, "snli_ve")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
