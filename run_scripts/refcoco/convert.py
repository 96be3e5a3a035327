"""RefCOCO, RefCOCO+ and RefCOCOg -> shards for the built-in task "refcoco" (columns img, cap, patch_boxes,
ref_id, sent_id, image_id).

Input: the refer toolkit's release (Yu et al. 2016, Mao et al. 2016; https://github.com/lichengunc/refer,
data/refcoco.zip, refcoco+.zip, refcocog.zip), and the COCO train2014 images:

    refs(unc).p (refcoco, refcoco+) or refs(umd).p (refcocog): a Python 2 pickle of a list of
        {"ref_id": 0, "ann_id": 1719310, "image_id": 581857, "category_id": 1, "split": "train",
         "file_name": "COCO_train2014_000000581857_16.jpg", "sent_ids": [0, 1, 2],
         "sentences": [{"tokens": ["the", "lady", ...], "raw": "THE LADY ...", "sent_id": 0,
                        "sent": "the lady with the blue shirt"}, ...]}
    instances.json: COCO-style {"images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg",
        "width": 640, "height": 427}, ...], "annotations": [{"id": 1719310, "image_id": 581857,
        "bbox": [x, y, width, height], "category_id": 1, ...}, ...], "categories": [...]}

The pickle is read with ofasys_fs.data.safe_pickle (plain data only: a pickle that names any callable is
refused before anything runs). One row per referring sentence, as OFA's refcoco_*.tsv; the box is the
referred annotation's bbox as [x0, y0, x1, y1] pixels. Splits: train, valid (= "val"), testA, testB
(refcoco, refcoco+) and test (refcocog umd).
"""
import argparse
import os
import sys
from collections.abc import Iterator

from ofasys_fs.data.safe_pickle import safe_load
from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, field, read_json

REFER_SPLIT_NAMES = {"valid": "val"}  # shard split -> the refs' "split" value (others are the same name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--refs", required=True, help="refs(unc).p or refs(umd).p")
    parser.add_argument("--instances", required=True, help="instances.json of the same release")
    parser.add_argument("--image-dir", required=True, help="COCO's train2014/ folder")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    refs = safe_load(args.refs)
    if not isinstance(refs, list):
        raise ConversionError(f"{args.refs}: expected a list of refs, got {type(refs).__name__}")
    instances = read_json(args.instances)
    images = {field(image, "id", args.instances): image for image in field(instances, "images", args.instances)}
    boxes = {field(ann, "id", args.instances): field(ann, "bbox", args.instances)
             for ann in field(instances, "annotations", args.instances)}
    wanted = REFER_SPLIT_NAMES.get(args.split, args.split)
    for index, ref in enumerate(refs):
        where = f"{args.refs}, ref {index}"
        if field(ref, "split", where) != wanted:
            continue
        image_id, ann_id = field(ref, "image_id", where), field(ref, "ann_id", where)
        if image_id not in images or ann_id not in boxes:
            raise ConversionError(f"{where}: image {image_id} or annotation {ann_id} is not in {args.instances}")
        x, y, width, height = boxes[ann_id]
        image = media(os.path.join(args.image_dir, images[image_id]["file_name"]), where)
        for sentence in field(ref, "sentences", where):
            yield {"img": image, "cap": field(sentence, "sent", where), "patch_boxes": [x, y, x + width, y + height],
                   "ref_id": field(ref, "ref_id", where), "sent_id": field(sentence, "sent_id", where),
                   "image_id": image_id}


CONVERTER = Converter("refcoco/convert.py", __doc__, add_arguments, read_rows, "refcoco")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
