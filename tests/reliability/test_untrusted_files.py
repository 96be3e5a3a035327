"""Untrusted checkpoints and shards (docs/reliability.md, guarantee 4).

A checkpoint whose pickle would run code is refused by every entry point and nothing runs; truncated, damaged
or foreign checkpoints and shards give a CheckpointError / ShardError naming the file. The MMIDIDX header and
pointer cases already covered by tests/test_shards.py (wrong magic, version, dtype code, truncated index or
.bin, pointers past the end, non-monotonic pointers, row counts that disagree with the manifest) are not
repeated here; this file adds the rest.
"""
import builtins
import json
import os
import pickle
import random
import struct
import zipfile

import pytest
import torch

from ofasys_fs import OFASys
from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.cli import generate
from ofasys_fs.cli.train import main as train_main
from ofasys_fs.data.shards import ShardDataset, ShardError, ShardWriter
from ofasys_fs.errors import CheckpointError
from ofasys_fs.models.generalist import GeneralistModel

from .conftest import COPY


class CodePayload:
    """Unpickling this runs Python code that creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture(params=["zip", "raw-pickle"])
def malicious_checkpoint(request, reference, tmp_path):
    """A real checkpoint with a code payload hidden in its config: torch.save's zip format, or a bare pickle."""
    marker = tmp_path / "code_ran"
    state = torch.load(reference, weights_only=True)
    state["config"]["train"]["common"]["seed"] = CodePayload(marker)
    path = tmp_path / "checkpoint_evil.pt"
    if request.param == "zip":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))  # the legacy torch.save format
    return path, marker


def test_the_payload_is_live(tmp_path):
    marker = tmp_path / "code_ran"
    pickle.loads(pickle.dumps(CodePayload(marker)))
    assert marker.exists()  # so the refusals below are what keeps it from running


ENTRY_POINTS = {
    "load_checkpoint": lambda path, micro, save_dir: load_checkpoint(str(path)),
    "OFASys.from_pretrained": lambda path, micro, save_dir: OFASys.from_pretrained(str(path), device="cpu"),
    "ofasys-train --restore-file": lambda path, micro, save_dir: train_main(
        micro.argv(save_dir, "--restore-file", str(path))),
    "ofasys-train --finetune-from-model": lambda path, micro, save_dir: train_main(
        micro.argv(save_dir, "--finetune-from-model", str(path))),
    "ofasys-generate --path": lambda path, micro, save_dir: generate.main(
        ["--path", str(path), "--instruction", COPY, "--data", str(micro.train), "--results-path", str(save_dir)]),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_checkpoint_that_would_run_code_is_refused_everywhere(malicious_checkpoint, entry, micro, tmp_path, capsys):
    path, marker = malicious_checkpoint
    save_dir = tmp_path / "out"
    try:
        code = ENTRY_POINTS[entry](path, micro, save_dir)
        message = capsys.readouterr().err
        assert code == 1 and len(message.strip().splitlines()) == 1, message
    except CheckpointError as err:
        message = str(err)
    assert f"refusing to load {path}" in message and "could run code" in message and "nothing in it was run" in message
    assert not marker.exists()
    assert not save_dir.exists() or not any(save_dir.iterdir())  # nothing written


def rewrite(reference, tmp_path, change) -> str:
    """A copy of the reference checkpoint with `change(bytes) -> bytes` applied."""
    path = tmp_path / "checkpoint_damaged.pt"
    path.write_bytes(change(reference.read_bytes()))
    return str(path)


def saved(value):
    def change(_):
        import io

        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()
    return change


def edited(edit):
    """The reference checkpoint's dict with `edit(state)` applied in place: safe to unpickle, wrong inside."""
    def change(data):
        import io

        state = torch.load(io.BytesIO(data), weights_only=True)
        edit(state)
        return saved(state)(data)
    return change


DAMAGED = {
    "empty file": (lambda data: b"", "truncated or corrupt"),
    "random bytes": (lambda data: random.Random(0).randbytes(4096), "truncated or corrupt"),
    "cut after the header": (lambda data: data[:200], "truncated or corrupt"),
    "cut in the middle": (lambda data: data[:len(data) // 2], "truncated or corrupt"),
    "last byte missing": (lambda data: data[:-1], "truncated or corrupt"),
    "a flipped bit in a tensor": (lambda data: data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 4])
                                  + data[len(data) // 2 + 1:], "fails the CRC-32 check"),
    "not a dict": (saved([torch.zeros(3)]), "not an ofasys_fs checkpoint"),
    "a newer format": (saved({"version": 99, "model": {}}), "has checkpoint version 99"),
    "no vocabulary": (edited(lambda state: state.pop("vocab")), "has no 'vocab'"),
    "tasks not a list": (edited(lambda state: state.update(tasks="copy")),
                         "unusable 'tasks' .of type str.; expected a list of dicts"),
    "NaN weights": (edited(lambda state: next(iter(state["model"].values())).fill_(float("nan"))),
                    "has NaN or infinite weights .model 'embed_tokens.weight'."),
    "optimizer without param_groups": (edited(lambda state: state["optimizer"].pop("param_groups")),
                                       "unusable 'optimizer'"),
    "RNG state of another type": (edited(lambda state: state["rng"].update(torch=[1, 2])), "unusable 'rng'"),
    "model config not a dict": (edited(lambda state: state["config"].update(model=5)), "unusable 'config'"),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_damaged_checkpoints_give_a_clear_error(reference, tmp_path, damage):
    change, message = DAMAGED[damage]
    path = rewrite(reference, tmp_path, change)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert path in str(info.value)


def as_fairseq(state: dict) -> dict:
    """The reference checkpoint in the layout the fairseq plugin writes (docs/fairseq.md, "What maps to what")."""
    return {"args": None, "cfg": {"task": {"_name": "ofasys"}}, "model": state["model"],
            "task_state": {"ofasys_fs": {key: state[key] for key in ("vocab", "tasks", "config", "user_dirs")}}}


FAIRSEQ_DAMAGED = {
    "another fairseq task": (lambda state: {**as_fairseq(state), "task_state": {}}, "not of the ofasys task"),
    "NaN weights": (lambda state: as_fairseq({**state, "model": {key: value.fill_(float("nan")) for key, value
                                                                 in state["model"].items()}}),
                    "has NaN or infinite weights"),
    "tasks not a list": (lambda state: as_fairseq({**state, "tasks": "copy"}), "unusable 'tasks'"),
}


@pytest.mark.parametrize("damage", [None, *FAIRSEQ_DAMAGED])
def test_fairseq_checkpoints_are_read_for_inference_only_and_checked(reference, tmp_path, damage):
    """A fairseq checkpoint of the ofasys task loads for inference (OFASys, --finetune-from-model) as the keys
    inference reads, checked like ours; never for resuming, and one of another task is refused clearly."""
    state = torch.load(reference, weights_only=True)
    change, message = FAIRSEQ_DAMAGED[damage] if damage else (as_fairseq, None)
    path = rewrite(reference, tmp_path, saved(change(state)))
    if message is not None:
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path, for_inference=True)
        return
    loaded = load_checkpoint(path, for_inference=True)
    assert loaded["model"].keys() == state["model"].keys() and loaded["vocab"] == state["vocab"]
    with pytest.raises(CheckpointError, match="a fairseq checkpoint: .* not to resume training"):
        load_checkpoint(path)


def test_any_changed_byte_inside_the_archive_members_is_detected(reference, tmp_path):
    """40 random single-byte changes inside the stored members (tensors, the pickle): all refused, none loaded."""
    data = reference.read_bytes()
    with zipfile.ZipFile(reference) as archive:
        members = [(m.header_offset, m.compress_size) for m in archive.infolist() if m.compress_size]
    spans = []
    for offset, size in members:  # local header: 30 bytes, then the name and the extra field (lengths at 26, 28)
        name_length, extra_length = struct.unpack_from("<HH", data, offset + 26)
        spans.append((offset + 30 + name_length + extra_length, size))
    rng = random.Random(4)
    for _ in range(40):
        start, size = rng.choice(spans)
        position = start + rng.randrange(size)
        changed = bytearray(data)
        changed[position] ^= 1 + rng.randrange(255)
        path = rewrite(reference, tmp_path, lambda _: bytes(changed))
        with pytest.raises(CheckpointError, match="checkpoint_damaged.pt"):
            load_checkpoint(path)


def test_a_checkpoint_without_the_model_description_is_refused_by_the_hub(reference, tmp_path):
    state = torch.load(reference, weights_only=True)
    del state["config"]["model"]
    path = rewrite(reference, tmp_path, saved(state))
    with pytest.raises(CheckpointError, match=r"lacks the model description \['model'\].*not written by the ofasys_fs"):
        OFASys.from_pretrained(path, device="cpu")


def test_damaged_checkpoint_on_the_command_line_is_one_line_and_writes_nothing(reference, micro, tmp_path, capsys):
    path = rewrite(reference, tmp_path, lambda data: data[:len(data) // 3])
    results = tmp_path / "results.jsonl"
    assert generate.main(["--path", path, "--instruction", COPY, "--data", str(micro.train),
                          "--results-path", str(results)]) == 1
    message = capsys.readouterr().err
    assert message.startswith(f"ofasys-generate: error: {path} is not a readable checkpoint")
    assert message.count("\n") == 1
    assert not results.exists()


# ---- shards ----------------------------------------------------------------------------------------


def patch(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def edit_manifest(folder, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def columns(manifest) -> dict:
    return manifest["splits"]["train"]["columns"]


HEADER = 26  # MMIDIDX: magic 9, version 8, dtype code 1, count 8; then int32 sizes, int64 pointers
SHARD_DAMAGE = {
    "negative size": (lambda d: patch(d / "train.cap.idx", HEADER + 4, struct.pack("<i", -5)),
                      "train.cap.idx: item 1 has negative size -5"),
    "negative pointer": (lambda d: patch(d / "train.cap.idx", HEADER + 12 + 8, struct.pack("<q", -3)),
                         "train.cap.idx: pointer out of range: item 1"),
    "size past the end of .bin": (lambda d: patch(d / "train.cap.idx", HEADER + 4, struct.pack("<i", 2**31 - 1)),
                                  "train.cap.idx: pointer out of range: item 1 spans bytes 5..2147483652"),
    "huge item count": (lambda d: patch(d / "train.cap.idx", 18, struct.pack("<Q", 2**62)),
                        "train.cap.idx: truncated: 62 bytes, but 4611686018427387904 items need"),
    "manifest not JSON": (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json: unreadable"),
    "manifest not UTF-8": (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe{}"), "manifest.json: unreadable"),
    "manifest version": (lambda d: edit_manifest(d, lambda m: m.update(version=7)), "shard format version 7"),
    "column name escaping the folder": (
        lambda d: edit_manifest(d, lambda m: columns(m).update({"../../etc/passwd": {"kind": "text"}})),
        "column name '../../etc/passwd' cannot name a file"),
    "split entry not an object": (lambda d: edit_manifest(d, lambda m: m["splits"].update(train=3)),
                                  "split 'train' needs a row count"),
    "row count not a number": (lambda d: edit_manifest(d, lambda m: m["splits"]["train"].update(rows="3")),
                               "split 'train' needs a row count"),
    "null rows out of range": (lambda d: edit_manifest(d, lambda m: columns(m)["cap"].update(null_rows=[7])),
                               "column 'cap' of split 'train': null_rows must be a list of row numbers in 0..2"),
    "null rows not a list": (lambda d: edit_manifest(d, lambda m: columns(m)["cap"].update(null_rows=5)),
                             "null_rows must be a list"),
    "column kind unknown": (lambda d: edit_manifest(d, lambda m: columns(m)["cap"].update(kind="pickle")),
                            "column 'cap' of split 'train' has no kind"),
    "text that is not UTF-8": (lambda d: patch(d / "train.cap.bin", 0, b"\xff\xfe"),
                               "train.cap.bin: row 0 is not valid text"),
    "JSON cell that is not JSON": (lambda d: patch(d / "train.box.bin", 0, b"{{"),
                                   "train.box.bin: row 0 is not valid json"),
    ".bin missing": (lambda d: os.remove(d / "train.cap.bin"), "train.cap.bin: missing"),
}


@pytest.fixture
def shard(tmp_path):
    folder = tmp_path / "shard"
    with ShardWriter(folder, "train") as writer:
        for i in range(3):
            writer.add_row({"cap": f"row {i}", "box": [1, 2, 3, 4 + i]})
        writer.finalize({}, tokenizer_hash=None)
    return folder


@pytest.mark.parametrize("damage", SHARD_DAMAGE)
def test_damaged_shards_give_a_clear_error_naming_the_file(shard, damage):
    change, message = SHARD_DAMAGE[damage]
    change(shard)
    with pytest.raises(ShardError, match=message.replace(".", r"\.").replace("(", r"\(")):
        dataset = ShardDataset(shard, "train")
        [dataset[i] for i in range(len(dataset))]


def test_training_on_a_damaged_shard_stops_with_one_line_and_no_checkpoint(micro, tmp_path, capsys):
    folder = tmp_path / "shard"
    with ShardWriter(folder, "train") as writer:
        for row in [{"src": "one two", "tgt": "one"}] * 4:
            writer.add_row(row)
        writer.finalize({}, tokenizer_hash=None)
    patch(folder / "train.src.idx", HEADER + 8 + 16, struct.pack("<q", 10**6))
    save_dir = tmp_path / "run"
    assert train_main(["--instruction", COPY, "--data", str(folder), "--arch", "micro", "--device", "cpu",
                       "--save-dir", str(save_dir), "--max-update", "2", "--tokenizer", str(micro.tokenizer)]) == 1
    message = capsys.readouterr().err
    assert "train.src.idx: pointer out of range: item 1" in message and message.count("\n") == 1, message
    assert not list(save_dir.glob("*.pt"))


def test_image_backbone_weights_that_would_run_code_are_refused(tmp_path):
    marker, path = tmp_path / "code_ran", tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": CodePayload(marker)}, path)
    model = GeneralistModel(arch="micro", image_adaptor="image_resnet", image_backbone_weights=str(path))
    with pytest.raises(ValueError, match=r"resnet50.pth': not loadable as a state_dict .*nothing in it was run"
                                         r".*Unsupported global: GLOBAL exec"):
        model.build(300, {"text", "image_resnet"})
    assert not marker.exists()
