"""Motion captioning learns through the existing text decoder: a micro model captions held-out windows of two real
CMU clips far above chance, and the same run on shuffled captions stays near chance."""
import numpy as np
import pytest
from motion_clips import CLIMB, JUMPS, clip, needs_clips
from test_learning import greedy_decode, shuffled

from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task
from ofasys_fs.tokenizer import train_tokenizer

CAPTIONS = {JUMPS: "jumping", CLIMB: "climbing"}  # chance 1/2 (balanced rows)
INSTRUCTION = "[MOTION:clip,max_length=24] what is the person doing? -> [TEXT:caption]"  # 0.8 s at 30 fps
BLOCK, BLOCKS = 2.4, 9  # seconds; the first 21.6 s of each clip, every third block held out
SPAN, STEP = 1.2, 0.4  # training rows: 1.2 s spans (a random 0.8 s window each epoch); test: 0.8 s spans
ACCURACY, CONTROL_CEILING = 0.75, 0.65  # seeds 1-3: 0.87-0.93 and 0.5-0.6


def rows(held_out: bool) -> list[dict]:
    length, step = (0.8 if held_out else SPAN), STEP
    out = []
    for name, caption in CAPTIONS.items():
        for block in range(BLOCKS):
            if (block % 3 == 2) != held_out:
                continue
            for index in range(round((BLOCK - length) / step) + 1):
                start = block * BLOCK + index * step
                out.append({"clip": {"path": clip(name), "start": start, "end": start + length}, "caption": caption,
                            "block": (name, block)})
    return out


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer([" ".join(CAPTIONS.values()), INSTRUCTION] * 20, 300, path)
    return str(path)


def train(tokenizer: str, folder, shuffle: bool) -> Trainer:
    train_rows = rows(held_out=False)
    task = Task(name="motion_caption", instruction=INSTRUCTION)
    task.add_dataset(shuffled(train_rows, "caption") if shuffle else train_rows, "train")
    trainer = Trainer(arch="micro", dropout=0.0, device="cpu", tokenizer=tokenizer, num_bins=16, num_codes=0,
                      batch_size=16, max_update=80, lr=5e-3, warmup_updates=10, label_smoothing=0.0,
                      save_dir=str(folder), no_save=True, log_interval=1000, seed=1)
    trainer.fit(tasks=[task])
    return trainer


def accuracy(trainer: Trainer, test_rows: list[dict]) -> float:
    decoded = greedy_decode(trainer, "motion_caption", test_rows, 12)
    return float(np.mean([trainer.vocab.decode(ids).strip() == row["caption"] for ids, row in zip(decoded, test_rows)]))


@needs_clips
def test_motion_captioning_learns_and_shuffled_captions_do_not(tokenizer, tmp_path):
    test_rows = rows(held_out=True)
    assert not {row["block"] for row in test_rows} & {row["block"] for row in rows(held_out=False)}
    assert len(test_rows) == 2 * 3 * 5 and sum(row["caption"] == CAPTIONS[JUMPS] for row in test_rows) == 15
    real = accuracy(train(tokenizer, tmp_path / "real", shuffle=False), test_rows)
    control = accuracy(train(tokenizer, tmp_path / "control", shuffle=True), test_rows)
    assert real >= ACCURACY and control <= CONTROL_CEILING, (real, control)
