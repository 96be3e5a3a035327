"""Spoken digit strings for text-to-speech, synthesised offline by flite (Debian package `flite`, a 2 MB
install). Training and test strings are disjoint pairs of digit names, all spoken by one voice at speaking
rates drawn per row; the model must say pairs it never heard."""
from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

from .data_common import SPLITS, SplitSizes, rng_for, write_split
from .data_digits import DIGIT_NAMES

VOICE = "kal16"  # flite's 16 kHz diphone voice: the recogniser hears it well (docs/tasks/speech.md)
STRETCH_RANGE = (0.9, 1.15)  # flite duration_stretch: slower or faster speech per row
WORDS_PER_STRING = 2
HELD_OUT_EVERY = 5  # every 5th digit pair (in a seeded order) is spoken only in valid and test rows


def flite_say(text: str, path: Path, voice: str = VOICE, stretch: float = 1.0) -> Path:
    """Write `text` spoken by flite's `voice` as a WAV file; RuntimeError naming the package when flite is missing."""
    if shutil.which("flite") is None:
        raise RuntimeError("the text-to-speech data needs the flite program: apt-get install flite")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path), "--setf", f"duration_stretch={stretch}"],
                   check=True, capture_output=True)
    return path


def build_tts_digits(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """text (two digit names) -> wav of flite speaking them; valid/test pairs never occur in training."""
    pairs = list(itertools.product(DIGIT_NAMES, repeat=WORDS_PER_STRING))
    order = rng_for(seed, "tts", "pairs").permutation(len(pairs))
    held_out = {index for rank, index in enumerate(order) if rank % HELD_OUT_EVERY == 0}
    pools = {"train": [pairs[i] for i in range(len(pairs)) if i not in held_out]}
    pools["valid"] = pools["test"] = [pairs[i] for i in sorted(held_out)]
    for split in SPLITS:
        rng = rng_for(seed, "tts", split)
        rows = []
        for i in range(sizes.of(split)):
            text = " ".join(pools[split][int(rng.integers(len(pools[split])))])
            stretch = round(float(rng.uniform(*STRETCH_RANGE)), 3)
            name = f"media/{split}_{i:05d}.wav"
            flite_say(text, folder / name, stretch=stretch)
            rows.append({"text": text, "wav": name})
        write_split(folder, split, rows)
