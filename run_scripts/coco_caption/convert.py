"""COCO captions on the Karpathy split -> shards for the built-in task "caption" (columns img, cap, image_id).

Input: `dataset_coco.json` of Karpathy & Fei-Fei (CVPR 2015), from caption_datasets.zip
(https://cs.stanford.edu/people/karpathy/deepimagesent/), and the COCO 2014 image folders:

    {"dataset": "coco",
     "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "imgid": 0,
                 "split": "test", "cocoid": 391895, "sentids": [770337, ...],
                 "sentences": [{"tokens": ["a", "man", "with", ...], "raw": "A man with a red helmet on a small moped
                                on a dirt road. ", "imgid": 0, "sentid": 770337}, ...]}, ...]}

Images are read from IMAGE_ROOT/<filepath>/<filename>. Splits: train = Karpathy "train" + "restval" (the
113k training images OFA uses), one row per caption as OFA's caption_stage1_train.tsv; valid = "val" and
test = "test" (5k images each), one row per image with every raw caption as references.
"""
import argparse
import os
import sys
from collections.abc import Iterator
from typing import Union

from run_scripts.common.convert_lib import (ConversionError, Converter, MediaReader, Skip, field, read_json,
                                            reference_rows, split_role)

KARPATHY_SPLITS = {"train": ("train", "restval"), "valid": ("val",), "test": ("test",)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--karpathy-json", required=True, help="dataset_coco.json")
    parser.add_argument("--image-root", required=True, help="folder holding COCO's train2014/ and val2014/")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[Union[dict, Skip]]:
    wanted = KARPATHY_SPLITS[split_role(args.split)]
    images = field(read_json(args.karpathy_json), "images", args.karpathy_json)
    for index, image in enumerate(images):
        where = f"{args.karpathy_json}, images[{index}]"
        if field(image, "split", where) not in wanted:
            continue
        sentences = field(image, "sentences", where)
        captions = [field(sentence, "raw", f"{where}.sentences").strip() for sentence in sentences]
        if not captions:
            raise ConversionError(f"{where}: the image has no sentences")
        path = os.path.join(args.image_root, field(image, "filepath", where), field(image, "filename", where))
        row = {"img": media(path, where), "image_id": field(image, "cocoid", where)}
        yield from reference_rows(row, "cap", captions, args.split)


CONVERTER = Converter("coco_caption/convert.py", __doc__, add_arguments, read_rows, "caption")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
