"""easy-VQA (PyPI `easy-vqa`, MIT): synthetic 64 px images of one coloured shape with generated questions
(shape, colour, yes/no) and 13 possible answers; the package ships the images, so nothing is downloaded.
Train and valid rows come from its train part, test rows from its test part (other images)."""
from __future__ import annotations

import shutil
from pathlib import Path

import easy_vqa

from .data_common import SplitSizes, rng_for, write_split


def build_easy_vqa(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """img + question -> answer; the images are copied next to the jsonl files."""
    parts = {"train": (easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()),
             "test": (easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())}
    train_questions = len(parts["train"][0][0])
    train_order = rng_for(seed, "easy_vqa", "train").permutation(train_questions)
    picks = {"train": train_order[:sizes.train], "valid": train_order[sizes.train:sizes.train + sizes.valid],
             "test": rng_for(seed, "easy_vqa", "test").permutation(len(parts["test"][0][0]))[:sizes.test]}
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
