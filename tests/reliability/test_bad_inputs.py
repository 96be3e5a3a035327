"""Bad inputs (docs/reliability.md, guarantee 1): a table of bad instructions, rows, media files, configs, command
lines and data files. Each row is (what is wrong, how it reaches the toolkit, fragments the error must hold:
the file/row/column/task it concerns and what was expected). Every case must fail with that message, without a
traceback, and publish nothing: no manifest or column files from ofasys-preprocess, no checkpoint from
ofasys-train, no results file from ofasys-generate. The command lines run in-process (`main(argv)`).

Instruction parsing has its own, larger corpus in tests/test_instruction_errors.py; a few cases here show that
the commands pass those errors on.
"""
import os

import pytest

from ofasys_fs.cli.preprocess import main as preprocess_main

from .bad_input_bench import (
    AUDIO,
    BOX,
    CAPTION,
    VIDEO,
    Outcome,
    check_clear_error,
    flac_bytes,
    media_case,
    png_bytes,
    rows_case,
    url_case,
    with_row,
)
from .conftest import COPY, copy_rows
from .test_bad_inputs_more import MORE_CASES

DETECTION = "[TEXT:src] -> ([BOX:objs.box] [TEXT:objs.label])*"
BOXES = [{"src": "a", "box": [1, 1, 5, 5]}] * 8
OBJECTS = [{"src": "a", "objs": [{"box": [0, 0, 0.5, 0.5], "label": "cat"}]}] * 8
LABELS = [{"src": "a", "tgt": "x"}] * 8
COPIES = copy_rows(8)
EXPECTED_BOX = "expected 4 numbers x0,y0,x1,y1"

CASES = [
    # ---- instructions
    ("modality in lower case", lambda b: b.parse("[image:img] what? -> [TEXT:cap]"),
     ["unknown modality 'image'", 'Did you mean "IMAGE"']),
    ("no arrow", lambda b: b.parse("[TEXT:src] [TEXT:tgt]"), ["no '->'", "ENCODER -> DECODER"]),
    ("attribute out of range", lambda b: b.parse("[TEXT:src,mask_ratio=1.7] -> [TEXT:tgt]"),
     ["mask_ratio=1.7 is out of range", "0.0 <= value < 1.0"]),
    ("unclosed slot", lambda b: b.parse("[TEXT:src -> [TEXT:tgt]"), ["unclosed '['"]),
    ("unknown attribute, on the command line", rows_case(copy_rows(4), "[TEXT:src,colour=red] -> [TEXT:tgt]"),
     ["unknown attribute 'colour'", "Attributes: adaptor"]),
    ("encoder slot without a column, in preprocess", lambda b: b.preprocess(copy_rows(4), "--instruction",
                                                                         "[TEXT] -> [TEXT:tgt]"),
     ["encoder slot [TEXT] needs a column name"]),
    # ---- rows (through ofasys-train: the first batch holding the row stops the run)
    ("row without the encoder column", rows_case(with_row(COPIES, 3, src=...)),
     ["rows.jsonl, line 4 (row 3)", "column 'src'", "is missing", "row keys: ['tgt']"]),
    ("text column holding a dict", rows_case(with_row(COPIES, src={"a": 1})),
     ["rows.jsonl, line 3 (row 2)", "column 'src'", "expects a string, got dict"]),
    ("target None at train", rows_case(with_row(COPIES, 1, tgt=None)),
     ["line 2 (row 1)", "column 'tgt'", "is None", "allowed only at split test/inference"]),
    ("box with 3 numbers", rows_case(with_row(BOXES, box="1,2,3"), BOX),
     ["row 2", "column 'box'", "has 3 numbers", EXPECTED_BOX]),
    ("box outside its image", rows_case(with_row(BOXES, box=[0, 0, 50, 5]), BOX),
     ["row 2", "column 'box'", "outside its 10x10 image"]),
    ("box with NaN", rows_case(with_row(BOXES, box=[0, 0, float("nan"), 5]), BOX),
     ["row 2", "column 'box'", "NaN or infinite", EXPECTED_BOX]),
    ("repetition column not a list", rows_case(with_row(OBJECTS, objs="cat"), DETECTION),
     ["row 2", "column 'objs'", "must be a list of dicts", "got str"]),
    ("repetition item without a key", rows_case(with_row(OBJECTS, objs=[{"box": [0, 0, 0.5, 0.5]}]), DETECTION),
     ["row 2", "item 0 of column 'objs' has no key 'label'", "item keys: ['box']"]),
    ("category given a list", rows_case(with_row(LABELS, tgt=["x", "y"]), "[TEXT:src] -> [CATEGORY:tgt]"),
     ["row 2", "column 'tgt'", "expects a string, got list"]),
    # ---- media files (ofasys-preprocess --instruction decodes them)
    ("truncated PNG", media_case("img", "cut.png", png_bytes()[:60], CAPTION),
     ["line 1 (row 0)", "column 'img'", "cut.png", "expected an image file", "truncated"]),
    ("JPEG that is text", media_case("img", "text.jpg", b"this is no jpeg " * 8, CAPTION),
     ["row 0", "column 'img'", "text.jpg", "expected an image file"]),
    ("truncated FLAC", media_case("wav", "cut.flac", flac_bytes()[:3000], AUDIO),
     ["row 0", "column 'wav'", "cut.flac", "expected an audio file"]),
    ("audio shorter than a frame", media_case("wav", "short.flac", flac_bytes(0.01), AUDIO),
     ["row 0", "column 'wav'", "short.flac", "expected at least 25 ms"]),
    ("MP4 full of garbage", media_case("clip", "noise.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000), VIDEO),
     ["row 0", "column 'clip'", "noise.mp4", "expected a self-contained video file"]),
    ("missing image file", lambda b: b.preprocess([{"img": "nowhere.png", "cap": "x"}], "--instruction", CAPTION),
     ["row 0", "column 'img'", "nowhere.png' does not exist"]),
    ("ftp URL", url_case("ftp://127.0.0.1/x.png"), ["row 0", "column 'img'", "scheme 'ftp'", "only http and https"]),
    ("file URL", url_case("file:///etc/passwd"), ["row 0", "column 'img'", "scheme 'file'", "only http and https"]),
    # ---- configs (ofasys-train CONFIG.yaml)
    ("unknown key", lambda b: b.train_yaml("optimization: {lrr: 0.1}"),
     ["config.yaml", 'unknown key "optimization.lrr"', 'Did you mean "lr"']),
    ("wrong type", lambda b: b.train_yaml("optimization: {max_update: ten}"),
     ["config.yaml", "optimization.max_update expects int, got 'ten'"]),
    ("bad sampling spec", lambda b: b.train_yaml("optimization: {sampling: temprature=2}"),
     ["optimization.sampling", 'unknown sampling strategy "temprature=2"', 'Did you mean "temperature"']),
    ("unknown arch", lambda b: b.train_yaml("", "arch=gigantic"), ['unknown architecture "gigantic"', "micro"]),
    ("unknown optimizer", lambda b: b.train_yaml("optimization: {optimizer: sgdx}"),
     ['unknown optimizer "sgdx"', "Known: adamw"]),
    ("unknown lr scheduler", lambda b: b.train_yaml("optimization: {lr_scheduler: cosinee}"),
     ['unknown lr_scheduler "cosinee"', 'Did you mean "cosine"']),
    ("unknown criterion", lambda b: b.train_yaml(
        f'tasks: [{{instruction: "{COPY}", data: {b.micro.train}, options: {{criterion: nope}}}}]'),
     ['unknown criterion "nope"', "label_smoothed_ce"]),
    ("unknown task name", lambda b: b.train_yaml(f"tasks: [{{name: captionn, data: {b.micro.train}}}]"),
     ["tasks.0 (captionn)", "built-in task name", "caption"]),
    ("data keys that are not splits", lambda b: b.train_yaml(
        f'tasks: [{{instruction: "{COPY}", data: {{training: {b.micro.train}}}}}]'),
     ["tasks.0", "data keys must be splits", "['training']"]),
    ("YAML syntax error", lambda b: b.train_yaml("optimization: {lr: [0.1"),
     ["config.yaml", "not valid YAML", "line 1"]),
    # ---- command lines
    ("train: unknown flag", lambda b: b.train("--bogus-flag"), ["unrecognized arguments: --bogus-flag"]),
    ("train: flag value of the wrong type", lambda b: b.train("--max-epoch", "ten"),
     ["--max-epoch", "expects int, got 'ten'"]),
    ("train: --task without --data", lambda b: b.train("--task", "caption"), ["--task/--instruction need --data"]),
    ("train: data file that does not exist", lambda b: b.train(data=str(b.root / "gone.jsonl")),
     ["gone.jsonl: no such file or folder"]),
    ("train: config file that does not exist", lambda b: b.train(str(b.root / "gone.yaml")),
     ["gone.yaml does not exist"]),
    ("preprocess: --destdir missing", lambda b: Outcome(*b.run(preprocess_main, ["--input", b.micro.train]), []),
     ["the following arguments are required: --destdir"]),
    ("preprocess: input that does not exist", lambda b: b.preprocess(str(b.root / "gone.jsonl")),
     ["--input", "gone.jsonl: no such file or folder"]),
    ("preprocess: zero workers", lambda b: b.preprocess(copy_rows(4), "--workers", "0"),
     ["--workers", "expected a positive integer, got '0'"]),
    ("generate: checkpoint that does not exist", lambda b: b.generate("--instruction", COPY,
                                                                      path=str(b.root / "gone.pt")),
     ["gone.pt does not exist"]),
    ("generate: --data missing", lambda b: b.generate("--instruction", COPY, data=""),
     ["the following arguments are required: --data"]),
    ("generate: beam 0", lambda b: b.generate("--instruction", COPY, "--beam", "0"), ["--beam", "must be >= 1"]),
    ("generate: task the checkpoint does not have", lambda b: b.generate("--task", "caption"),
     ["no task 'caption'", "trained tasks: ['copy']"]),
    ("generate: data file that does not exist", lambda b: b.generate("--instruction", COPY,
                                                                     data=str(b.root / "gone.jsonl")),
     ["gone.jsonl: no such file or folder"]),
    # ---- data files
    ("line that is not UTF-8", lambda b: b.preprocess(b.file("latin.jsonl", b'{"src": "a", "tgt": "b"}\n'
                                                                           b'{"src": "caf\xe9", "tgt": "b"}\n')),
     ["latin.jsonl, line 2 (row 1): not valid UTF-8"]),
    ("empty file", lambda b: b.preprocess(b.file("empty.jsonl", "")), ["empty.jsonl: the file has no rows"]),
    ("tsv line with a missing field", lambda b: b.preprocess(b.file("rows.tsv", "src\ttgt\na\tb\nc\n")),
     ["rows.tsv, line 3 (row 1): 1 tab-separated fields, expected 2 as in the header ['src', 'tgt']"]),
    ("parquet that is not parquet", lambda b: b.train(data=b.file("rows.parquet", b"PAR1 but not really")),
     ["rows.parquet: not a readable parquet file"]),
    ("line that is not JSON", lambda b: b.preprocess(b.file("broken.jsonl", '{"src": "a", "tgt": "b"}\n{"src": \n')),
     ["broken.jsonl, line 2 (row 1): not valid JSON"]),
    ("line that is a JSON list", lambda b: b.train(data=b.file("list.jsonl", '["a", "b"]\n')),
     ["list.jsonl, line 1 (row 0): expected a JSON object of columns, got list"]),
    ("file type not supported", lambda b: b.train(data=b.file("rows.csv", "src,tgt\na,b\n")),
     ["rows.csv: unsupported data file", ".jsonl"]),
    ("row with a column the first row lacks", lambda b: b.preprocess(with_row(COPIES, extra="x")),
     ["line 3 (row 2), column 'extra'", "not in the first row's columns ['src', 'tgt']"]),
]


ALL_CASES = CASES + MORE_CASES


def test_the_corpus_is_big_enough():
    assert len(ALL_CASES) >= 100 and len({what for what, _, _ in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("what, action, fragments", ALL_CASES, ids=[case[0] for case in ALL_CASES])
def test_bad_input_gives_a_clear_error_and_publishes_nothing(bench, what, action, fragments):
    check_clear_error(action(bench), what, fragments)
