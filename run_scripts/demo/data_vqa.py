"""easy-VQA (PyPI `easy-vqa`, MIT): synthetic 64 px images of one coloured shape with generated questions
(shape, colour, yes/no) and 13 possible answers; the package ships the images, so nothing is downloaded.
Train and valid rows come from its train part, test rows from its test part (other images).

The package's yes/no answers follow the wording: "is there a red shape?" is "no" 88% of the time, "is no
circle present?" "yes" 70%. Every split keeps as many "yes" as "no" rows of each yes/no question text, so
that only the image can answer them (the demo's baseline is the best answer per question text).
"""
from __future__ import annotations

import collections
import shutil
from pathlib import Path

import easy_vqa
import numpy as np

from .data_common import SplitSizes, rng_for, write_split

YES_NO = ("yes", "no")


def balanced_questions(texts: list[str], answers: list[str], rng: np.random.Generator) -> np.ndarray:
    """Indices of every open question and, per yes/no question text, as many "yes" as "no" rows (the
    rarer answer's count of each), in random order."""
    by_text: dict[str, dict[str, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for index, (text, answer) in enumerate(zip(texts, answers)):
        by_text[text][answer].append(index)
    kept: list[int] = []
    for text, by_answer in by_text.items():
        if set(by_answer) - set(YES_NO):
            kept += [index for indices in by_answer.values() for index in indices]
            continue
        count = min(len(by_answer[answer]) for answer in YES_NO)
        kept += [index for answer in YES_NO for index in rng.permutation(by_answer[answer])[:count]]
    return rng.permutation(np.array(sorted(kept)))


def build_easy_vqa(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """img + question -> answer; the images are copied next to the jsonl files."""
    parts = {"train": (easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()),
             "test": (easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())}
    train_order = balanced_questions(*parts["train"][0][:2], rng_for(seed, "easy_vqa", "train"))
    test_order = balanced_questions(*parts["test"][0][:2], rng_for(seed, "easy_vqa", "test"))
    picks = {"train": train_order[:sizes.train], "valid": train_order[sizes.train:sizes.train + sizes.valid],
             "test": test_order[:sizes.test]}
    for split, indices in picks.items():
        (texts, answers, image_ids), image_paths = parts["test" if split == "test" else "train"]
        rows = []
        for index in indices:
            image_id = image_ids[index]
            name = f"media/{'test' if split == 'test' else 'train'}_{image_id:05d}.png"
            if not (folder / name).exists():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(image_paths[image_id], folder / name)
            rows.append({"img": name, "question": texts[index], "answer": answers[index]})
        write_split(folder, split, rows)
