"""ofasys-preprocess: lossless shards from jsonl/tsv/parquet/media folders, bad-row handling, workers, tokenizer."""
import base64
import io
import json
import os
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_shards import read_mmidx_independently

from ofasys_fs.cli import preprocess as cli
from ofasys_fs.data.shards import ShardDataset, ShardWriter, is_shard_dir, read_manifest
from ofasys_fs.vocab import Vocabulary

CAPTION = "[IMAGE:img] what does the image describe? -> [TEXT:cap]"


def png(colour, size=(6, 4)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def caption_data(tmp_path):
    """train.jsonl with rows referencing real PNG files by relative path; returns (file, rows, png bytes)."""
    images = {f"img/{i}.png": png((40 * i, 10, 200)) for i in range(4)}
    (tmp_path / "img").mkdir()
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    rows = [{"img": name, "cap": f"a red square n°{i} ☕", "refs": [f"ref {i}", "other"], "box": [1, 2, 3.5, 4]}
            for i, name in enumerate(images)]
    return write_jsonl(tmp_path / "train.jsonl", rows), rows, images


def run(capsys, *argv):
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def shard_rows(folder, split="train"):
    return list(ShardDataset(folder, split))


def assert_failed_cleanly(code, err, destdir):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ofasys-preprocess: error: "), err
    assert "Traceback" not in err
    assert not is_shard_dir(destdir)
    assert not [name for name in os.listdir(destdir) if not name.startswith(".")] if destdir.exists() else True


def test_jsonl_with_image_paths_round_trips_exactly(tmp_path, capsys, caption_data):
    path, rows, images = caption_data
    code, out, _ = run(capsys, "--input", path, "--destdir", tmp_path / "shards")
    assert code == 0 and "wrote 4 rows" in out
    stored = shard_rows(tmp_path / "shards")
    assert stored == [{**row, "img": images[row["img"]]} for row in rows]
    manifest = read_manifest(tmp_path / "shards")
    assert manifest["splits"]["train"]["columns"]["img"] == {"kind": "media", "dtype": "uint8", "format": "png"}
    assert manifest["skipped_rows"] == {"train": 0} and manifest["tokenizer_hash"] is None
    code, items = read_mmidx_independently(str(tmp_path / "shards" / "train.cap"))
    assert code == 1 and [item.decode("utf-8") for item in items] == [row["cap"] for row in rows]


def test_tsv_and_parquet_round_trip(tmp_path, capsys):
    image = png((1, 2, 3))
    (tmp_path / "a.png").write_bytes(image)
    (tmp_path / "train.tsv").write_text("img\tcap\tlabel\na.png\tone\tyes\na.png\ttwo\tno\n", encoding="utf-8")
    assert run(capsys, "--input", tmp_path / "train.tsv", "--destdir", tmp_path / "tsv")[0] == 0
    assert shard_rows(tmp_path / "tsv") == [{"img": image, "cap": "one", "label": "yes"},
                                           {"img": image, "cap": "two", "label": "no"}]

    table = pa.table({"img": [image, png((9, 9, 9))], "cap": ["x", None], "objs": [[{"b": [1, 2]}], []]})
    pq.write_table(table, tmp_path / "train.parquet")
    assert run(capsys, "--input", tmp_path / "train.parquet", "--destdir", tmp_path / "pq")[0] == 0
    assert shard_rows(tmp_path / "pq") == table.to_pylist()


def test_media_columns_flag_decodes_base64_cells_and_checks_the_names(tmp_path, capsys):
    image = png((7, 8, 9))
    (tmp_path / "train.tsv").write_text(f"id\timg\n1\t{base64.b64encode(image).decode()}\n", encoding="utf-8")
    assert run(capsys, "--input", tmp_path / "train.tsv", "--destdir", tmp_path / "a", "--media-columns", "img")[0] == 0
    assert shard_rows(tmp_path / "a") == [{"id": "1", "img": image}]
    code, _, err = run(capsys, "--input", tmp_path / "train.tsv", "--destdir", tmp_path / "b", "--media-columns", "wav")
    assert_failed_cleanly(code, err, tmp_path / "b")
    assert "media column(s) ['wav'] are not columns of the rows; they have ['id', 'img']" in err


def test_media_folder_with_metadata_jsonl(tmp_path, capsys):
    folder = tmp_path / "pets"
    folder.mkdir()
    files = {"cat.png": png((255, 0, 0)), "dog.png": png((0, 255, 0))}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    write_jsonl(folder / "metadata.jsonl", [{"file_name": name, "text": name[:3]} for name in files])
    assert run(capsys, "--input", folder, "--destdir", tmp_path / "shards")[0] == 0
    assert shard_rows(tmp_path / "shards") == [{"image": data, "text": name[:3]} for name, data in files.items()]


def test_skip_bad_rows_counts_and_reports_each(tmp_path, capsys, caption_data):
    path, rows, images = caption_data
    good = path.read_bytes()
    bad = (b'{"img": "img/0.png", "cap": "caf\xe9"}\n'                       # not UTF-8
           + json.dumps({"img": "img/1.png", "refs": [], "box": []}).encode() + b"\n"  # no cap
           + json.dumps({**rows[0], "img": "img/missing.png"}).encode() + b"\n")
    path.write_bytes(good + bad)
    code, _, err = run(capsys, "--input", path, "--destdir", tmp_path / "shards", "--skip-bad-rows")
    assert code == 0
    skips = [line for line in err.splitlines() if line.startswith("ofasys-preprocess: skipped")]
    assert len(skips) == 3
    assert "line 5 (row 4)" in skips[0] and "UTF-8" in skips[0]
    assert "line 6 (row 5), column 'cap': missing" in skips[1]
    assert "line 7 (row 6)" in skips[2] and "column 'img'" in skips[2] and "missing.png" in skips[2]
    assert read_manifest(tmp_path / "shards")["skipped_rows"] == {"train": 3}
    assert len(shard_rows(tmp_path / "shards")) == 4


@pytest.mark.parametrize("content, message", [
    (b'{"img": "img/0.png", "cap": "ok"}\n{"img": "img/1.png", "cap": "\xff"}\n', "line 2 (row 1): not valid UTF-8"),
    (b'{"img": "img/0.png", "cap": "ok"}\n{"img": "img/1.png"}\n', "line 2 (row 1), column 'cap': missing"),
    (b'{"img": "img/0.png", "cap": "ok"}\n{"img": "img/9.png", "cap": "x"}\n', "row 1): column 'img': file"),
    (b"", "the file has no rows"),
])
def test_bad_data_stops_with_one_error_line_and_no_shard(tmp_path, capsys, caption_data, content, message):
    path, _, _ = caption_data
    path.write_bytes(content)
    code, _, err = run(capsys, "--input", path, "--destdir", tmp_path / "shards")
    assert_failed_cleanly(code, err, tmp_path / "shards")
    assert str(path) in err and message in err


def test_instruction_is_recorded_with_the_default_tokenizer_hash(tmp_path, capsys, caption_data):
    path, rows, _ = caption_data
    assert run(capsys, "--input", path, "--destdir", tmp_path / "shards", "--instruction", CAPTION)[0] == 0
    manifest = read_manifest(tmp_path / "shards")
    assert manifest["instruction"] == CAPTION and manifest["tokenizer_hash"] == Vocabulary.default().tokenizer_hash


def test_an_image_slot_larger_than_the_default_side_is_checked_without_a_model(tmp_path, capsys, caption_data):
    path, _, _ = caption_data
    instruction = CAPTION.replace("[IMAGE:img]", "[IMAGE:img,size=480]")  # training checks it against the model
    assert instruction != CAPTION
    assert run(capsys, "--input", path, "--destdir", tmp_path / "shards", "--instruction", instruction)[0] == 0


@pytest.mark.parametrize("instruction, change, messages", [
    (CAPTION, {"img": "img/corrupt.png"}, ("column 'img': cannot decode", "(cell: 'img/corrupt.png')")),
    (CAPTION, {"cap": None}, ("column 'cap' needed by the decoder slot [TEXT:cap] is None",)),
    ("[IMAGE:img] where? -> [BOX:box]", {"box": [1, 2, "x", 4]}, ("column 'box': box [1, 2, 'x', 4] is not numeric",)),
])
def test_rows_failing_the_instruction_stop_the_run(tmp_path, capsys, caption_data, instruction, change, messages):
    path, rows, _ = caption_data
    (tmp_path / "img" / "corrupt.png").write_bytes(png((0, 0, 0))[:30])
    write_jsonl(path, [rows[0], {**rows[1], **change}])
    code, _, err = run(capsys, "--input", path, "--destdir", tmp_path / "shards", "--instruction", instruction)
    assert_failed_cleanly(code, err, tmp_path / "shards")
    assert f"{path}, line 2 (row 1): " in err and all(message in err for message in messages)


def test_two_workers_write_identical_shards(tmp_path, capsys, caption_data):
    path, rows, _ = caption_data
    write_jsonl(path, rows * 10 + [{**rows[0], "img": "img/missing.png"}] + rows * 5)
    outputs = {}
    for workers in (1, 2):
        destdir = tmp_path / f"w{workers}"
        code, _, err = run(capsys, "--input", path, "--destdir", destdir, "--workers", workers,
                           "--instruction", CAPTION, "--skip-bad-rows")
        assert code == 0 and "line 41 (row 40)" in err
        outputs[workers] = {name: (destdir / name).read_bytes() for name in os.listdir(destdir)
                            if name.endswith((".bin", ".idx"))}
    assert outputs[1] == outputs[2] and len(outputs[1]) == 8
    assert len(shard_rows(tmp_path / "w2")) == 60


def test_train_tokenizer_saves_it_and_records_its_hash(tmp_path, capsys, caption_data):
    path, _, _ = caption_data
    destdir = tmp_path / "shards"
    code, _, _ = run(capsys, "--input", path, "--destdir", destdir, "--train-tokenizer", "--vocab-size", 300,
                     "--text-columns", "cap,refs", "--instruction", CAPTION)
    assert code == 0
    trained = Vocabulary.from_tokenizer_file(destdir / "tokenizer.json")
    manifest = read_manifest(destdir)
    assert manifest["tokenizer_hash"] == trained.tokenizer_hash != Vocabulary.default().tokenizer_hash
    assert manifest["tokenizer"] == "tokenizer.json"
    assert trained.decode(trained.encode("a red square")) == "a red square"


def test_hf_dataset_folder_needs_the_datasets_package(tmp_path, capsys, monkeypatch):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    code, _, err = run(capsys, "--input", tmp_path / "hf", "--destdir", tmp_path / "shards")
    assert code == 1 and "pip install datasets" in err


def test_hf_dataset_media_features_are_stored_undecoded(tmp_path, capsys, monkeypatch):
    import dataclasses

    @dataclasses.dataclass
    class Image:  # duck-types datasets.Image
        decode: bool = True

    class FakeDataset(list):
        features = {"image": Image(), "label": object()}

        def cast_column(self, name, feature):
            assert not feature.decode
            return FakeDataset({**row, name: {"bytes": png((5, 5, 5)), "path": None}} for row in self)

    loaded = []
    fake = types.SimpleNamespace(load_from_disk=lambda path: loaded.append(path) or {
        "train": FakeDataset([{"image": "decoded PIL image", "label": 3}])})
    monkeypatch.setitem(sys.modules, "datasets", fake)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "dataset_dict.json").write_text("{}")
    assert run(capsys, "--input", tmp_path / "hf", "--destdir", tmp_path / "shards")[0] == 0
    assert loaded == [str(tmp_path / "hf")]
    assert shard_rows(tmp_path / "shards") == [{"image": png((5, 5, 5)), "label": 3}]
    code, _, err = run(capsys, "--input", tmp_path / "hf", "--destdir", tmp_path / "v", "--split", "valid")
    assert code == 1 and "no split 'valid'" in err and "['train']" in err


def test_interrupted_preprocess_leaves_no_manifest(tmp_path, capsys, caption_data, monkeypatch):
    path, _, _ = caption_data

    def interrupt(self, row):
        raise KeyboardInterrupt

    monkeypatch.setattr(ShardWriter, "add_row", interrupt)
    code, _, err = run(capsys, "--input", path, "--destdir", tmp_path / "shards")
    assert code == 130 and "interrupted" in err
    assert not is_shard_dir(tmp_path / "shards")
    assert not [name for name in os.listdir(tmp_path / "shards") if not name.startswith(".")]


def test_shards_of_another_tokenizer_are_refused_when_used(tmp_path):
    from ofasys_fs.data.dataset import TaskDataset
    from ofasys_fs.data.encode import RowEncoder
    from ofasys_fs.errors import DataError
    from ofasys_fs.tasks.base import Task
    from ofasys_fs.tokenizer import train_tokenizer

    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"src": f"row {i} text", "tgt": f"out {i}"}) + "\n" for i in range(4)))
    assert cli.main(["--input", str(src), "--destdir", str(tmp_path / "shard"),
                 "--instruction", "[TEXT:src] -> [TEXT:tgt]"]) == 0
    task = Task(instruction="[TEXT:src] -> [TEXT:tgt]").add_dataset(str(tmp_path / "shard"), "train")
    same = Vocabulary.default(num_bins=10, num_codes=0)  # other bins, same tokenizer: accepted
    assert len(TaskDataset(task, "train", RowEncoder.for_task(task, same))) == 4
    other = Vocabulary(same.config.__class__(num_bins=10, num_codes=0),
                       train_tokenizer(["some other corpus entirely"] * 20, vocab_size=300))
    with pytest.raises(DataError, match="was preprocessed with tokenizer .* run ofasys-preprocess again"):
        TaskDataset(task, "train", RowEncoder.for_task(task, other))
