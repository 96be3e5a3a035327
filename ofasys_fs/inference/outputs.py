"""Output: what inference returns per row (text, box in original pixels, objects, an image, tokens, scores)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

from ..tokenizer import EOS, PAD
from .layout import TokenReader


def save_png(image: Any, path: str) -> None:
    image.save(path, format="PNG")


# media field of Output -> (file suffix, writer(value, path)); AUDIO and MOTION outputs add theirs
MEDIA_WRITERS: dict[str, tuple[str, Callable[[Any, str], None]]] = {"image": (".png", save_png)}


@dataclasses.dataclass
class Output:
    """One decoded row (the best hypothesis; all of them in `nbest` when more than one was asked for).

    `text` is the decoded text without the forced prompt (None for a BOX-only, repetition or media output),
    `box` is [x0, y0, x1, y1] in pixels of the original image, `objects` the items of a repetition group
    (e.g. [{"box": [...], "label": "dog"}]), `image` the PIL image of an IMAGE output (`save(path)` writes
    it as PNG), `tokens` the generated ids (no prompt, no </s>).
    """

    text: Optional[str] = None
    box: Optional[list] = None
    objects: Optional[list] = None
    image: Optional[Any] = None
    tokens: list = dataclasses.field(default_factory=list)
    score: Optional[float] = None
    positional_scores: list = dataclasses.field(default_factory=list)
    nbest: list = dataclasses.field(default_factory=list)

    @property
    def media(self) -> Optional[tuple[str, Any]]:
        """(field, value) of the output's media (("image", PIL image) for an IMAGE output), or None."""
        return next(((kind, getattr(self, kind)) for kind in MEDIA_WRITERS if getattr(self, kind) is not None), None)

    def save(self, path: str) -> str:
        """Write the output's media to `path` (an image as PNG; a path without a suffix gets it); returns the path."""
        media = self.media
        if media is None:
            raise ValueError("this output has no media to save (text, box and objects are in to_dict())")
        suffix, write = MEDIA_WRITERS[media[0]]
        path = os.fspath(path) + ("" if os.path.splitext(os.fspath(path))[1] else suffix)
        write(media[1], path)
        return path

    def to_dict(self) -> dict:
        """Plain JSON-ready fields; those that do not apply (None, empty n-best) and media are left out."""
        fields = {"text": self.text, "box": self.box, "objects": self.objects, "tokens": self.tokens,
                  "score": self.score, "positional_scores": self.positional_scores}
        out = {name: value for name, value in fields.items() if value is not None}
        if self.nbest:
            out["nbest"] = [hypothesis.to_dict() for hypothesis in self.nbest]
        return out


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
    """Hypotheses of one row -> Output, using the slots' preprocessors to decode (`postprocess`)."""

    def __init__(self, reader: TokenReader, preprocessors: dict):
        self.reader, self.preprocessors = reader, preprocessors

    def build(self, hypotheses: list, prefix: list, row: dict, image_sizes: Optional[dict]) -> Output:
        outputs = [self.one(hypothesis, prefix, row, image_sizes) for hypothesis in hypotheses]
        if not outputs:
            raise ValueError("generation returned no hypothesis for a row")
        best = outputs[0]
        if len(outputs) > 1:
            best = dataclasses.replace(best, nbest=outputs)
        return best

    def one(self, hypothesis: dict, prefix: list, row: dict, image_sizes: Optional[dict]) -> Output:
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
