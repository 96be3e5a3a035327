"""Audio CMVN keeps what tells stationary sounds apart: global statistics of the training split (the default)
are computed by training, stored in the checkpoint and used by inference; a micro model then tells three
pitches apart on held-out tones, while utterance CMVN (speech recognition's option) erases them."""
import math

import numpy as np
import pytest
import torch

from ofasys_fs import OFASys, Task, Trainer
from ofasys_fs.contracts import SampleContext
from ofasys_fs.data.audio_statistics import audio_statistics
from ofasys_fs.instruction import Instruction
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import build_preprocessor

RATE = 16000
PITCHES = {"low": 300.0, "middle": 700.0, "high": 1600.0}
INSTRUCTION = "[AUDIO:wav{attrs}] how high is the tone? -> [TEXT:pitch,closed_set]"


def tone_rows(count: int, seed: int) -> list[dict]:
    """Steady sine tones of a random pitch class (+-3%), loudness and length, with a little noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        name = list(PITCHES)[i % len(PITCHES)]
        hz = PITCHES[name] * rng.uniform(0.97, 1.03)
        t = np.arange(int(rng.uniform(0.2, 0.35) * RATE)) / RATE
        wave = rng.uniform(0.05, 0.6) * np.sin(2 * math.pi * hz * t) + 0.005 * rng.standard_normal(t.size)
        rows.append({"wav": (wave.astype(np.float32), RATE), "pitch": name})
    return rows


def features(rows: list[dict], data_cfg: DataConfig, attrs: str = "") -> torch.Tensor:
    """Each row's fbank averaged over its frames: [rows, 80]."""
    slot = Instruction.parse(INSTRUCTION.format(attrs=attrs)).encoder[0]
    preprocessor = build_preprocessor(slot.preprocess, slot, None, data_cfg)
    return torch.stack([preprocessor(row["wav"], SampleContext())["fbank"].mean(0) for row in rows])


def test_global_statistics_keep_stationary_pitches_apart_and_utterance_cmvn_erases_them():
    rows = tone_rows(30, seed=0)
    task = Task(name="tones", instruction=INSTRUCTION.format(attrs="")).add_dataset(rows, "train")
    statistics = audio_statistics([task], DataConfig())
    assert statistics is not None and len(statistics[0]) == len(statistics[1]) == 80
    stored = DataConfig(audio_cmvn=statistics)
    assert DataConfig.from_dict(stored.to_dict()) == stored  # survives a checkpoint
    by_pitch = {name: [i for i, row in enumerate(rows) if row["pitch"] == name] for name in PITCHES}

    def nearest_centre_accuracy(feats: torch.Tensor) -> float:
        centres = torch.stack([feats[index].mean(0) for index in by_pitch.values()])
        guesses = torch.cdist(feats, centres).argmin(1).tolist()
        return float(np.mean([list(PITCHES)[g] == row["pitch"] for g, row in zip(guesses, rows)]))

    assert nearest_centre_accuracy(features(rows, stored)) == 1.0
    assert features(rows, stored, ",cmvn=utterance").abs().max() < 0.01  # every bin of a steady tone averages 0


def pitch_accuracy(model: OFASys, rows: list[dict], attrs: str) -> float:
    instruction = INSTRUCTION.format(attrs=attrs)  # the trained task's own instruction: its preprocessing
    answers = [model.inference(instruction, data=row).text.strip() for row in rows]
    return float(np.mean([answer == row["pitch"] for answer, row in zip(answers, rows)]))


@pytest.mark.parametrize("attrs, lowest, highest", [("", 0.9, 1.0), (",cmvn=utterance", 0.0, 0.55)])
def test_tone_pitch_is_learnt_with_global_cmvn_through_a_checkpoint(tmp_path, attrs, lowest, highest):
    task = Task(name="tones", instruction=INSTRUCTION.format(attrs=attrs)).add_dataset(tone_rows(96, seed=1), "train")
    trainer = Trainer(arch="micro", max_update=80, device="cpu", save_dir=str(tmp_path), log_interval=40,
                      disable_validation=True)
    trainer.fit(tasks=[task])
    model = OFASys.from_pretrained(str(tmp_path / "checkpoint_last.pt"))
    assert (model.data_cfg.audio_cmvn is not None) == (attrs == "")
    accuracy = pitch_accuracy(model, tone_rows(30, seed=2), attrs)
    assert lowest <= accuracy <= highest, f"held-out pitch accuracy {accuracy:.2f} with {attrs or 'global CMVN'}"
