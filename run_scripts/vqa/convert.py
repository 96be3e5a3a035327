"""VQA v2 -> shards for the built-in task "vqa" (columns image, question, answer, question_id).

Input: the official VQA v2 release (Goyal et al. 2017, https://visualqa.org/download.html) and the COCO
image folders (train2014/, val2014/, test2015/):

    v2_OpenEnded_mscoco_<subtype>_questions.json:
        {"info": {...}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "train2014",
         "license": {...}, "questions": [{"image_id": 458752, "question": "What is this photo taken looking
         through?", "question_id": 458752000}, ...]}
    v2_mscoco_<subtype>_annotations.json (not for test2015 / test-dev2015):
        {"info": {...}, "data_subtype": "train2014", "annotations": [{"question_id": 458752000,
         "image_id": 458752, "question_type": "what is this", "answer_type": "other",
         "multiple_choice_answer": "net", "answers": [{"answer": "net", "answer_confidence": "maybe",
         "answer_id": 1}, ...10 answers]}, ...]}

Images: IMAGE_DIR/COCO_<data_subtype>_<image_id, 12 digits>.jpg. One row per question. The closed answer
set (OFA: the 3,129 answers of trainval_ans2label.pkl) is chosen by the train conversion as the
--answer-set-size most frequent `multiple_choice_answer`s and saved as answers.txt; train rows keep their
human answers inside that set (one is drawn per epoch, so frequent answers weigh more, as OFA's
confidence-weighted targets), valid rows need one such answer, test rows keep all ten answers (or none
without annotations) and are scored with the official VQA accuracy.
"""
import argparse
import os
import sys
from collections.abc import Iterator
from typing import Optional, Union

from run_scripts.common.convert_lib import (AnswerSet, ConversionError, Converter, MediaReader, Skip, field,
                                            read_json, split_role)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", required=True, help="v2_OpenEnded_mscoco_<subtype>_questions.json")
    parser.add_argument("--annotations", help="v2_mscoco_<subtype>_annotations.json (absent for the test sets)")
    parser.add_argument("--image-dir", required=True, help="the COCO folder of that subtype (train2014/, ...)")
    parser.add_argument("--answer-set-size", type=int, default=3129,
                        help="train split: closed answer set size (default 3129, as OFA)")


def human_answers(annotations: dict[int, dict], question_id: int, where: str) -> list[str]:
    annotation = annotations.get(question_id)
    if annotation is None:
        raise ConversionError(f"{where}: question {question_id} has no annotation")
    return [field(answer, "answer", where) for answer in field(annotation, "answers", where)]


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[Union[dict, Skip]]:
    questions = read_json(args.questions)
    subtype = field(questions, "data_subtype", args.questions)
    annotations: Optional[dict] = None
    if args.annotations:
        annotations = {field(a, "question_id", args.annotations): a
                       for a in field(read_json(args.annotations), "annotations", args.annotations)}
        answer_set = AnswerSet.for_split(
            args.destdir, args.split, lambda: (field(a, "multiple_choice_answer", args.annotations)
                                               for a in annotations.values()), args.answer_set_size)
    elif split_role(args.split) != "test":
        raise ConversionError(f"split {args.split!r} needs --annotations (only test splits may lack answers)")
    for index, question in enumerate(field(questions, "questions", args.questions)):
        where = f"{args.questions}, questions[{index}]"
        question_id, image_id = field(question, "question_id", where), field(question, "image_id", where)
        answer = None
        if annotations is not None:
            answer = answer_set.targets(human_answers(annotations, question_id, where), args.split)
            if isinstance(answer, Skip):
                yield answer
                continue
        image = media(os.path.join(args.image_dir, f"COCO_{subtype}_{image_id:012d}.jpg"), where)
        yield {"image": image, "question": field(question, "question", where), "answer": answer,
               "question_id": question_id}


CONVERTER = Converter("vqa/convert.py", __doc__, add_arguments, read_rows, "vqa", columns={"answer": "json"})

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
