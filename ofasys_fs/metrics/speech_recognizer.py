"""An offline English speech recogniser for scoring generated speech: pocketsphinx (PyPI, ships its acoustic model
and CMU dictionary; an optional dependency, installed by `make test` or `pip install --no-deps pocketsphinx`).

With a closed vocabulary it decodes against a fixed-length grammar (exactly as many words as the reference has,
each from the vocabulary): an open grammar inserts words on short synthetic clips.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torchaudio

from ..errors import ConfigError
from ..media import load_audio
from ..mel import Waveform

RECOGNIZER_RATE = 16000  # the rate of pocketsphinx's en-us acoustic model
INSTALL_HINT = "pip install --no-deps pocketsphinx (or `make test`, which installs it)"


def audio_samples(value: Any, rate: int = RECOGNIZER_RATE) -> torch.Tensor:
    """A Waveform, path or any audio value `load_audio` reads -> mono samples at `rate`."""
    if isinstance(value, Waveform):
        samples, source_rate = value.samples.float().reshape(-1), value.sample_rate
        return torchaudio.functional.resample(samples, source_rate, rate) if source_rate != rate else samples
    return load_audio(value, None, target_rate=rate)


class Recognizer:
    """pocketsphinx's en-us model; `transcribe(audio, words=None)` -> lowercase text."""

    def __init__(self):
        try:
            import pocketsphinx  # optional: only metrics that listen need it
        except ImportError as err:
            raise ConfigError(f"the speech recogniser needs the pocketsphinx package: {INSTALL_HINT}") from err
        self.module = pocketsphinx
        model = pocketsphinx.get_model_path()
        self.dictionary_path = os.path.join(model, "en-us", "cmudict-en-us.dict")
        self.config = dict(hmm=os.path.join(model, "en-us", "en-us"), dict=self.dictionary_path, loglevel="FATAL")
        self.open_decoder = None
        self.grammars: dict = {}
        self.known: Optional[set] = None

    def decoder(self, words: Optional[Sequence[str]], length: int):
        if words is None:
            if self.open_decoder is None:
                self.open_decoder = self.module.Decoder(**self.config)
            return self.open_decoder
        key = (tuple(words), length)
        if key not in self.grammars:
            self.check_words(words)
            decoder = self.module.Decoder(**self.config, lm=None)
            choice = "(" + " | ".join(words) + ")"
            grammar = f"#JSGF V1.0;\ngrammar fixed;\npublic <utterance> = {' '.join([choice] * length)};\n"
            decoder.add_jsgf_string("fixed", grammar.encode())
            decoder.activate_search("fixed")
            self.grammars[key] = decoder
        return self.grammars[key]

    def check_words(self, words: Sequence[str]) -> None:
        if self.known is None:
            with open(self.dictionary_path, encoding="utf-8") as handle:
                self.known = {line.split(maxsplit=1)[0] for line in handle if line.strip()}
        missing = sorted(set(words) - self.known)
        if missing:
            raise ConfigError(f"the recogniser's dictionary lacks the words {missing[:10]}; a closed-vocabulary grammar "
                              f"needs words of the CMU dictionary")

    def transcribe(self, audio: Any, words: Optional[Sequence[str]] = None, length: int = 1) -> str:
        """The words heard in `audio`: open vocabulary, or exactly `length` words of `words`."""
        samples = audio_samples(audio).clamp(-1.0, 1.0)
        if not samples.numel():  # an empty clip says nothing (pocketsphinx fails on it and keeps failing after)
            return ""
        pcm = (samples.numpy() * 32767).astype(np.int16).tobytes()
        decoder = self.decoder(sorted(set(words)) if words is not None else None, length)
        # pocketsphinx carries its feature normalisation (cepstral means) from one utterance into the next: without
        # a reset a clip's transcript depended on the clips heard before it (docs/tasks/speech.md)
        decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return hypothesis.hypstr.lower() if hypothesis is not None else ""
