"""Output: what inference returns per row (text, box in original pixels, objects, tokens, scores; generated media:
an image, frames and a waveform, a motion)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import soundfile
import torch

from ..mel import Waveform
from ..motion.clip import Motion
from ..tokenizer import EOS, PAD
from .layout import TokenReader

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC"}  # what Output.save writes a waveform as, by the path's suffix
IMAGE_FORMATS = {".png": "PNG"}  # and an image
MOTION_FORMATS = (".bvh", ".gif")  # and a motion: BVH, or a stick-figure animation


@dataclasses.dataclass
class Output:
    """One decoded row (the best hypothesis; all of them in `nbest` when more than one was asked for).

    `text` is the decoded text without the forced prompt (None for a BOX-only, repetition or media output),
    `box` is [x0, y0, x1, y1] in pixels of the original image, `objects` the items of a repetition group
    (e.g. [{"box": [...], "label": "dog"}]), `tokens` the generated ids (no prompt, no </s>). An IMAGE output
    holds its PIL `image`; a continuous output its generated `frames` (speech: log-mel [T, bins]; motion:
    normalised motion_6d features) and, for AUDIO, `waveform` (samples, rate), for MOTION, `motion` (a Motion:
    `save_as_bvh`, `save_as_gif`). `save(path)` writes the media.
    """

    text: Optional[str] = None
    box: Optional[list] = None
    objects: Optional[list] = None
    image: Optional[Any] = None
    tokens: list = dataclasses.field(default_factory=list)
    score: Optional[float] = None
    positional_scores: list = dataclasses.field(default_factory=list)
    nbest: list = dataclasses.field(default_factory=list)
    frames: Optional[torch.Tensor] = None
    waveform: Optional[Waveform] = None
    motion: Optional[Motion] = None

    def to_dict(self) -> dict:
        """Plain JSON-ready fields; those that do not apply (None, empty n-best) are left out (media too: `save`)."""
        fields = {"text": self.text, "box": self.box, "objects": self.objects, "tokens": self.tokens,
                  "score": self.score, "positional_scores": self.positional_scores}
        if self.waveform is not None:
            fields.update(sample_rate=self.waveform.sample_rate, seconds=round(self.waveform.seconds, 4))
        if self.motion is not None:
            fields.update(fps=self.motion.fps, seconds=round(self.motion.duration, 4))
        out = {name: value for name, value in fields.items() if value is not None}
        if self.nbest:
            out["nbest"] = [hypothesis.to_dict() for hypothesis in self.nbest]
        return out

    @property
    def media_suffixes(self) -> tuple[str, ...]:
        """The files `save` writes by default, by suffix: (".png",) for an image, (".wav",) for a waveform,
        (".bvh", ".gif") for a motion (the motion, and a picture of it); () when the output holds no media."""
        if self.image is not None:
            return (".png",)
        if self.waveform is not None:
            return (".wav",)
        return MOTION_FORMATS if self.motion is not None else ()

    @property
    def media_suffix(self) -> Optional[str]:
        """The main file suffix `save` writes (".png", ".wav", ".bvh"); None when the output holds no media."""
        return self.media_suffixes[0] if self.media_suffixes else None

    def save(self, path: str) -> str:
        """Write the media this output holds in the format of the path's suffix (an image as PNG, a waveform as WAV
        or FLAC, a motion as BVH or GIF; a path without a suffix gets `media_suffix`); returns the path."""
        if self.media_suffix is None:
            raise ValueError("Output.save: this output holds no media (only generated images, audio and motion are "
                             "saved to a file)")
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if not suffix:
            path, suffix = path + self.media_suffix, self.media_suffix
        if self.image is not None:
            formats, what = IMAGE_FORMATS, "an image"
        elif self.motion is not None:
            formats, what = MOTION_FORMATS, "motion"
        else:
            formats, what = AUDIO_FORMATS, "audio"
        if suffix not in formats:
            raise ValueError(f"Output.save({path!r}): {what} is written as {' or '.join(formats)}, by the file's "
                             f"suffix")
        if self.image is not None:
            self.image.save(path, format=IMAGE_FORMATS[suffix])
        elif self.motion is not None:
            (self.motion.save_as_bvh if suffix == ".bvh" else self.motion.save_as_gif)(path)
        else:
            samples = self.waveform.samples.detach().float().cpu().numpy()
            soundfile.write(path, samples, self.waveform.sample_rate, format=AUDIO_FORMATS[suffix])
        return path


def generated_tokens(hypothesis: dict, prefix: list) -> list:
    """A hypothesis' own tokens: without </s> and padding, and without the prompt when a generator that does
    not force prefixes (e.g. a plugin) produced it itself."""
    tokens = [int(t) for t in hypothesis["tokens"]]
    if EOS in tokens:
        tokens = tokens[:tokens.index(EOS)]
    tokens = [t for t in tokens if t != PAD]
    if "prefix" not in hypothesis and prefix and tokens[:len(prefix)] == prefix:
        tokens = tokens[len(prefix):]
    return tokens


class OutputBuilder:
    """Hypotheses of one row -> Output, using the slots' preprocessors to decode (`postprocess`), or a continuous
    output's preprocessor (`decode_features` with `output_options`) for hypotheses holding frames."""

    def __init__(self, reader: TokenReader, preprocessors: dict, output: Any = None,
                 output_options: Optional[dict] = None):
        self.reader, self.preprocessors = reader, preprocessors
        self.output, self.output_options = output, output_options or {}

    def build(self, hypotheses: list, prefix: list, row: dict, image_sizes: Optional[dict]) -> Output:
        outputs = [self.one(hypothesis, prefix, row, image_sizes) for hypothesis in hypotheses]
        if not outputs:
            raise ValueError("generation returned no hypothesis for a row")
        best = outputs[0]
        if len(outputs) > 1:
            best = dataclasses.replace(best, nbest=outputs)
        return best

    def one(self, hypothesis: dict, prefix: list, row: dict, image_sizes: Optional[dict]) -> Output:
        if self.output is not None:
            return Output(**self.output.decode_features(hypothesis["frames"], self.output_options))
        tokens = generated_tokens(hypothesis, prefix)

        def value_of(slot: Any, ids: list) -> Any:
            preprocessor = self.preprocessors[slot]
            if slot.modality != "BOX":
                return preprocessor.postprocess(ids, row)
            try:
                return preprocessor.postprocess(ids, row, image_sizes=image_sizes)
            except ValueError:  # fewer than 4 bins: the generator stopped inside the box (max length)
                return None

        score = hypothesis.get("score")
        return Output(**self.reader.read(tokens, value_of), tokens=tokens,
                      score=float(score) if score is not None else None,
                      positional_scores=[float(s) for s in hypothesis.get("positional_scores") or ()])
