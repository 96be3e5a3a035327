"""MSRVTT-QA -> shards for the built-in task "video_qa" (columns video, question, answer, qa_id).

Input: the MSRVTT-QA release (Xu et al., ACM MM 2017, https://github.com/xudejing/video-question-answering):
train_qa.json, val_qa.json, test_qa.json over the MSR-VTT clips video<video_id>.mp4:

    [{"answer": "man", "category_id": 0, "id": 0, "question": "who is talking?", "video_id": 0}, ...]

One row per question. The closed answer set is chosen by the train conversion as the --answer-set-size
most frequent training answers (1,000 by default, the usual MSRVTT-QA setting) and saved as answers.txt;
train/valid questions whose answer is outside it are skipped (counted), test questions are all kept
(an answer outside the set counts as wrong, as in the published protocol).
"""
import argparse
import os
import sys
from collections.abc import Iterator
from typing import Union

from run_scripts.common.convert_lib import AnswerSet, ConversionError, Converter, MediaReader, Skip, field, read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--qa", required=True, help="train_qa.json, val_qa.json or test_qa.json")
    parser.add_argument("--video-dir", required=True, help="folder of the MSR-VTT clips video<id>.mp4")
    parser.add_argument("--answer-set-size", type=int, default=1000, help="train split: closed answer set size")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[Union[dict, Skip]]:
    records = read_json(args.qa)
    if not isinstance(records, list):
        raise ConversionError(f"{args.qa}: expected a JSON list of questions, got {type(records).__name__}")
    answer_set = AnswerSet.for_split(args.destdir, args.split, lambda: (field(r, "answer", args.qa) for r in records),
                                     args.answer_set_size)
    for index, record in enumerate(records):
        where = f"{args.qa}, question {index}"
        answers = answer_set.targets([field(record, "answer", where)], args.split)
        if isinstance(answers, Skip):
            yield answers
            continue
        video = media(os.path.join(args.video_dir, f"video{field(record, 'video_id', where)}.mp4"), where)
        yield {"video": video, "question": field(record, "question", where), "answer": answers[0],
               "qa_id": field(record, "id", where)}


CONVERTER = Converter("msrvtt_qa/convert.py", __doc__, add_arguments, read_rows, "video_qa")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
