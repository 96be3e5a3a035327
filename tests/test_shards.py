"""Shard folders and MMIDIDX files: lossless round trips, fairseq layout, corruption and commit-marker errors."""
import io
import json
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from ofasys_fs.data.indexed import IndexedDataset, IndexedWriter, ShardError
from ofasys_fs.data.shards import ColumnSpec, ShardDataset, ShardWriter, is_shard_dir, read_manifest


def read_mmidx_independently(prefix):
    """Minimal MMIDIDX v1 reader (fairseq layout) with struct and plain reads: [(dtype code, raw bytes)]."""
    with open(prefix + ".idx", "rb") as f:
        assert f.read(9) == b"MMIDIDX\x00\x00"
        (version,) = struct.unpack("<Q", f.read(8))
        (code,) = struct.unpack("<B", f.read(1))
        (count,) = struct.unpack("<Q", f.read(8))
        sizes = struct.unpack(f"<{count}i", f.read(4 * count))
        pointers = struct.unpack(f"<{count}q", f.read(8 * count))
        assert f.read() == b"", "fairseq's layout has nothing after the pointers"
    assert version == 1
    itemsize = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 8, 8: 2}[code]
    with open(prefix + ".bin", "rb") as f:
        data = f.read()
    return code, [data[p:p + s * itemsize] for p, s in zip(pointers, sizes)]


def png_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


ROWS = [
    {"cap": "a café ☕ — 猫", "img": png_bytes(), "box": [0.5, 1.25, 30.0, 40.75],
     "table": {"header": ["b", "a"], "rows": [[1, "x"], [2, None]]}, "extra": None},
    {"cap": "", "img": png_bytes()[:20], "box": [], "table": {"nested": {"deep": [[], {}]}}, "extra": [1, 2]},
    {"cap": "line\nbreak\ttab", "img": b"", "box": [1e-9, -2.5], "table": [], "extra": {"k": "v"}},
]


def write_split(folder, split, rows, **writer_options):
    writer = ShardWriter(folder, split, **writer_options)
    for row in rows:
        writer.add_row(row)
    return writer.finalize({"source": f"{split}.jsonl"}, tokenizer_hash="h1", skipped_rows=2)


@pytest.fixture
def shard(tmp_path):
    write_split(tmp_path, "train", ROWS, columns={"extra": "json"})
    return tmp_path


def test_rows_round_trip_losslessly(shard):
    dataset = ShardDataset(shard, "train")
    assert len(dataset) == len(ROWS)
    assert [dataset[i] for i in range(len(ROWS))] == ROWS
    assert list(dataset[0]["table"]) == ["header", "rows"]  # key order survives (no key sorting)
    assert dataset[-1] == ROWS[-1]
    assert isinstance(dataset[0]["img"], bytes)
    assert Image.open(io.BytesIO(dataset[0]["img"])).size == (4, 3)
    with pytest.raises(IndexError, match="row 3 out of range"):
        dataset[3]


def test_manifest_fields(shard):
    manifest = read_manifest(shard)
    assert manifest["version"] == 1 and manifest["tokenizer_hash"] == "h1"
    assert manifest["skipped_rows"] == {"train": 2} and manifest["source"] == "train.jsonl"
    columns = manifest["splits"]["train"]["columns"]
    assert manifest["splits"]["train"]["rows"] == 3
    assert columns["cap"] == {"kind": "text", "dtype": "uint8"}
    assert columns["img"] == {"kind": "media", "dtype": "uint8"}  # png, png prefix, empty: no single format
    assert columns["box"]["kind"] == columns["table"]["kind"] == "json"
    assert columns["extra"] == {"kind": "json", "dtype": "uint8", "null_rows": [0]}
    assert ShardDataset(shard, "train").columns == columns


def test_files_read_by_independent_fairseq_layout_reader(shard):
    for column in ("cap", "img", "box", "table", "extra"):
        code, items = read_mmidx_independently(os.path.join(shard, f"train.{column}"))
        assert code == 1
        expected = [row[column] for row in ROWS]
        if column == "cap":
            assert [item.decode("utf-8") for item in items] == expected
        elif column == "img":
            assert items == expected
        else:
            assert [json.loads(item) if item else None for item in items] == expected
    assert not [name for name in os.listdir(shard) if name.endswith(".partial")]


def test_media_format_is_sniffed_or_declared(tmp_path):
    write_split(tmp_path, "train", [{"img": png_bytes()}, {"img": png_bytes()}])
    assert read_manifest(tmp_path)["splits"]["train"]["columns"]["img"]["format"] == "png"
    write_split(tmp_path, "valid", [{"img": b"\xff\xd8\xff\xe0"}], columns={"img": ColumnSpec("media", ".JPEG")})
    assert read_manifest(tmp_path)["splits"]["valid"]["columns"]["img"]["format"] == "jpeg"


def test_numpy_values_and_tuples_are_stored_as_plain_json(tmp_path):
    write_split(tmp_path, "train", [{"v": {"a": np.float32(0.5), "b": np.arange(3), "t": (1, 2)}}])
    assert ShardDataset(tmp_path, "train")[0] == {"v": {"a": 0.5, "b": [0, 1, 2], "t": [1, 2]}}


def test_indexed_writer_round_trips_integer_arrays(tmp_path):
    prefix = str(tmp_path / "tokens")
    writer = IndexedWriter(prefix, np.uint16)
    for item in ([5, 65535, 0], [], np.array([7], dtype=np.int64)):
        writer.add(item)
    writer.finalize()
    dataset = IndexedDataset(prefix)
    assert [dataset[i].tolist() for i in range(3)] == [[5, 65535, 0], [], [7]]
    assert dataset.sizes.tolist() == [3, 0, 1]
    code, items = read_mmidx_independently(prefix)
    assert code == 8 and np.frombuffer(items[0], "<u2").tolist() == [5, 65535, 0]
    restored = pickle.loads(pickle.dumps(dataset))
    assert restored[0].tolist() == [5, 65535, 0]


def test_indexed_writer_refuses_lossy_values_and_float32(tmp_path):
    writer = IndexedWriter(str(tmp_path / "tokens"), np.uint8)
    with pytest.raises(ShardError, match="item 0 .*does not fit uint8"):
        writer.add([1, 256])
    wide = IndexedWriter(str(tmp_path / "wide"), np.int32)
    with pytest.raises(ShardError, match="not a multiple"):
        wide.add(b"abc")
    wide.abort()
    with pytest.raises(ShardError, match="float32 has no MMIDIDX code"):
        IndexedWriter(str(tmp_path / "f"), np.float32)
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_megatron_layout_with_doc_index_is_read(tmp_path):
    prefix = str(tmp_path / "mega")
    sizes, pointers, doc_idx = [2, 1], [0, 8], [0, 1, 2]
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 4, 2, len(doc_idx)))
        f.write(struct.pack("<2i2q3q", *sizes, *pointers, *doc_idx))
    with open(prefix + ".bin", "wb") as f:
        f.write(np.array([10, -20, 30], dtype="<i4").tobytes())
    dataset = IndexedDataset(prefix)
    assert [dataset[0].tolist(), dataset[1].tolist()] == [[10, -20], [30]]


def test_folder_without_manifest_is_not_a_shard(shard):
    os.remove(shard / "manifest.json")
    assert not is_shard_dir(shard)
    with pytest.raises(ShardError, match="manifest.json is missing.*preprocess ran incompletely"):
        ShardDataset(shard, "train")


def test_unknown_split_lists_the_available_ones(shard):
    with pytest.raises(ShardError, match=r"no split 'test'.*\['train'\]"):
        ShardDataset(shard, "test")


def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize("corrupt, message", [
    (lambda idx, bin_: _patch(idx, 0, b"TNTIDX\x00\x00\x00"), "wrong magic"),
    (lambda idx, bin_: _patch(idx, 9, struct.pack("<Q", 2)), "bad version 2"),
    (lambda idx, bin_: _patch(idx, 17, b"\x63"), "unknown dtype code 99"),
    (lambda idx, bin_: os.truncate(idx, os.path.getsize(idx) - 5), "truncated"),
    (lambda idx, bin_: os.truncate(idx, 12), "truncated header"),
    (lambda idx, bin_: _patch(idx, 26 + 12 + 8 * 2, struct.pack("<q", 10**6)), "pointer out of range: item 2"),
    (lambda idx, bin_: os.truncate(bin_, os.path.getsize(bin_) - 1), "pointer out of range: item 2"),
    (lambda idx, bin_: _patch(idx, 26 + 12 + 8 * 2, struct.pack("<q", 0)), "not monotonic: item 2"),
])
def test_corrupt_index_raises_shard_error_naming_the_file(shard, corrupt, message):
    idx, bin_ = str(shard / "train.cap.idx"), str(shard / "train.cap.bin")
    corrupt(idx, bin_)
    with pytest.raises(ShardError, match=message) as info:
        ShardDataset(shard, "train")
    assert "train.cap.idx" in str(info.value)


def test_index_row_count_must_match_manifest(shard, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    write_split(other, "train", ROWS[:2], columns={"extra": "json"})
    os.replace(other / "train.box.idx", shard / "train.box.idx")
    os.replace(other / "train.box.bin", shard / "train.box.bin")
    with pytest.raises(ShardError, match="train.box.idx: 2 uint8 items, but manifest.json says 3"):
        ShardDataset(shard, "train")


def test_dataset_pickles_without_its_data(shard):
    dataset = ShardDataset(shard, "train")
    dataset[0]
    blob = pickle.dumps(dataset)
    assert len(blob) < 2000 and b"IHDR" not in blob  # memmaps dropped: no file contents travel
    assert pickle.loads(blob)[1] == ROWS[1]


def test_two_splits_share_one_folder_and_rewrites_replace_a_split(shard):
    write_split(shard, "valid", [{"q": "why?", "answers": ["a", "b"]}])
    assert ShardDataset(shard, "train")[2] == ROWS[2]
    assert ShardDataset(shard, "valid")[0] == {"q": "why?", "answers": ["a", "b"]}
    write_split(shard, "train", [{"cap": "new"}])
    manifest = read_manifest(shard)
    assert sorted(manifest["splits"]) == ["train", "valid"] and manifest["splits"]["train"]["rows"] == 1
    assert ShardDataset(shard, "train")[0] == {"cap": "new"}
    assert not os.path.exists(shard / "train.img.bin")  # columns the new train split lacks are removed


def test_conflicting_tokenizer_hash_is_refused(shard):
    writer = ShardWriter(shard, "valid")
    writer.add_row({"cap": "x"})
    with pytest.raises(ShardError, match="tokenizer h2.*records tokenizer h1"):
        writer.finalize(tokenizer_hash="h2")
    writer.abort()
    assert "valid" not in read_manifest(shard)["splits"]


def test_missing_column_is_an_error_unless_optional(tmp_path):
    writer = ShardWriter(tmp_path, "train")
    writer.add_row({"a": "x", "b": 1})
    with pytest.raises(ShardError, match=r"row 1, column 'b': missing"):
        writer.add_row({"a": "y"})
    with pytest.raises(ShardError, match=r"row 2: column 'c' is not among the columns \['a', 'b'\]"):
        writer.add_row({"a": "y", "b": 2, "c": 3})
    writer.add_row({"a": "z", "b": 3})
    writer.finalize()
    assert [row["a"] for row in ShardDataset(tmp_path, "train")] == ["x", "z"]  # rejected rows left no trace

    with ShardWriter(tmp_path, "valid", optional=["b"]) as optional_writer:
        optional_writer.add_row({"a": "x"})
        optional_writer.add_row({"a": "y", "b": [1]})
        optional_writer.finalize()
    assert list(ShardDataset(tmp_path, "valid")) == [{"a": "x", "b": None}, {"a": "y", "b": [1]}]


def test_value_of_another_kind_names_row_and_column(tmp_path):
    writer = ShardWriter(tmp_path, "train")
    writer.add_row({"cap": "text", "img": b"\x00", "box": [1, 2]})
    for bad, message in [({"cap": ["list"], "img": b"", "box": []}, "column 'cap': got list .*text column"),
                         ({"cap": "", "img": "path.jpg", "box": []}, "column 'img': got str .*media column"),
                         ({"cap": "", "img": b"", "box": "1,2"}, "column 'box': got str .*json column.*declare"),
                         ({"cap": "", "img": b"", "box": {1: 2}}, "column 'box'.*non-str key 1"),
                         ({"cap": "", "img": b"", "box": [b"x"]}, r"box'.*value\[0\] is a bytes"),
                         ({"cap": "\ud800", "img": b"", "box": []}, "column 'cap': cannot store")]:
        with pytest.raises(ShardError, match=message):
            writer.add_row(bad)
    writer.abort()
    assert sorted(os.listdir(tmp_path)) == []


def test_declared_json_column_accepts_strings(tmp_path):
    write_split(tmp_path, "train", [{"answer": "yes"}, {"answer": ["yes", "no"]}], columns={"answer": "json"})
    assert [row["answer"] for row in ShardDataset(tmp_path, "train")] == ["yes", ["yes", "no"]]


def test_unfinished_writer_leaves_no_manifest_and_no_final_files(tmp_path):
    with ShardWriter(tmp_path, "train") as writer:
        writer.add_row({"cap": "x"})
    assert os.listdir(tmp_path) == []


def test_names_that_cannot_be_file_names_are_refused(tmp_path):
    with pytest.raises(ShardError, match="split name 'train.v2'"):
        ShardWriter(tmp_path, "train.v2")
    with pytest.raises(ShardError, match="row 0: column name '../x' cannot name a file"):
        ShardWriter(tmp_path, "train").add_row({"../x": 1})
    with pytest.raises(ShardError, match="column name 'a/b'"):
        ShardWriter(tmp_path, "train", columns={"a/b": "text"})
