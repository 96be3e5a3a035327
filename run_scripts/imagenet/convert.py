"""ImageNet-style class folders -> shards for the built-in task "image_classify" (columns image, label_name,
class_id).

Input: the torchvision ImageFolder layout of ILSVRC-2012 (Russakovsky et al. 2015; train/ as unpacked from
ILSVRC2012_img_train.tar, val/ after sorting the 50,000 validation images into class folders), or any
dataset laid out the same way:

    ROOT/n01440764/n01440764_10026.JPEG
    ROOT/n01443537/...

and optionally the class names as in Kaggle's ILSVRC release, LOC_synset_mapping.txt:

    n01440764 tench, Tinca tinca
    n01443537 goldfish, Carassius auratus

One row per image (.jpeg/.jpg/.png, any case), folders and files in sorted order. The label is the first
name of the folder's line in --class-names (OFA generates the class name, as here), else the folder name.
"""
import argparse
import os
import sys
from collections.abc import Iterator
from typing import Optional

from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, read_lines

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="folder with one subfolder of images per class")
    parser.add_argument("--class-names", help="LOC_synset_mapping.txt: '<folder> <name>[, <synonym> ...]' per line")


def class_names(path: Optional[str]) -> dict[str, str]:
    names = {}
    for where, line in read_lines(path) if path else ():
        folder, _, synonyms = line.strip().partition(" ")
        if folder:
            if not synonyms.strip():
                raise ConversionError(f"{where}: expected '<class folder> <name>[, <synonym> ...]', got {line!r}")
            names[folder] = synonyms.split(",")[0].strip()
    return names


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    if not os.path.isdir(args.root):
        raise ConversionError(f"{args.root} is not a folder")
    names = class_names(args.class_names)
    folders = sorted(entry.name for entry in os.scandir(args.root) if entry.is_dir())
    if not folders:
        raise ConversionError(f"{args.root}: no class folders")
    for folder in folders:
        if names and folder not in names:
            raise ConversionError(f"{args.root}/{folder}: the class is not in {args.class_names}")
        for name in sorted(os.listdir(os.path.join(args.root, folder))):
            if name.lower().endswith(IMAGE_SUFFIXES):
                path = os.path.join(args.root, folder, name)
                yield {"image": media(path, path), "label_name": names.get(folder, folder), "class_id": folder}


CONVERTER = Converter("imagenet/convert.py", __doc__, add_arguments, read_rows, "image_classify")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
