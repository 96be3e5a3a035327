"""The bench the bad-input corpus runs on (docs/reliability.md, guarantee 1): runners that feed one bad input to
a command (in-process, `main(argv)`) or to the Python API and report how it ended, the media files the cases
are made of, and the one check every case must pass: a clear error holding the case's fragments (file, row,
column, what was expected), no traceback, one error line, nothing published (but the checkpoint_last.pt a
training run stopped by a bad row keeps)."""
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import soundfile
from PIL import Image

from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.cli import generate, validate
from ofasys_fs.cli.preprocess import main as preprocess_main
from ofasys_fs.cli.train import main as train_main
from ofasys_fs.data.shards import MANIFEST
from ofasys_fs.instruction import Instruction, InstructionError

from .conftest import COPY

PROGRAMS = ("ofasys-train: error:", "ofasys-preprocess: error:", "ofasys-generate: error:", "ofasys-validate: error:")


@dataclasses.dataclass
class Outcome:
    """How a bad input ended: the exit code (None for a Python API call), the error text, what was written."""

    code: Optional[int]
    message: str
    published: list


@dataclasses.dataclass
class Bench:
    """Runs the toolkit on bad inputs in a fresh folder; every runner returns an Outcome."""

    root: Path
    micro: object
    checkpoint: Path
    capsys: object

    def file(self, name: str, content) -> str:
        """Write `content` (bytes, str, or a list of rows as JSON lines) under root; returns the path."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, list):
            content = "".join(json.dumps(row) + "\n" for row in content)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return str(path)

    def run(self, main: Callable, argv: list) -> tuple[int, str]:
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code
        return code, self.capsys.readouterr().err

    def parse(self, instruction: str) -> Outcome:
        with pytest.raises(InstructionError) as info:
            Instruction.parse(instruction)
        return Outcome(None, str(info.value), [])

    def api(self, call: Callable[[], object], error: type = ValueError) -> Outcome:
        """A Python API call that must raise `error`; what it wrote under root/run counts as published."""
        with pytest.raises(error) as info:
            call()
        return Outcome(None, str(info.value), [p.name for p in (self.root / "run").glob("*.pt")])

    def preprocess(self, data, *flags: str, name: str = "rows.jsonl") -> Outcome:
        destdir = self.root / "shards"
        source = data if isinstance(data, str) else self.file(name, data)
        code, err = self.run(preprocess_main, ["--input", source, "--destdir", destdir, *flags])
        published = [p.name for p in destdir.glob("*") if p.name == MANIFEST or p.suffix in (".bin", ".idx")]
        return Outcome(code, err, published)

    def train(self, *argv, data=None, instruction: str = COPY, name: str = "rows.jsonl") -> Outcome:
        """ofasys-train on a micro model: `argv` as given, plus --instruction/--data when `data` is given."""
        save_dir = self.root / "run"
        task = [] if data is None else ["--instruction", instruction, "--data",
                                        data if isinstance(data, str) else self.file(name, data)]
        micro = ["--arch", "micro", "--device", "cpu", "--tokenizer", self.micro.tokenizer, "--num-bins", "16",
                 "--num-codes", "0", "--batch-size", "4", "--max-update", "2", "--save-dir", save_dir]
        code, err = self.run(train_main, [*task, *micro, *argv])
        return Outcome(code, err, published_checkpoints(save_dir))

    def train_yaml(self, yaml_text, *argv: str) -> Outcome:
        """ofasys-train CONFIG.yaml (str, or bytes written as they are) with the micro run's tokenizer and a copy
        task unless the YAML has tasks."""
        raw = yaml_text if isinstance(yaml_text, bytes) else yaml_text.encode("utf-8")
        tasks = b"" if b"tasks:" in raw else f'tasks: [{{instruction: "{COPY}", data: {self.micro.train}}}]\n'.encode()
        config = self.file("config.yaml", raw + b"\n" + tasks)
        save_dir = self.root / "run"
        code, err = self.run(train_main, [config, f"save_dir={save_dir}", "arch=micro", "device=cpu",
                                          f"tokenizer={self.micro.tokenizer}", "num_bins=16", "num_codes=0",
                                          "max_update=2", *argv])
        return Outcome(code, err, published_checkpoints(save_dir))

    def generate(self, *argv, path=None, data=None) -> Outcome:
        """ofasys-generate with the reference checkpoint, the micro train file and a results file, unless given."""
        results = self.root / "results.jsonl"
        checkpoint = ["--path", path or self.checkpoint] if path != "" else []
        rows = ["--data", data or self.micro.train] if data != "" else []
        code, err = self.run(generate.main, [*checkpoint, *rows, *argv, "--results-path", results])
        return Outcome(code, err, [results.name] if results.exists() else [])

    def validate(self, *argv) -> Outcome:
        """ofasys-validate of the reference checkpoint's copy task on the micro valid file."""
        code, err = self.run(validate.main, ["--path", self.checkpoint, "--task", "copy", "--data",
                                             self.micro.valid, *argv])
        return Outcome(code, err, [])


def published_checkpoints(save_dir: Path) -> list[str]:
    """What a stopped training run published: any checkpoint but the checkpoint_last.pt that a data error leaves
    to resume from (it must hold the updates made before the bad row, and load)."""
    last = save_dir / "checkpoint_last.pt"
    if last.exists():
        assert load_checkpoint(str(last))["train_meta"]["num_updates"] >= 1
    return sorted(p.name for p in save_dir.glob("*.pt") if p != last) if save_dir.is_dir() else []


def check_clear_error(outcome: Outcome, what: str, fragments: list) -> None:
    """The corpus's contract: refused, without a traceback, in one error line holding every fragment (the
    location once), and nothing published."""
    assert outcome.code != 0, f"accepted: {what}"
    assert "Traceback" not in outcome.message
    if outcome.code is not None:  # a command: one "<command>: error: ..." line (an instruction is quoted below it)
        errors = [line for line in outcome.message.splitlines() if line.startswith(PROGRAMS)]
        assert len(errors) == 1 and outcome.message.startswith(("usage:", *PROGRAMS)), outcome.message
        assert outcome.code in (1, 2)
    assert not re.search(r"(\S+, line \d+ \(row \d+\)).*\1", outcome.message), "the location is repeated"
    missing = [fragment for fragment in fragments if fragment not in outcome.message]
    assert not missing, f"{what}: {missing} not in {outcome.message!r}"
    assert outcome.published == [], f"{what}: published {outcome.published}"


# ---- rows and files the cases are made of -----------------------------------------------------------------


def png_bytes(pixels: Optional[np.ndarray] = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 12, 3), 90, dtype=np.uint8) if pixels is None else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def flac_bytes(seconds: float = 0.5) -> bytes:
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, int(16000 * seconds)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, noise, 16000, format="FLAC")
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def with_row(rows: list, index: int = 2, **changes) -> list:
    """`rows` with row `index` changed (a value of ... removes that column)."""
    changed = [dict(row) for row in rows]
    changed[index].update(changes)
    return [{key: value for key, value in row.items() if value is not ...} for row in changed]


def media_case(column: str, name: str, content: bytes, instruction: str):
    def action(bench: Bench) -> Outcome:
        return bench.preprocess([{column: bench.file(name, content), "cap": "x"}], "--instruction", instruction)
    return action


def url_case(url: str):
    def action(bench: Bench) -> Outcome:
        return bench.preprocess([{"img": url, "cap": "x"}], "--instruction", CAPTION)
    return action


def rows_case(rows: list, instruction: str = COPY):
    def action(bench: Bench) -> Outcome:
        return bench.train(data=rows, instruction=instruction)
    return action


CAPTION = "[IMAGE:img] what does the image describe? -> [TEXT:cap]"
AUDIO = "[AUDIO:wav] what is said? -> [TEXT:cap]"
VIDEO = "[VIDEO:clip] what happens? -> [TEXT:cap]"
BOX = "[TEXT:src] -> [BOX:box,size=10,10]"
