"""Spoken digits synthesised offline with eSpeak NG: the PyPI package `espeakng-loader` ships the
libespeak-ng shared library and its voice data, which this module drives through ctypes. The speech is
synthetic; test rows use voice variants that no training row uses, at other speaking rates and pitches."""
from __future__ import annotations

import ctypes
import functools
import zlib
from pathlib import Path

import numpy as np
import soundfile

from .data_common import SPLITS, SplitSizes, rng_for, write_split
from .data_digits import DIGIT_NAMES

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE, ESPEAK_PITCH = 1, 3  # espeak_PARAMETER values
RATE_RANGE = (120, 220)  # words per minute
PITCH_RANGE = (20, 80)  # 0-100
HELD_OUT_EVERY = 4  # every 4th voice variant (in name order) speaks only valid and test rows
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """The eSpeak NG library of `espeakng-loader`, synthesising into memory (no audio device, no files)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as err:
            raise RuntimeError("the demo's speech task needs the PyPI package espeakng-loader "
                               "(requirements.txt)") from err
        self.data_path = Path(espeakng_loader.get_data_path())
        self.lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with the data in {self.data_path}")
        self.chunks: list[np.ndarray] = []
        self.callback = SYNTH_CALLBACK(self.collect)  # kept referenced: the library calls it
        self.lib.espeak_SetSynthCallback(self.callback)

    def collect(self, wav, count, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def variants(self) -> list[str]:
        """Names of the voice variants shipped with the data (male, female, whisper, robot, ...)."""
        return sorted(path.name for path in (self.data_path / "voices" / "!v").iterdir() if path.is_file())

    def say(self, text: str, variant: str, rate: int, pitch: int, noise_seed: int) -> np.ndarray:
        """int16 samples at `sample_rate` of English `text` spoken by voice variant `variant`. The breathy and
        whispering variants add noise, from a generator the library seeds differently in every process: `noise_seed`
        seeds it, so a data set is the same in every run."""
        if self.lib.espeak_SetVoiceByName(f"en+{variant}".encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice variant {variant!r} in {self.data_path}")
        self.lib.espeak_SetParameter(ESPEAK_RATE, rate, 0)
        self.lib.espeak_SetParameter(ESPEAK_PITCH, pitch, 0)
        self.lib.espeak_ng_SetRandSeed(noise_seed)
        self.chunks = []
        encoded = text.encode()
        if self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, 1, 0, 0, None, None) != 0:
            raise RuntimeError(f"eSpeak NG could not synthesise {text!r}")
        if not self.chunks:
            raise RuntimeError(f"eSpeak NG produced no audio for {text!r} with variant {variant!r}")
        return np.concatenate(self.chunks)


@functools.lru_cache(maxsize=1)
def espeak() -> Espeak:
    return Espeak()


def build_spoken_digits(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """wav (a digit name spoken by one of the voice variants) -> the digit name."""
    engine = espeak()
    variants = engine.variants()
    voices = {"train": [v for i, v in enumerate(variants) if i % HELD_OUT_EVERY]}
    voices["valid"] = voices["test"] = [v for i, v in enumerate(variants) if not i % HELD_OUT_EVERY]
    for split in SPLITS:
        rng = rng_for(seed, "speech", split)
        rows = []
        for i in range(sizes.of(split)):
            word = DIGIT_NAMES[int(rng.integers(len(DIGIT_NAMES)))]
            variant = voices[split][int(rng.integers(len(voices[split])))]
            rate, pitch = int(rng.integers(*RATE_RANGE)), int(rng.integers(*PITCH_RANGE))
            name = f"media/{split}_{i:05d}.wav"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            samples = engine.say(word, variant, rate, pitch, noise_seed=zlib.crc32(f"{seed} {name}".encode()))
            soundfile.write(folder / name, samples, engine.sample_rate)
            rows.append({"wav": name, "label": word, "voice": variant})
        write_split(folder, split, rows)
