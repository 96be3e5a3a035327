"""What a decoder generates after its forced prefix, and how the generated tokens read back into values.

The decoder side of an instruction (docs/design.md §4) is a text group, optionally with a repetition group. The
pieces before the first loss-bearing piece are the forced prompt; the rest (`free`) is what the generator
produces. Its shape picks the decoding constraints (docs/inference.md) and how tokens become an Output:
BOX slots take 4 `<bin>` tokens, text-like slots take tokens up to the next piece.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from ..instruction import Instruction, RepeatGroup, Slot

BOX_TOKENS = 4

# kinds of decoders, from the pieces the generator produces; FEATURES: a continuous output slot (speech frames);
# CODES: a non-text output slot of discrete codes (an IMAGE output's image_code tokens)
TEXT, BOX, CLOSED_SET, REPETITION, MIXED = "text", "box", "closed_set", "repetition", "mixed"
FEATURES, CODES = "features", "codes"
MEDIA_KINDS = frozenset({FEATURES, CODES})  # decoders whose outputs are media (Output.save writes them)


def has_loss(slot: Slot) -> bool:
    """Whether the generator produces this decoder piece (prompts and literals are forced or skipped)."""
    return not (slot.modality == "PLAIN" or slot.no_loss)


@dataclasses.dataclass(frozen=True)
class DecoderLayout:
    """The generated part of one template's decoder and its kind (text, box, closed_set, repetition, mixed)."""

    free: tuple  # decoder pieces from the first loss-bearing piece on (repetition slots once, in group order)
    repeat: Optional[RepeatGroup]
    kind: str

    @classmethod
    def of(cls, template: Instruction, output: Any = None) -> "DecoderLayout":
        """`output`: the preprocessor of the template's non-text output slot (RowEncoder.output_preprocessor)."""
        decoder = list(template.decoder)
        first = next((i for i, slot in enumerate(decoder) if has_loss(slot)), len(decoder))
        free = tuple(decoder[first:])
        repeat = template.repeat
        if template.output_modality != "TEXT":
            return cls(free, repeat, FEATURES if output is None or output.continuous else CODES)
        return cls(free, repeat, cls.kind_of(free, repeat))

    @staticmethod
    def kind_of(free: tuple, repeat: Optional[RepeatGroup]) -> str:
        if repeat is not None:
            return REPETITION if free and all(slot.in_repeat for slot in free) else MIXED
        if free and all(slot.modality == "BOX" for slot in free):
            return BOX
        if len(free) == 1 and free[0].attrs.get("closed_set"):
            return CLOSED_SET
        return TEXT if len(free) <= 1 else MIXED

    @property
    def media_field(self) -> str:
        """The Output field a code output's value goes to: its modality in lower case (Output.image)."""
        return self.free[0].modality.lower()

    @property
    def box_count(self) -> int:
        return sum(slot.modality == "BOX" for slot in self.free)

    def prediction(self, output: Any) -> Any:
        """The value a metric scores: the box of a BOX output, the objects of a repetition, the waveform or motion
        (else the frames) of a continuous output, the image of an IMAGE output, else the text."""
        if self.kind == FEATURES:
            media = output.waveform if output.waveform is not None else output.motion
            return media if media is not None else output.frames
        if self.kind == CODES:
            return getattr(output, self.media_field)
        if self.kind == BOX:
            return output.box
        if self.kind == REPETITION:
            return output.objects
        return output.text


Reader = Callable[[Slot, list], Any]  # (slot, its tokens) -> the slot's value


class TokenReader:
    """Splits generated tokens over the free pieces and turns each slot's tokens into its value."""

    def __init__(self, layout: DecoderLayout, vocab: Any, literal: Callable[[Slot], list]):
        self.layout, self.bins, self.literal = layout, vocab.range("bin"), literal

    def read(self, tokens: list, value_of: Reader) -> dict:
        """{"text", "box", "objects"} of one hypothesis (None where the decoder has no such part), or for a media
        output of codes {its Output field: its value}."""
        if self.layout.kind == CODES:
            return {self.layout.media_field: value_of(self.layout.free[0], tokens)}
        if self.layout.kind == REPETITION:
            return {"text": None, "box": None, "objects": self.objects(tokens, value_of)}
        parts, _ = self.split(list(self.layout.free), tokens, 0, wrap=False)
        texts = [value_of(slot, ids) for slot, ids in parts if slot.modality not in ("BOX", "PLAIN")]
        boxes = [value_of(slot, ids) for slot, ids in parts if slot.modality == "BOX"]
        return {"text": " ".join(t for t in texts if t) if texts else None, "box": boxes[0] if boxes else None,
                "objects": None}

    def objects(self, tokens: list, value_of: Reader) -> list[dict]:
        """One dict per repetition (field name -> value); stops where the tokens no longer fit the group."""
        group = [slot for slot in self.layout.free if slot.in_repeat]
        objects, position = [], 0
        while position < len(tokens):
            parts, end = self.split(group, tokens, position, wrap=True)
            if end == position:
                break
            objects.append({field_name(slot): value_of(slot, ids) for slot, ids in parts if slot.modality != "PLAIN"})
            position = end
        return objects

    def split(self, pieces: list, tokens: list, position: int, wrap: bool) -> tuple[list, int]:
        """[(slot, tokens)] for `pieces` read from `position`, and where reading stopped."""
        parts = []
        for index, slot in enumerate(pieces):
            following = pieces[(index + 1) % len(pieces)] if wrap or index + 1 < len(pieces) else None
            end = self.piece_end(slot, following, tokens, position)
            parts.append((slot, tokens[position:end]))
            position = end
        return parts, position

    def piece_end(self, slot: Slot, following: Optional[Slot], tokens: list, start: int) -> int:
        if slot.modality == "BOX":
            end = start
            while end < len(tokens) and end - start < BOX_TOKENS and tokens[end] in self.bins:
                end += 1
            return end
        if slot.modality == "PLAIN":
            literal = self.literal(slot)
            return start + len(literal) if tokens[start:start + len(literal)] == literal else start
        for end in range(start, len(tokens)):
            if self.starts(following, tokens, end):
                return end
        return len(tokens)

    def starts(self, slot: Optional[Slot], tokens: list, position: int) -> bool:
        """Whether the piece `slot` visibly begins at `position` (a bin for BOX, its literal for PLAIN)."""
        if slot is None:
            return False
        if slot.modality == "BOX":
            return tokens[position] in self.bins
        if slot.modality == "PLAIN":
            literal = self.literal(slot)
            return bool(literal) and tokens[position:position + len(literal)] == literal
        return False


def field_name(slot: Slot) -> str:
    """The key of a repetition slot in `Output.objects`: "objs.box" -> "box" (nameless: the modality)."""
    return slot.name.rpartition(".")[2] if slot.name else slot.modality.lower()
