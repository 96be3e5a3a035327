"""Learning: one micro model trained on two tasks of different modalities (image -> text and text -> box)
reaches held-out accuracies far above chance; the same run on shuffled labels stays near chance."""
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ofasys_fs.contracts import SampleContext
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task
from ofasys_fs.tokenizer import train_tokenizer

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230)}
SIZES = {"small": (7, 11), "big": (18, 26)}
ROWS_NAMES, COLUMN_NAMES = ("top", "middle", "bottom"), ("left", "center", "right")
OBJECTS = ("square", "circle", "star", "ball")
PHRASES = ("the {obj} is at the {row} {col}", "a {obj} sits {row} {col}", "{row} {col} there is a {obj}")
SHAPE_INSTRUCTION = "[IMAGE:img] how big and what colour is the square? -> [TEXT:label]"
WHERE_INSTRUCTION = "where is it? [TEXT:desc] -> [BOX:box]"
TRAIN_ROWS, HELD_OUT_ROWS = 128, 48
# chance: 1/6 for the size-colour classes, 1/9 for the grid cells
SHAPE_ACCURACY, BOX_ACCURACY, CONTROL_CEILING = 0.8, 0.8, 0.45


def shape_rows(count: int, rng: random.Random) -> list[dict]:
    """32 px images: a small or big square of one colour at a random place on a noisy dark background."""
    rows = []
    for _ in range(count):
        colour, size_name = rng.choice(list(COLOURS)), rng.choice(list(SIZES))
        noise = np.random.default_rng(rng.randrange(2**32)).integers(0, 60, (32, 32, 3), dtype=np.uint8)
        image = Image.fromarray(noise)
        size = rng.randint(*SIZES[size_name])
        x, y = rng.randint(0, 31 - size), rng.randint(0, 31 - size)
        ImageDraw.Draw(image).rectangle([x, y, x + size, y + size], fill=COLOURS[colour])
        rows.append({"img": image, "label": f"{size_name} {colour}"})
    return rows


def cell_box(row: int, col: int) -> list[float]:
    return [col / 3, row / 3, (col + 1) / 3, (row + 1) / 3]


def where_rows(count: int, rng: random.Random) -> list[dict]:
    """A sentence naming a cell of a 3x3 grid -> that cell's box in [0, 1] coordinates."""
    rows = []
    for _ in range(count):
        row, col = rng.randrange(3), rng.randrange(3)
        text = rng.choice(PHRASES).format(obj=rng.choice(OBJECTS), row=ROWS_NAMES[row], col=COLUMN_NAMES[col])
        rows.append({"desc": text, "box": cell_box(row, col)})
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = random.Random(0)
    corpus = [" ".join([*COLOURS, *SIZES, *ROWS_NAMES, *COLUMN_NAMES, *OBJECTS]), *PHRASES,
              SHAPE_INSTRUCTION, WHERE_INSTRUCTION] * 10
    tokenizer = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(corpus, 300, tokenizer)
    return {"tokenizer": str(tokenizer), "shape": (shape_rows(TRAIN_ROWS, rng), shape_rows(HELD_OUT_ROWS, rng)),
            "where": (where_rows(TRAIN_ROWS, rng), where_rows(HELD_OUT_ROWS, rng))}


def shuffled(rows: list[dict], column: str) -> list[dict]:
    labels = [row[column] for row in rows]
    random.Random(1).shuffle(labels)
    return [{**row, column: label} for row, label in zip(rows, labels)]


def train(data, tmp_path, shuffle_labels: bool) -> Trainer:
    shape_train, where_train = data["shape"][0], data["where"][0]
    if shuffle_labels:
        shape_train, where_train = shuffled(shape_train, "label"), shuffled(where_train, "box")
    tasks = [Task(name="shape", instruction=SHAPE_INSTRUCTION).add_dataset(shape_train, "train"),
             Task(name="where", instruction=WHERE_INSTRUCTION).add_dataset(where_train, "train")]
    trainer = Trainer(arch="micro", dropout=0.0, device="cpu", tokenizer=data["tokenizer"], num_bins=16, num_codes=0,
                      batch_size=32, max_update=120, lr=5e-3, warmup_updates=10, label_smoothing=0.0,
                      sampling="all", save_dir=str(tmp_path), no_save=True, log_interval=40, seed=1)
    trainer.fit(tasks=tasks)
    return trainer


@torch.no_grad()
def greedy_decode(trainer: Trainer, task: str, rows: list[dict], steps: int, allowed: range = None) -> list[list[int]]:
    """Argmax decoding, one token per step over the growing prefix (no cache), stopping at </s>."""
    encoder, vocab, model = trainer.encoders[task], trainer.vocab, trainer.model.eval()
    examples = [encoder.encode(row, SampleContext(split="test", task=task, row_index=i)) for i, row in enumerate(rows)]
    source = model.encoder(encoder.collate(examples)["net_input"]["encoder"])
    tokens = torch.full((len(rows), 1), vocab.bos)
    for _ in range(steps):
        logits = model.decoder(tokens, source)[0][:, -1]
        if allowed is not None:
            blocked = torch.ones(logits.size(-1), dtype=torch.bool)
            blocked[allowed.start:allowed.stop] = False
            logits = logits.masked_fill(blocked, -torch.inf)
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    outputs = []
    for row in tokens[:, 1:].tolist():
        outputs.append(row[:row.index(vocab.eos)] if vocab.eos in row else row)
    return outputs


def shape_accuracy(trainer: Trainer, rows: list[dict]) -> float:
    predictions = [trainer.vocab.decode(ids).strip() for ids in greedy_decode(trainer, "shape", rows, 12)]
    return float(np.mean([p == row["label"] for p, row in zip(predictions, rows)]))


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union > 0 else 0.0


def box_accuracy(trainer: Trainer, rows: list[dict]) -> float:
    """Share of held-out rows whose predicted box overlaps the true cell with IoU > 0.5."""
    bins = trainer.vocab.range("bin")
    boxes = [[(t - bins.start) / (len(bins) - 1) for t in ids]
             for ids in greedy_decode(trainer, "where", rows, 4, allowed=bins)]
    return float(np.mean([iou(box, row["box"]) > 0.5 for box, row in zip(boxes, rows)]))


def test_two_tasks_of_different_modalities_learn_and_shuffled_labels_do_not(data, tmp_path):
    trained = train(data, tmp_path / "real", shuffle_labels=False)
    shape, where = shape_accuracy(trained, data["shape"][1]), box_accuracy(trained, data["where"][1])
    control = train(data, tmp_path / "control", shuffle_labels=True)
    control_shape = shape_accuracy(control, data["shape"][1])
    control_where = box_accuracy(control, data["where"][1])
    assert shape >= SHAPE_ACCURACY, f"image -> text held-out accuracy {shape:.2f}"
    assert where >= BOX_ACCURACY, f"text -> box held-out accuracy {where:.2f}"
    assert control_shape <= CONTROL_CEILING and control_where <= CONTROL_CEILING, (control_shape, control_where)
