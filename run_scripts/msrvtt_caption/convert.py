"""MSR-VTT video captioning -> shards for the built-in task "video_caption" (columns video, cap, video_id).

Input: the MSR-VTT release (Xu et al., CVPR 2016): train_val_videodatainfo.json and test_videodatainfo.json
with the clips as <video_id>.mp4 in one folder (TrainValVideo/, TestVideo/):

    {"info": {...}, "videos": [{"category": 9, "url": "https://www.youtube.com/watch?v=9lZi22qLlEo",
       "video_id": "video0", "start time": 137.72, "end time": 149.44, "split": "train", "id": 0}, ...],
     "sentences": [{"caption": "a car is shown", "video_id": "video0", "sen_id": 0}, ...]}

Splits as published: train (6,513 clips), valid = "validate" (497), test (2,990). Train: one row per
caption (20 per clip); valid/test: one row per clip with its captions as references (CIDEr-D).
"""
import argparse
import collections
import os
import sys
from collections.abc import Iterator

from run_scripts.common.convert_lib import (
    ConversionError,
    Converter,
    MediaReader,
    field,
    read_json,
    reference_rows,
    split_role,
)

MSRVTT_SPLITS = {"train": "train", "valid": "validate", "test": "test"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videodatainfo", required=True,
                        help="train_val_videodatainfo.json or test_videodatainfo.json")
    parser.add_argument("--video-dir", required=True, help="folder of <video_id>.mp4 clips")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    info = read_json(args.videodatainfo)
    captions = collections.defaultdict(list)
    for index, sentence in enumerate(field(info, "sentences", args.videodatainfo)):
        where = f"{args.videodatainfo}, sentences[{index}]"
        captions[field(sentence, "video_id", where)].append(field(sentence, "caption", where))
    wanted = MSRVTT_SPLITS[split_role(args.split)]
    for index, video in enumerate(field(info, "videos", args.videodatainfo)):
        where = f"{args.videodatainfo}, videos[{index}]"
        if field(video, "split", where) != wanted:
            continue
        video_id = field(video, "video_id", where)
        if not captions[video_id]:
            raise ConversionError(f"{where}: video {video_id!r} has no sentences")
        row = {"video": media(os.path.join(args.video_dir, f"{video_id}.mp4"), where), "video_id": video_id}
        yield from reference_rows(row, "cap", captions[video_id], args.split)


CONVERTER = Converter("msrvtt_caption/convert.py", __doc__, add_arguments, read_rows, "video_caption")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
