"""Fixtures of the reliability tests (docs/reliability.md): one micro training setup and ONE uninterrupted
reference run of it, shared by the kill trials, the disk-full and numerics tests and the bad-input corpus
(whose ofasys-generate cases decode with its checkpoint)."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ofasys_fs.cli.train import main as train_main
from ofasys_fs.tokenizer import train_tokenizer

PLUGIN = Path(__file__).resolve().parent / "reliability_probe"
WORDS = "zero one two three four five six seven eight nine red green blue what is the copy".split()
COPY = "copy [TEXT:src] -> [TEXT:tgt]"
MAX_UPDATE = 12


@dataclasses.dataclass
class MicroRun:
    """A 12-update micro run of one copy task with the probe plugin: checkpoints every 3 updates (keep 2),
    validation every 6, dropout on (so a resume must restore the RNG too)."""

    root: Path
    config: Path
    tokenizer: Path
    train: Path  # copy rows, jsonl
    valid: Path

    def argv(self, save_dir: Path, *overrides: str) -> list[str]:
        """ofasys-train's arguments for this run into save_dir."""
        return [str(self.config), f"save_dir={save_dir}", *overrides]


def copy_rows(count: int, offset: int = 0) -> list[dict]:
    return [{"src": f"{WORDS[(i + offset) % 10]} {WORDS[(i * 3) % 10]}", "tgt": WORDS[(i + offset) % 10]}
            for i in range(count)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def micro(tmp_path_factory) -> MicroRun:
    root = tmp_path_factory.mktemp("micro")
    tokenizer = root / "tokenizer.json"
    train_tokenizer([" ".join(WORDS)] * 20, 300, tokenizer)
    train, valid = write_jsonl(root / "train.jsonl", copy_rows(16)), write_jsonl(root / "valid.jsonl", copy_rows(4, 5))
    config = root / "config.yaml"
    config.write_text(f"""
common: {{seed: 5, device: cpu, log_interval: 1, user_dir: [{PLUGIN}]}}
dataset: {{batch_size: 4}}
optimization: {{max_update: {MAX_UPDATE}, lr: 1.0e-3, adam_eps: 1.0e-6}}
model: {{arch: micro, dropout: 0.1}}
checkpoint: {{save_interval_updates: 3, keep_last_n: 2}}
validation: {{validate_interval_updates: 6}}
vocab: {{tokenizer: {tokenizer}, num_bins: 16, num_codes: 0}}
tasks:
  - {{name: copy, instruction: "{COPY}", data: {{train: {train}, valid: {valid}}}, options: {{criterion: probe_ce}}}}
""", encoding="utf-8")
    return MicroRun(root, config, tokenizer, train, valid)


@pytest.fixture(scope="session")
def reference(micro, tmp_path_factory) -> Path:
    """checkpoint_last.pt of the uninterrupted micro run (in this process, one thread)."""
    save_dir = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(micro.argv(save_dir)) == 0
    finally:
        torch.set_num_threads(threads)
    return save_dir / "checkpoint_last.pt"


@pytest.fixture
def bench(micro, reference, tmp_path, capsys):
    """A fresh Bench for one bad input (the bad-input corpus); it decodes with the reference checkpoint."""
    from .bad_input_bench import Bench  # it imports this module's constants

    return Bench(tmp_path, micro, reference, capsys)
