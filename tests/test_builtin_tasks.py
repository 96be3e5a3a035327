"""Every built-in task: builds by name with parseable defaults, trains a few micro updates on synthetic rows of
its columns and modalities, and decodes through the hub. One micro run trains all of them together (sampling
"all": every task in every update), which is far cheaper than a run per task. Also the tasks' row hooks."""
import json
import math
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ofasys_fs import load_builtins
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.hub import OFASys
from ofasys_fs.instruction import Instruction
from ofasys_fs.registry import CRITERION_REGISTRY, METRIC_REGISTRY, build_task
from ofasys_fs.tasks.base import Task
from ofasys_fs.tasks.spider import schema_from_sqlite
from ofasys_fs.tasks.sudoku import read_grid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ is not installed with the package
from tools.task_reference import builtin_tasks  # noqa: E402

load_builtins()
BUILTINS = sorted(builtin_tasks())
WORDS = "red green blue small large dog cat bird tree house".split()
IMAGE_SIZE = (48, 40)  # width, height of the synthetic images; boxes are in these pixels
BOX = [4.0, 6.0, 30.0, 28.0]
GENERATION_OPTIONS = {"beam", "nbest", "max_len_a", "max_len_b", "min_len", "lenpen", "unkpen", "temperature",
                      "sampling", "sampling_topk", "sampling_topp", "no_repeat_ngram_size", "generator",
                      "diffusion_steps", "guidance_scale"}
SUDOKU = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


# ---- synthetic rows ------------------------------------------------------------------------------


def synthetic_value(slot, index: int, media: dict, answers: list):
    """A value of the slot's kind for row `index`: small images/videos as arrays, audio as a WAV file."""
    if slot.modality == "IMAGE":
        return media["images"][index % 2]
    if slot.modality == "VIDEO":
        return media["videos"][index % 2]
    if slot.modality == "AUDIO":
        return media["wavs"][index % 2]
    if slot.modality == "MOTION":
        return media["bvh"]
    if slot.modality == "BOX":
        return BOX
    if slot.modality == "STRUCT":
        return [[WORDS[index], "colour", WORDS[index + 2]], ["size", "is", WORDS[index + 3]]]
    if slot.attrs.get("closed_set"):
        return answers[index % len(answers)] if answers else WORDS[index % 2]
    return f"{WORDS[index]} {WORDS[index + 4]}"


def synthetic_rows(task: Task, media: dict, count: int = 2) -> list[dict]:
    """Rows with every column the task's first template reads, then the task's own raw forms (see RAW_FORMS)."""
    template = task.templates[0]
    rows = []
    for index in range(count):
        row = {}
        for slot in (*template.encoder, *template.decoder):
            if slot.name is not None and not slot.in_repeat:
                row.setdefault(slot.name, synthetic_value(slot, index, media, task.answers))
        if template.repeat is not None:
            row[template.repeat.list_name] = [{"box": BOX, "label": WORDS[index]}]
        rows.append(RAW_FORMS.get(task.name, lambda row, index, media: row)(row, index, media))
    return rows


def spider_row(row: dict, index: int, media: dict) -> dict:
    return {**{k: v for k, v in row.items() if k != "database"}, "db_path": media["sqlite"]}


def sudoku_row(row: dict, index: int, media: dict) -> dict:
    grid = [list(SUDOKU[r * 9:(r + 1) * 9]) for r in range(9)]
    return {**row, "src": SUDOKU[:40] + "0" * 41, "tgt": grid}


RAW_FORMS = {  # the raw forms each task's prepare_row accepts, so the hooks run during training
    "spider": spider_row,
    "sudoku": sudoku_row,
    "refcoco": lambda row, index, media: {**row, "patch_boxes": ",".join(str(v) for v in BOX)},
    "vqa": lambda row, index, media: {**row, "answer": [row["answer"], row["answer"], "maybe"]},
    **{name: (lambda row, index, media: {**row, "label": index % 2})
       for name in ("cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte")},
}


def write_sqlite(path) -> str:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE Singer (Singer_ID int, Name text, Age int)")
        connection.execute("CREATE TABLE concert (concert_ID int, Theme text)")
    connection.close()
    return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("media")
    images = [np.full((IMAGE_SIZE[1], IMAGE_SIZE[0], 3), value, dtype=np.uint8) for value in (40, 200)]
    videos = [np.full((4, 32, 32, 3), value, dtype=np.uint8) for value in (30, 220)]
    wavs = []
    for frequency in (300, 900):
        path = folder / f"tone{frequency}.wav"
        seconds = np.arange(16000) / 16000
        soundfile.write(path, (0.3 * np.sin(2 * np.pi * frequency * seconds)).astype(np.float32), 16000)
        wavs.append(str(path))
    return {"images": images, "videos": videos, "wavs": wavs, "sqlite": write_sqlite(folder / "db.sqlite"),
            "bvh": write_bvh(folder / "sway.bvh")}


def write_bvh(path) -> str:
    """A two-joint skeleton swaying for 3 s at 30 fps (the motion tasks' default windows are 60 frames)."""
    hierarchy = ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation "
                 "Xrotation Yrotation\n  JOINT Spine\n  {\n    OFFSET 0 1 0\n    CHANNELS 3 Zrotation Xrotation "
                 "Yrotation\n    End Site\n    {\n      OFFSET 0 2 0\n    }\n  }\n}\n")
    angles = 30 * np.sin(np.arange(90) / 5)
    frames = "".join(f"{0.1 * i:.3f} 1 0 {a:.3f} 0 0 {-a:.3f} 0 0\n" for i, a in enumerate(angles))
    Path(path).write_text(f"{hierarchy}MOTION\nFrames: 90\nFrame Time: 0.0333333\n{frames}")
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, media, image_tokenizer):
    """(checkpoint path, train log records, the tasks) of one micro run over every built-in task (the IMAGE
    outputs in the session's digit image tokenizer)."""
    save_dir = tmp_path_factory.mktemp("builtin_ckpt")
    tasks = []
    for name in BUILTINS:
        task = build_task(name)
        tasks.append(task.add_dataset(synthetic_rows(task, media), "train"))
    Trainer(arch="micro", device="cpu", num_bins=16, image_tokenizer=image_tokenizer.path, batch_size=2, max_update=2,
            sampling="all", lr=1e-3, save_dir=str(save_dir), log_interval=1, seed=1,
            disable_validation=True).fit(tasks=tasks)
    records = [json.loads(line) for line in open(save_dir / "train_log.jsonl", encoding="utf-8")]
    return str(save_dir / "checkpoint_last.pt"), records, {task.name: task for task in tasks}


@pytest.fixture(scope="module")
def hub(trained) -> OFASys:
    return OFASys.from_pretrained(trained[0], device="cpu")


# ---- every built-in task -------------------------------------------------------------------------


def test_every_issue_task_is_registered():
    expected = {"caption", "vqa", "vqa_gen", "refcoco", "grounded_caption", "snli_ve", "image_classify", "gigaword",
                "dart", "fetaqa", "spider", "asr", "video_caption", "video_qa", "video_classify", "text_infilling",
                "cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "detection", "sudoku"}
    assert expected <= set(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_builds_by_name_with_valid_defaults(name):
    task = build_task(name)
    assert isinstance(task, Task) and task.name == name
    for template in task.templates:
        parsed = Instruction.parse(template.text)
        assert (parsed.encoder, parsed.decoder) == (template.encoder, template.decoder)
    assert task.metric is None or task.metric in METRIC_REGISTRY
    assert task.criterion in CRITERION_REGISTRY
    assert set(task.generation) <= GENERATION_OPTIONS
    assert build_task(name, metric="bleu", generation={"beam": 2}).metric == "bleu"
    assert build_task(name, generation={"beam": 2}).generation["beam"] == 2


@pytest.mark.parametrize("name", BUILTINS)
def test_trains_and_decodes(name, trained, hub, media):
    _, records, tasks = trained
    losses = [record["tasks"][name]["loss"] for record in records if "loss" in record["tasks"].get(name, {})]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)

    task = tasks[name]
    assert hub.task(name).generation == task.generation and hub.task(name).answers == task.answers
    template = task.templates[0]
    row = task.datasets["train"][0]
    inputs = {slot.name: row[slot.name] for slot in template.encoder if slot.name}
    given = lambda slot: slot.no_loss or slot.attrs.get("known")  # noqa: E731  (a prompt, in-betweening's motion)
    inputs.update({slot.name: row[slot.name] for slot in template.decoder if slot.name and given(slot)})
    if template.output_modality == "AUDIO":  # speech: its own generator (no beam), a waveform
        output = hub.inference(template.text, data=inputs, max_len_b=12, min_len=2)  # >= 2 frames: some samples
        assert output.waveform.sample_rate == 16000 and 0 < output.waveform.samples.numel()
        assert output.frames.shape[1] == hub.model.cfg.mel_bins
        return
    if template.output_modality == "MOTION":  # diffusion: a window of the training skeleton
        output = hub.inference(template.text, data=inputs, diffusion_steps=2)
        assert (output.motion.num_frames, output.motion.skeleton.joint_names) == (60, ["Hips", "Spine"])
        return
    output = hub.inference(template.text, data=inputs, beam_size=2, max_len_b=12)
    if template.repeat is not None:
        assert isinstance(output.objects, list)
    elif any(slot.modality == "BOX" for slot in template.decoder):
        assert len(output.box) == 4 and all(0 <= v <= max(IMAGE_SIZE) for v in output.box)
    elif any(slot.attrs.get("closed_set") for slot in template.decoder):
        assert output.text in task.answers
    elif template.output_modality == "IMAGE":
        assert output.image.size == (8, 8) and output.text is None
    else:
        assert isinstance(output.text, str)


def test_asr_trains_with_the_ctc_loss(trained):
    _, records, _ = trained
    assert all(record["tasks"]["asr"]["ctc_loss"] > 0 for record in records)


# ---- row hooks -----------------------------------------------------------------------------------


def test_spider_reads_the_schema_from_the_sqlite_file(media, tmp_path):
    expected = [["singer", "singer_id , name , age"], ["concert", "concert_id , theme"]]
    assert schema_from_sqlite(media["sqlite"]) == expected
    task = build_task("spider").add_dataset([{"src": "q", "tgt": "select 1", "db_path": "db.sqlite"}], "train")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"src": "q", "tgt": "s", "db_path": "db.sqlite"}) + "\n")
    write_sqlite(tmp_path / "db.sqlite")
    relative = build_task("spider").add_dataset(str(tmp_path / "rows.jsonl"), "train")
    assert relative.datasets["train"][0]["database"][0] == ["singer", "singer_id , name , age"]
    with pytest.raises(ValueError, match=r"row 0: .*db\.sqlite does not exist"):
        task.datasets["train"][0]  # relative to the working directory: not there
    with pytest.raises(ValueError, match=r"'database'.*or 'db_path'"):
        build_task("spider").add_dataset([{"src": "q", "tgt": "s"}], "train").datasets["train"][0]
    with pytest.raises(ValueError, match=r"cannot read the schema"):
        schema_from_sqlite(media["wavs"][0])


def test_sudoku_accepts_grids_strings_and_text():
    grid = read_grid(SUDOKU, "src")
    assert grid[0] == [5, 3, 4, 6, 7, 8, 9, 1, 2] and len(grid) == 9
    text = build_task("sudoku").prepare_row({"src": SUDOKU.replace("5", "."), "tgt": grid}, None)
    assert text["tgt"].startswith("5 : 3 : 4") and text["tgt"].count(" | ") == 8
    assert text["src"].startswith("0 : 3 : 4")
    assert read_grid(text["tgt"], "tgt") == grid
    with pytest.raises(ValueError, match=r"column 'src': a sudoku string needs 81 digits, got 80"):
        read_grid(SUDOKU[:80], "src")
    with pytest.raises(ValueError, match=r"column 'tgt': sudoku cell \(0, 1\) is 'x'"):
        read_grid([["1", "x"] + ["2"] * 7] + [["1"] * 9] * 8, "tgt")


def test_glue_maps_integer_labels_to_words():
    mnli = build_task("mnli")
    assert mnli.answers == ["yes", "maybe", "no"]
    assert [mnli.prepare_row({"label": i}, None)["label"] for i in (0, 1, 2, -1)] == ["yes", "maybe", "no", None]
    assert mnli.prepare_row({"label": "no"}, None)["label"] == "no"
    with pytest.raises(ValueError, match=r"task 'mnli': column 'label' is 3; integer labels must be in 0\.\.2"):
        mnli.prepare_row({"label": 3}, None)
    assert build_task("cola", answers=["bad", "good"]).answers == ["bad", "good"]


def test_refcoco_parses_string_boxes_for_the_metric():
    row = build_task("refcoco").prepare_row({"patch_boxes": "1, 2.5,30,40"}, None)
    assert row["patch_boxes"] == [1.0, 2.5, 30.0, 40.0]
    with pytest.raises(ValueError, match=r"column 'patch_boxes': expected a box"):
        build_task("refcoco").prepare_row({"patch_boxes": "1,2,3"}, None)


def test_prepare_row_does_not_touch_the_source_rows():
    rows = [{"sentence": "a b", "label": 1}]
    task = build_task("sst2").add_dataset(rows, "train")
    assert task.datasets["train"][0]["label"] == "positive" and rows[0]["label"] == 1
    assert task.prepared_rows(rows, "test")[0]["label"] == "positive"
    assert type(Task(instruction="[TEXT:a] -> [TEXT:b]").add_dataset(rows).datasets["train"]).__name__ != "PreparedRows"


def test_ofasys_train_uses_a_builtin_task_by_name(tmp_path):
    from ofasys_fs.checkpoint import load_checkpoint
    from ofasys_fs.cli.train import main

    rows = [{"sentence": f"{WORDS[i]} {WORDS[i + 1]}", "label": i % 2} for i in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["--task", "sst2", "--data", str(tmp_path / "train.jsonl"), "--arch", "micro", "--device", "cpu",
            "--max-update", "1", "--batch-size", "4", "--num-bins", "16", "--num-codes", "0",
            "--save-dir", str(tmp_path / "ckpt"), "--disable-validation"]
    assert main(argv) == 0
    (stored,) = load_checkpoint(str(tmp_path / "ckpt" / "checkpoint_last.pt"))["tasks"]
    assert stored["class"] == "sst2" and stored["answers"] == ["negative", "positive"]
    assert stored["instructions"] == [build_task("sst2").instruction.text]
