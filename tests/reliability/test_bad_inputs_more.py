"""More bad inputs (docs/reliability.md, guarantee 1), as a researcher with scraped web data meets them: broken
JSON lines and TSV headers, text that is not Unicode, degenerate images, audio, video and BVH motion, impossible boxes,
configs and plugins that cannot load, flag values a command cannot use, and Python API misuse. The table
MORE_CASES is run by tests/reliability/test_bad_inputs.py together with its own (`check_clear_error`). After the
table, the inputs that look bad but are normal and must work: a byte order mark, a closed-set test split without targets, a benchmark answer that never
occurs in training, a data set smaller than the DataLoader's prefetch, an interactive session fed broken lines."""
import json
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ofasys_fs import OFASys, Task, Trainer
from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.cli import generate, interactive, validate
from ofasys_fs.cli.preprocess import main as preprocess_main
from ofasys_fs.data.rows import as_row_source
from ofasys_fs.data.shards import is_shard_dir
from ofasys_fs.errors import CheckpointError

from .bad_input_bench import AUDIO, BOX, CAPTION, VIDEO, Outcome, media_case, png_bytes, wav_bytes, with_row
from .conftest import COPY, copy_rows

CLOSED = "[TEXT:src] -> [TEXT:tgt,closed_set]"
COPIES = copy_rows(8)
NESTED = '{"src": ' + "[" * 5000 + "]" * 5000 + ', "tgt": "b"}\n'
NAN_FLOAT = "NaN and infinity are not option values"


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with no pixels behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def plugin(bench, source: str) -> str:
    """A --user-dir package whose __init__.py is `source`."""
    bench.file("reliability_bad_plugin/__init__.py", source)
    return str(bench.root / "reliability_bad_plugin")


def parquet_case(bench) -> Outcome:
    path = bench.root / "rows.parquet"
    pq.write_table(pa.table({"src": ["a"], "tgt": [{"x": 1}]}), path)
    return bench.preprocess(str(path), "--instruction", COPY)


def closed_set_yaml(bench, valid_rows: list, answers: str = "") -> str:
    """A closed-set task over the micro copy rows (answers: the distinct targets, unless given)."""
    valid = bench.file("valid.jsonl", valid_rows)
    return (f'tasks: [{{name: cls, instruction: "{CLOSED}", metric: accuracy, {answers}'
            f'data: {{train: {bench.micro.train}, valid: {valid}}}}}]')


MOTION = "[MOTION:clip] what happens? -> [TEXT:cap]"
MOTION_WINDOW = "[MOTION:clip,max_length=8] what happens? -> [TEXT:cap]"


def bvh(channels: bool = True, frames: int = 2, last: str = "0 0 0 0 0 0 0 0 30") -> str:
    """A two-joint BVH at 30 fps; the JOINT keyword is on line 6, 'Frames:' on line 17, the frames on 19-20."""
    return ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation "
            "Xrotation Yrotation\n  JOINT Spine\n  {\n    OFFSET 0 1 0\n"
            + ("    CHANNELS 3 Zrotation Xrotation Yrotation\n" if channels else "")
            + "    End Site\n    {\n      OFFSET 0 1 0\n    }\n  }\n}\nMOTION\n"
            f"Frames: {frames}\nFrame Time: 0.0333333\n0 0 0 0 0 0 0 0 0\n{last}\n")


MORE_CASES = [  # run by test_bad_inputs.py with its own table
    # ---- data files
    ("JSON line nested too deeply", lambda b: b.preprocess(b.file("deep.jsonl", NESTED)),
     ["deep.jsonl, line 1 (row 0)", "not readable JSON: nested more than"]),
    ("JSON object with a key twice", lambda b: b.preprocess(b.file("twice.jsonl", '{"src": "a", "src": "b"}\n')),
     ["twice.jsonl, line 1 (row 0)", "the key 'src' appears twice"]),
    ("TSV header naming a column twice", lambda b: b.preprocess(b.file("dup.tsv", "src\tsrc\na\tb\n")),
     ["dup.tsv, line 1", "names the column(s) ['src'] more than once"]),
    ("JSON lines ending in a partial line", lambda b: b.preprocess(b.file("cut.jsonl", "".join(
        json.dumps(row) + "\n" for row in COPIES[:4]) + '{"src": "a", "tg')),
     ["cut.jsonl, line 5 (row 4)", "not valid JSON"]),
    ("JSON line that is a string", lambda b: b.train(data=b.file("str.jsonl", '"src tgt"\n')),
     ["str.jsonl, line 1 (row 0)", "expected a JSON object of columns, got str"]),
    ("JSON lines in UTF-16", lambda b: b.preprocess(b.file("u16.jsonl", '{"src": "a"}\n'.encode("utf-16"))),
     ["u16.jsonl, line 1 (row 0)", "not valid UTF-8"]),
    ("TSV field holding a tab", lambda b: b.preprocess(b.file("tab.tsv", "src\ttgt\na\tb\nc\td\te\n")),
     ["tab.tsv, line 3 (row 1)", "3 tab-separated fields, expected 2"]),
    ("text with a lone surrogate", lambda b: b.preprocess(b.file("sur.jsonl", '{"src": "a\\ud800", "tgt": "b"}\n'),
                                                          "--instruction", COPY),
     ["sur.jsonl, line 1 (row 0)", "column 'src'", "lone surrogate '\\ud800'", "expected valid Unicode"]),
    ("bad row met by a DataLoader worker", lambda b: b.train("--num-workers", "1", data=with_row(COPIES, 3, src={})),
     ["rows.jsonl, line 4 (row 3)", "column 'src'", "expects a string, got dict"]),
    ("1 MB string in one cell", lambda b: b.preprocess([{"src": "red " * 250000, "tgt": "b"}], "--instruction", COPY),
     ["line 1 (row 0)", "more than max_source_positions=1024", "--truncate-long"]),
    ("parquet dict in a text column", parquet_case,
     ["rows.parquet, row 0", "column 'tgt'", "expects a string, got dict"]),
    # ---- media files
    ("PNG of 0x0 pixels", media_case("img", "zero.png", png_header(0, 0), CAPTION),
     ["row 0", "column 'img'", "zero.png", "expected an image file"]),
    ("PNG claiming 3.6 gigapixels", media_case("img", "bomb.png", png_header(60000, 60000), CAPTION),
     ["row 0", "column 'img'", "bomb.png", "decompression bomb"]),
    ("SVG image", media_case("img", "logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9"/>', CAPTION),
     ["row 0", "column 'img'", "logo.svg", "expected an image file"]),
    ("image cell naming a folder", lambda b: b.preprocess([{"img": ".", "cap": "x"}], "--instruction", CAPTION),
     ["row 0", "column 'img'", "is not a regular file"]),
    ("image cell holding a number", lambda b: b.preprocess([{"img": 5, "cap": "x"}], "--instruction", CAPTION),
     ["row 0", "column 'img'", "unsupported media value (int)"]),
    ("WAV with 0 samples", media_case("wav", "empty.wav", wav_bytes(np.zeros(0, np.float32)), AUDIO),
     ["row 0", "column 'wav'", "empty.wav", "contains no audio samples"]),
    ("WAV at 1 Hz", media_case("wav", "slow.wav", wav_bytes(np.zeros(50, np.float32), rate=1), AUDIO),
     ["row 0", "column 'wav'", "slow.wav", "sampling rate 1 Hz is below 1000 Hz"]),
    ("WAV of NaN samples", media_case("wav", "nan.wav", wav_bytes(np.full(1600, np.nan, np.float32)), AUDIO),
     ["row 0", "column 'wav'", "nan.wav", "NaN or infinite samples"]),
    ("PNG in the audio column", media_case("wav", "picture.wav", png_bytes(), AUDIO),
     ["row 0", "column 'wav'", "picture.wav", "expected an audio file"]),
    ("WAV in the video column", media_case("clip", "sound.mp4", wav_bytes(np.zeros(1600, np.float32)), VIDEO),
     ["row 0", "column 'clip'", "sound.mp4", "has no video stream"]),
    ("video file with no frames", media_case("clip", "empty.mp4", b"", VIDEO),
     ["row 0", "column 'clip'", "empty.mp4", "expected a self-contained video file"]),
    ("BVH joint without channels", media_case("clip", "nochannels.bvh", bvh(channels=False), MOTION),
     ["row 0", "column 'clip'", "nochannels.bvh', line 6", "JOINT 'Spine' has no CHANNELS line"]),
    ("BVH frame holding NaN", media_case("clip", "nan.bvh", bvh(last="0 0 0 0 0 0 nan 0 0"), MOTION),
     ["row 0", "column 'clip'", "nan.bvh', line 20 (frame 1)", "channel 'Spine Zrotation' is nan"]),
    ("BVH with fewer frame lines than declared", media_case("clip", "short.bvh", bvh(frames=3), MOTION),
     ["row 0", "column 'clip'", "short.bvh', line 17", "'Frames: 3' but only 2 frame lines follow"]),
    ("BVH clip shorter than the window", media_case("clip", "brief.bvh", bvh(), MOTION_WINDOW),
     ["row 0", "column 'clip'", "brief.bvh'", "2 frames at 30 fps", "shorter than the window max_length=8"]),
    # ---- boxes and closed sets
    ("box with x0 > x1", lambda b: b.preprocess([{"src": "a", "box": [5, 1, 1, 5]}], "--instruction", BOX),
     ["row 0", "column 'box'", "x1 < x0", "x0 <= x1"]),
    ("box left of its image", lambda b: b.preprocess([{"src": "a", "box": [-5, 1, 1, 5]}], "--instruction", BOX),
     ["row 0", "column 'box'", "outside its 10x10 image"]),
    ("box dict with x, y, w, h", lambda b: b.preprocess([{"src": "a", "box": {"x": 1, "y": 1, "w": 2, "h": 2}}],
                                                        "--instruction", BOX),
     ["row 0", "column 'box'", "box dict has keys ['h', 'w', 'x', 'y']", "x0, y0, x1, y1"]),
    ("box of booleans", lambda b: b.preprocess([{"src": "a", "box": [True, 1, 2, 3]}], "--instruction", BOX),
     ["row 0", "column 'box'", "is not numeric"]),
    ("training target outside the given answers", lambda b: b.train_yaml(closed_set_yaml(
        b, COPIES, answers="answers: [zero, one, two, three, four, five, six, eight, nine], ")),
     ["task 'cls', split 'train'", "train.jsonl, line 8 (row 7)", "column 'tgt'", "the target 'seven'",
      "not one of the task's 9 answers"]),
    # ---- instructions
    ("lone surrogate in an instruction", lambda b: b.preprocess(COPIES, "--instruction", "[TEXT:src] \udc80 -> "
                                                                                         "[TEXT:tgt]"),
     ["'\\udc80' is a lone surrogate", "at character 11 of the instruction"]),
    ("empty instruction", lambda b: b.preprocess(COPIES, "--instruction", ""),
     ["no '->' in the instruction", "(at character 0 of the instruction '')"]),
    ("instruction that is a number", lambda b: b.api(lambda: Task(instruction=5)),
     ["an instruction is a string, or a list of template strings; got int 5"]),
    # ---- configs and plugins
    ("YAML key given twice", lambda b: b.train_yaml("optimization: {lr: 0.1}\noptimization: {lr: 0.2}"),
     ["config.yaml: not valid YAML", "the key 'optimization' is given twice", "line 2"]),
    ("YAML not in UTF-8", lambda b: b.train_yaml(b"common: {log_file: caf\xe9.log}"),
     ["config.yaml: not UTF-8 text"]),
    ("YAML lr .nan", lambda b: b.train_yaml("optimization: {lr: .nan}"), ["optimization.lr", NAN_FLOAT]),
    ("YAML that is a list", lambda b: b.train_yaml("- tasks: []\n- lr: 0.1"),
     ["config.yaml: the config must be a mapping"]),
    ("seed beyond 64 bits", lambda b: b.train_yaml("", "seed=99999999999999999999999"),
     ["common.seed=99999999999999999999999", "must be in [0, 2**63)"]),
    ("plugin raising on import", lambda b: b.train("--user-dir", plugin(b, "raise RuntimeError('boom')"), data=COPIES),
     ["--user-dir", "importing the plugin failed at", "__init__.py, line 1", "RuntimeError: boom"]),
    ("plugin with a syntax error", lambda b: b.train("--user-dir", plugin(b, "x = (\n"), data=COPIES),
     ["--user-dir", "importing the plugin failed at", "SyntaxError"]),
    ("tokenizer file that is not one", lambda b: b.train("--tokenizer", b.file("tok.json", "[1, 2]"), data=COPIES),
     ["tokenizer ", "tok.json", "cannot be parsed"]),
    # ---- command lines
    ("train: a GPU this machine lacks", lambda b: b.train("--device", f"cuda:{torch.cuda.device_count()}",
                                                          data=COPIES),
     [f"device 'cuda:{torch.cuda.device_count()}'", "this machine has"]),
    ("train: device name unknown", lambda b: b.train("--device", "tpu", data=COPIES),
     ['expected "auto", "cpu", "cuda", "cuda:N" or "mps"']),
    ("train: --lr inf", lambda b: b.train("--lr", "inf", data=COPIES), ["--lr", NAN_FLOAT]),
    ("train: --save-dir is a file", lambda b: b.train("--save-dir", b.file("taken", "x"), data=COPIES),
     ["taken is a file; expected a folder"]),
    ("train: --restore-file is a folder", lambda b: b.train("--restore-file", str(b.root), data=COPIES),
     ["--restore-file", "is a folder; expected a checkpoint file"]),
    ("train: --finetune-from-model empty file", lambda b: b.train("--finetune-from-model", b.file("e.pt", b""),
                                                                  data=COPIES),
     ["e.pt is empty (0 bytes)"]),
    ("generate: --batch-size 0", lambda b: b.generate("--task", "copy", "--batch-size", "0"),
     ["--batch-size", "expected a positive integer, got '0'"]),
    ("generate: --lenpen nan", lambda b: b.generate("--task", "copy", "--lenpen", "nan"), ["--lenpen", NAN_FLOAT]),
    ("generate: --device tpu", lambda b: b.generate("--task", "copy", "--device", "tpu"),
     ["device 'tpu': expected auto, cpu, cuda, cuda:N or mps"]),
    ("validate: --max-valid-samples 0", lambda b: b.validate("--max-valid-samples", "0"),
     ["--max-valid-samples", "expected a positive integer, got '0'"]),
    ("preprocess: --destdir is a file", lambda b: Outcome(*b.run(preprocess_main, [
        "--input", b.micro.train, "--destdir", b.file("taken", "x")]), []),
     ["taken is a file; expected a shard folder"]),
    # ---- Python API
    ("Task answers given as one string", lambda b: b.api(lambda: Task(instruction=CLOSED, answers="yes")),
     ["answers must be a list", "got str 'yes'"]),
    ("Task weight given as a string", lambda b: b.api(lambda: Task(instruction=COPY, weight="2")),
     ["weight must be a positive number, got '2'"]),
    ("fit with one Task instead of a list", lambda b: b.api(lambda: Trainer(
        arch="micro", device="cpu", max_update=1, save_dir=str(b.root / "run")).fit(
        tasks=Task(instruction=COPY).add_dataset(COPIES)), TypeError),
     ["expects a list of Task objects, got Task"]),
    ("from_pretrained given a folder", lambda b: b.api(lambda: OFASys.from_pretrained(str(b.root)), CheckpointError),
     ["is a folder; expected a checkpoint file"]),
    ("inference on text with a lone surrogate", lambda b: b.api(lambda: OFASys.from_pretrained(
        str(b.checkpoint), device="cpu").inference(COPY, {"src": "a\ud800"})),
     ["row 0, column 'src'", "lone surrogate"]),
]


# ---- inputs that look bad but are normal ------------------------------------------------------------------


def test_a_byte_order_mark_is_not_part_of_the_first_column(bench):
    rows = "".join(json.dumps(row) + "\n" for row in COPIES)
    jsonl = as_row_source(bench.file("bom.jsonl", "\ufeff" + rows.replace("\n", "\r\n")))
    tsv_rows = "".join(f"{row['src']}\t{row['tgt']}\n" for row in COPIES)
    tsv = as_row_source(bench.file("bom.tsv", "\ufeffsrc\ttgt\n" + tsv_rows))
    assert [jsonl[i] for i in range(len(jsonl))] == COPIES == [tsv[i] for i in range(len(tsv))]


def test_a_closed_set_test_split_without_targets_is_preprocessed(bench):
    rows = [{"src": "one two"}, {"src": "three"}]
    assert bench.preprocess(rows, "--instruction", CLOSED, "--split", "test").code == 0
    with_null = [{"src": "one two", "tgt": "one"}, {"src": "three", "tgt": None}]
    assert bench.preprocess(with_null, "--instruction", CLOSED, "--split", "test").code == 0
    assert is_shard_dir(bench.root / "shards")


def test_a_benchmark_answer_never_seen_in_training_counts_as_a_miss(bench, capsys):
    """The answer set is the training targets; a valid row answered otherwise is not an error: its loss is
    unconstrained, it is scored (as a miss) and named once in a warning."""
    valid = [{"src": "red blue", "tgt": "purple"}, {"src": "one two", "tgt": "one"}]
    with pytest.warns(UserWarning, match=r"row 0, column 'tgt': the target 'purple' .* count as misses") as caught:
        outcome = bench.train_yaml(closed_set_yaml(bench, valid))
    assert outcome.code == 0 and len([w for w in caught if "purple" in str(w.message)]) == 1
    log = [json.loads(line) for line in (bench.root / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(record["tasks"]["cls"]["loss"]) for record in log if record.get("split") == "valid")
    checkpoint, results = bench.root / "run" / "checkpoint_last.pt", bench.root / "generated.jsonl"
    argv = ["--path", checkpoint, "--task", "cls", "--data", bench.root / "valid.jsonl"]
    with pytest.warns(UserWarning, match="purple"):
        assert validate.main([str(arg) for arg in argv]) == 0
    assert generate.main([str(arg) for arg in [*argv, "--results-path", results]]) == 0
    predictions = [json.loads(line)["text"] for line in results.read_text().splitlines()]
    answers = {row["tgt"] for row in copy_rows(16)}
    assert len(predictions) == 2 and predictions[0] in answers  # the miss: constrained to the answers
    assert "cls | test | 2 rows | accuracy" in capsys.readouterr().out


def test_a_data_set_smaller_than_the_workers_prefetch_trains(bench):
    """Two workers prefetch 4 batches: two epochs ahead of the trainer on 8 rows in batches of 4."""
    outcome = bench.train("--num-workers", "2", "--max-update", "5", data=COPIES)
    last = bench.root / "run" / "checkpoint_last.pt"
    assert outcome.code == 0 and last.exists(), outcome.message
    assert load_checkpoint(str(last))["train_meta"]["num_updates"] == 5


def test_yaml_merge_keys_may_override_what_they_bring_in(bench):
    merged = (f'tasks:\n  - &copy {{name: a, instruction: "{COPY}", data: {bench.micro.train}}}\n'
              f"  - {{<<: *copy, name: b}}\n")
    assert bench.train_yaml(merged, "print_config=true").code == 0


def test_interactive_answers_every_line_after_broken_ones(bench):
    lines = [NESTED, '{"src": "a", "src": "b"}\n', '{"src": "a\\ud800"}\n', '{"src": "one two"}\n']
    replies = []

    class Out:
        def write(self, text):
            replies.extend(json.loads(line) for line in text.splitlines())

        def flush(self):
            pass

    code = interactive.main(["--path", str(bench.checkpoint), "--instruction", COPY, "--device", "cpu"],
                            stdin=iter(lines), stdout=Out())
    assert code == 1 and len(replies) == 4
    assert "nested more than" in replies[0]["error"] and "appears twice" in replies[1]["error"]
    assert "lone surrogate" in replies[2]["error"] and "text" in replies[3]
