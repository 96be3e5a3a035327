"""The instruction language (docs/design.md §4): `[IMAGE:img] what does the image describe? -> [TEXT:cap]`.

`Instruction.parse` turns one line into typed, validated slots; `Instruction.bind` pairs them with a
row's values. Every violation is an `InstructionError` quoting the instruction with a caret.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

from .errors import ConfigError, OFASysError
from .registry import did_you_mean
from .schemas import (  # noqa: F401  (Attr, register_attr_schema, get_attr_schema are re-exported)
    DEFAULT_PREPROCESS,
    MODALITIES,
    NAME_PATTERN,
    OUTPUT_MODALITIES,
    TEXT_LIKE_MODALITIES,
    Attr,
    AttrError,
    get_attr_schema,
    plain_attrs,
    register_attr_schema,
    resolve_slot_attrs,
    slot_defaults,
)

SPLITS = ("train", "valid", "test", "inference")
TARGET_OPTIONAL_SPLITS = frozenset({"test", "inference"})
MARKERS = ("<BOS>", "<EOS>")
TEMPLATE_SEPARATOR = "|||"
_ESCAPABLE = "[]()-\\"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MARKER = re.compile(r"<[A-Za-z]+>")
_LEXEMES = {"->": "arrow", ")*": "close", "(": "open", ")": "paren"}  # longest first
_MISSING = object()


class InstructionError(OFASysError, ValueError):
    """A malformed instruction (or an instruction/row mismatch), shown with a caret under the column."""

    def __init__(self, instruction: str, column: int, reason: str):
        self.instruction, self.column, self.reason = instruction, column, reason
        super().__init__(self._format())

    def _format(self) -> str:
        shown = re.sub(r"\s", " ", self.instruction)  # same length, so the caret stays aligned
        return f"{self.reason}\n    {shown}\n    {' ' * self.column}^"

    def one_line(self) -> str:
        """The reason, with the instruction quoted and the caret's place given as a character position."""
        return f"{self.reason} (at character {self.column} of the instruction {self.instruction!r})"

    def __reduce__(self):
        return type(self), (self.instruction, self.column, self.reason)


class BindError(InstructionError):
    """A row that does not fit the instruction (missing column, wrong shape of a repeated list)."""


@dataclasses.dataclass(frozen=True)
class Slot:
    """One piece of an instruction side: a `[MODALITY:NAME,attrs]` slot, or literal text (modality PLAIN)."""

    modality: str
    name: Optional[str]
    attrs: dict = dataclasses.field(hash=False)
    side: str
    text: Optional[str] = None
    group: Optional[int] = None
    in_repeat: bool = False
    column: int = dataclasses.field(default=0, compare=False)  # diagnostic only: equal slots may sit elsewhere

    @property
    def text_like(self) -> bool:
        return self.modality == "PLAIN" or self.modality in TEXT_LIKE_MODALITIES

    @property
    def preprocess(self) -> str:
        return self.attrs["preprocess"]

    @property
    def adaptor(self) -> Optional[str]:
        return self.attrs["adaptor"]

    @property
    def no_loss(self) -> bool:
        return bool(self.attrs.get("no_loss", False))

    def __str__(self) -> str:
        if self.modality == "PLAIN":
            return repr(self.text)
        head = self.modality + (f":{self.name}" if self.name else "")
        return "[" + ",".join([head, *_explicit_attrs(self)]) + "]"


@dataclasses.dataclass(frozen=True)
class RepeatGroup:
    """The decoder's `( ... )*` group: its pieces repeat once per item of the list column `list_name`."""

    slots: tuple
    max_repeat: Optional[int]
    list_name: str
    column: int = dataclasses.field(default=0, compare=False)


@dataclasses.dataclass(frozen=True)
class BoundSlot:
    """A slot paired with its row value (PLAIN: its literal; missing target at test/inference: None)."""

    slot: Slot
    value: Any
    repeat_index: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class BoundInstruction:
    """An instruction bound to one row: the encoder and decoder pieces with values, repetition expanded."""

    instruction: "Instruction"
    split: str
    encoder: list
    decoder: list


class Instruction:
    """A parsed instruction: encoder and decoder pieces in order (markers removed) and the repetition group."""

    def __init__(self, text: str, encoder: Sequence[Slot], decoder: Sequence[Slot], repeat: Optional[RepeatGroup]):
        self.text, self.encoder, self.decoder, self.repeat = text, tuple(encoder), tuple(decoder), repeat

    @classmethod
    def parse(cls, text: str) -> "Instruction":
        """Parse and validate one instruction; raises InstructionError quoting it with a caret."""
        if not isinstance(text, str):
            raise TypeError(f"an instruction is a string, got {type(text).__name__}: {text!r}")
        return _Parser(text).parse()

    @property
    def encoder_slots(self) -> list:
        return [s for s in self.encoder if s.name is not None]

    @property
    def decoder_slots(self) -> list:
        return [s for s in self.decoder if s.name is not None]

    @property
    def output_modality(self) -> str:
        """"TEXT" for a text-like decoder, else the output slot's modality (IMAGE, AUDIO, MOTION)."""
        return "TEXT" if self.decoder[0].text_like else self.decoder[0].modality

    @property
    def adaptor_names(self) -> set:
        """The adaptors the instruction needs: "text" for text groups, each other encoder slot's adaptor (None: the
        model's image adaptor), and the decoder output slot's (image_code adds positions to generated codes)."""
        outputs = {slot.adaptor for slot in self.decoder if slot.modality in OUTPUT_MODALITIES and slot.adaptor}
        return {"text"} | outputs | {(piece.adaptor or "text") if piece.text_like else piece.adaptor
                                     for piece in self.encoder}

    def columns(self) -> set:
        """Row keys the instruction reads (a repetition group reads its list column)."""
        names = {s.name for s in (*self.encoder, *self.decoder) if s.name is not None and not s.in_repeat}
        return names | ({self.repeat.list_name} if self.repeat else set())

    def signature(self) -> tuple:
        """Hashable shape of the instruction: per side its text groups and non-text slots, ignoring plain text."""
        return _side_signature(self.encoder), _side_signature(self.decoder), self.repeat and self.repeat.list_name

    def bind(self, row: Mapping, split: str = "train") -> BoundInstruction:
        """Pair each piece with its value from `row`; see docs/instructions.md for the rules."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for binding {self.text!r}; expected one of {SPLITS}")
        if not isinstance(row, Mapping):
            raise TypeError(f"a row is a dict of column -> value, got {type(row).__name__} for {self.text!r}")
        encoder = [self._bind_slot(s, row, split) for s in self.encoder]
        decoder = []
        for slot in self.decoder:
            if not slot.in_repeat:
                decoder.append(self._bind_slot(slot, row, split))
            elif slot is self.repeat.slots[0]:
                decoder.extend(self._bind_repeat(row, split))
        return BoundInstruction(self, split, encoder, decoder)

    def _bind_slot(self, slot: Slot, row: Mapping, split: str) -> BoundSlot:
        if slot.modality == "PLAIN":
            return BoundSlot(slot, slot.text)
        value = _lookup(row, slot.name) if slot.name is not None else _MISSING
        if value is _MISSING or value is None:
            self._check_missing(slot, slot.name, row, split, value)
            return BoundSlot(slot, None)
        return BoundSlot(slot, value)

    def _check_missing(self, slot: Slot, column: Optional[str], row: Mapping, split: str, value: Any) -> None:
        """Raise BindError unless a missing value is allowed here (a decoder target at test/inference)."""
        if slot.side == "decoder" and split in TARGET_OPTIONAL_SPLITS:
            return
        where = f"the {slot.side} slot {slot}"
        if column is None:
            reason = f"{where} has no column name, so split {split!r} has no target for it"
        else:
            problem = "is None" if value is None else "is missing"
            hint = "" if slot.side == "encoder" else " (a missing target is allowed only at split test/inference)"
            reason = (f"column {column!r} needed by {where} {problem} in the row at split {split!r}{hint}; "
                      f"row keys: {sorted(map(str, row))}")
        raise BindError(self.text, slot.column, reason)

    def _bind_repeat(self, row: Mapping, split: str) -> list:
        group = self.repeat
        first = next(s for s in group.slots if s.name is not None)
        items = _lookup(row, group.list_name)
        if items is _MISSING or items is None:
            self._check_missing(first, group.list_name, row, split, items)
            return []
        items = _as_item_list(items)
        if items is None:
            raise BindError(self.text, group.column, (
                f"column {group.list_name!r} of the repetition group must be a list of dicts "
                f"(or a dict of equal-length lists), got {type(_lookup(row, group.list_name)).__name__}"))
        bound = []
        for index, item in enumerate(items[: group.max_repeat]):
            for slot in group.slots:
                if slot.modality == "PLAIN":
                    bound.append(BoundSlot(slot, slot.text, index))
                    continue
                if not isinstance(item, Mapping):
                    raise BindError(self.text, group.column, f"item {index} of column {group.list_name!r} must be "
                                                             f"a dict, got {type(item).__name__}: {item!r}")
                field = slot.name[len(group.list_name) + 1:]
                value = _lookup(item, field)
                if value is _MISSING:
                    raise BindError(self.text, slot.column, (
                        f"item {index} of column {group.list_name!r} has no key {field!r} needed by {slot}; "
                        f"item keys: {sorted(map(str, item))}"))
                bound.append(BoundSlot(slot, value, index))
        return bound

    def __repr__(self) -> str:
        first, last = (self.repeat.slots[0], self.repeat.slots[-1]) if self.repeat else (None, None)
        limit = f" (max_repeat={self.repeat.max_repeat})" if self.repeat and self.repeat.max_repeat else ""

        def side(pieces):
            return " ".join(("( " if p is first else "") + str(p) + (" )*" + limit if p is last else "")
                            for p in pieces)
        return f"Instruction({side(self.encoder)} -> {side(self.decoder)})"


def parse_templates(templates: Union[str, Sequence[str]]) -> list:
    """Parse several templates of one task (a list, or one string joined by '|||'); they must share a signature."""
    if not isinstance(templates, (str, list, tuple)):
        raise ConfigError(f"an instruction is a string, or a list of template strings; got "
                         f"{type(templates).__name__} {templates!r:.80}")
    texts = templates.split(TEMPLATE_SEPARATOR) if isinstance(templates, str) else list(templates)
    if not texts:
        raise ConfigError("a task needs at least one instruction template, got none")
    parsed = []
    for text in texts:
        if not isinstance(text, str):
            raise ConfigError(f"instruction template {len(parsed)} is {type(text).__name__} {text!r:.80}; expected "
                             f"a string")
        if not text.strip():
            raise ConfigError(f"instruction template {len(parsed)} of {templates!r} is empty")
        parsed.append(Instruction.parse(text.strip()))
    for other in parsed[1:]:
        if other.signature() != parsed[0].signature():
            raise InstructionError(other.text, 0, (
                f"instruction templates of one task must share their slots and text groups (same sides, "
                f"modalities, names and order), but this template differs from the first one: "
                f"{parsed[0].text!r}"))
    return parsed


def _explicit_attrs(slot: Slot) -> list:
    """The attributes that differ from their defaults, as written in an instruction."""
    defaults = slot_defaults(slot.modality, slot.side, slot.preprocess)
    return [key if value is True else f"{key}={value}"
            for key, value in slot.attrs.items() if value != defaults.get(key)]


def _side_signature(pieces: Sequence[Slot]) -> tuple:
    signature, groups = [], set()
    for piece in pieces:
        if piece.text_like and piece.group not in groups:
            groups.add(piece.group)
            signature.append(("GROUP", piece.group))
        if piece.text_like and piece.modality != "PLAIN":
            signature.append((piece.modality, piece.name, piece.in_repeat))
        elif not piece.text_like:
            signature.append((piece.modality, piece.name, piece.preprocess, piece.adaptor))
    return tuple(signature)


def column_value(row: Mapping, name: str, default: Any = None) -> Any:
    """The value of a possibly dotted column ("objs.label") in a row; `default` when absent."""
    value = _lookup(row, name)
    return default if value is _MISSING else value


def _lookup(container: Mapping, name: str) -> Any:
    """container[name] for a literal (HF-flattened "a.b") key, else nested access along the dots."""
    if name in container:
        return container[name]
    head, dot, rest = name.partition(".")
    if dot and head in container and isinstance(container[head], Mapping):
        return _lookup(container[head], rest)
    return _MISSING


def _as_item_list(value: Any) -> Optional[list]:
    """A repetition column as a list of items; HF's dict-of-equal-length-lists form is transposed; else None."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping) and all(isinstance(v, (list, tuple)) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        if len(lengths) <= 1:
            return [dict(zip(value, row)) for row in zip(*value.values())]
    return None


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # text | slot | marker | one of _LEXEMES' kinds
    column: int
    text: str = ""


class _Parser:
    """Tokenise, split at '->', parse each side's slots, then check markers, groups and side rules."""

    def __init__(self, src: str):
        self.src = src
        self.box_image_refs: list = []  # (image column, caret column) of BOX image=NAME attributes
        self.max_repeat: Optional[int] = None

    def error(self, column: int, reason: str) -> InstructionError:
        return InstructionError(self.src, column, reason)

    def parse(self) -> Instruction:
        surrogate = next((i for i, c in enumerate(self.src) if "\ud800" <= c <= "\udfff"), None)
        if surrogate is not None:
            raise self.error(surrogate, f"{self.src[surrogate]!r} is a lone surrogate, not Unicode text (an "
                                        f"undecodable byte?); expected valid Unicode")
        tokens = self.tokenize()
        arrows = [i for i, t in enumerate(tokens) if t.kind == "arrow"]
        if not arrows:
            raise self.error(len(self.src), "no '->' in the instruction: write ENCODER -> DECODER, "
                                            "e.g. [IMAGE:img] what does the image describe? -> [TEXT:cap]")
        if len(arrows) > 1:
            raise self.error(tokens[arrows[1]].column, "several '->' in the instruction: exactly one separates "
                                                       "the encoder from the decoder (write a literal '->' as '\\->')")
        encoder_items, _ = self.side(tokens[: arrows[0]], "encoder")
        decoder_items, repeat_column = self.side(tokens[arrows[0] + 1:], "decoder")
        images = {s.name for s in encoder_items if isinstance(s, Slot) and s.modality == "IMAGE"}
        for name, column in self.box_image_refs:
            if name not in images:
                raise self.error(column, f"image={name}: no encoder IMAGE slot reads column {name!r}."
                                         f"{did_you_mean(name, images)} Encoder images: {sorted(images) or 'none'}")
        encoder = self.group(self.check_markers(encoder_items))
        decoder = self.group(self.check_markers(decoder_items))
        self.check_decoder(decoder, tokens[arrows[0]].column)
        repeat = self.repeat_group(decoder, repeat_column) if repeat_column is not None else None
        return Instruction(self.src, encoder, decoder, repeat)

    def tokenize(self) -> list:
        src, tokens, chars, i = self.src, [], [], 0

        def flush():
            if chars:
                first = next((col for ch, col in chars if not ch.isspace()), chars[0][1])
                tokens.append(_Token("text", first, "".join(ch for ch, _ in chars)))
                chars.clear()

        while i < len(src):
            c, marker = src[i], _MARKER.match(src, i)
            lexeme = next((lex for lex in _LEXEMES if src.startswith(lex, i)), None)
            if c == "\\" and i + 1 < len(src) and src[i + 1] in _ESCAPABLE:
                chars.append((src[i + 1], i))
                i += 2
            elif c == "]":
                raise self.error(i, "stray ']' without a matching '[' (write a literal ']' as '\\]')")
            elif c == "[":
                end = next((j for j in range(i + 1, len(src)) if src[j] in "[]"), None)
                if end is None or src[end] == "[":
                    raise self.error(i, "unclosed '[': a slot is [MODALITY:NAME,attr,...] "
                                        "(write a literal '[' as '\\[')")
                flush()
                tokens.append(_Token("slot", i, src[i + 1: end]))
                i = end + 1
            elif marker and marker.group(0).upper() in MARKERS:
                if marker.group(0) not in MARKERS:
                    raise self.error(i, f"unknown marker {marker.group(0)}.{did_you_mean(marker.group(0), MARKERS)}")
                flush()
                tokens.append(_Token("marker", i, marker.group(0)))
                i = marker.end()
            elif lexeme:
                flush()
                tokens.append(_Token(_LEXEMES[lexeme], i, lexeme))
                i += len(lexeme)
            else:
                chars.append((c, i))
                i += 1
        flush()
        return tokens

    def side(self, tokens: list, side: str) -> tuple:
        """The side's pieces and markers in order, and the column of its repetition group's '(' (or None)."""
        items, open_column, repeat_column = [], None, None
        for token in tokens:
            in_repeat = open_column is not None
            if token.kind == "text":
                text = " ".join(token.text.split())
                if text:
                    items.append(Slot("PLAIN", None, plain_attrs(side), side, text, None, in_repeat, token.column))
            elif token.kind == "slot":
                items.append(self.slot(token, side, in_repeat))
            elif token.kind == "marker":
                if in_repeat:
                    raise self.error(token.column, f"marker {token.text} inside a repetition group: markers may "
                                                   f"only stand at the edges of a text group")
                items.append(token)
            elif token.kind == "open":
                if side == "encoder":
                    raise self.error(token.column, "a repetition group '( ... )*' is allowed on the decoder side "
                                                   "only (write a literal '(' as '\\(')")
                if in_repeat:
                    raise self.error(token.column, "nested repetition groups are not supported "
                                                   "(write a literal '(' as '\\(')")
                if repeat_column is not None:
                    raise self.error(token.column, "only one repetition group '( ... )*' is allowed per instruction")
                open_column = repeat_column = token.column
            elif token.kind in ("close", "paren"):
                if not in_repeat:
                    raise self.error(token.column, "stray ')' without a matching '(' (write a literal ')' as '\\)')")
                if token.kind == "paren":
                    raise self.error(token.column, "a repetition group closes with ')*' (write a literal ')' as '\\)')")
                self.check_repeat_items(items, open_column)
                open_column = None
        if open_column is not None:
            raise self.error(open_column, "unclosed '(': a repetition group is '( ... )*' "
                                          "(write a literal '(' as '\\(')")
        return items, repeat_column

    def slot(self, token: _Token, side: str, in_repeat: bool) -> Slot:
        parts = self.split_slot(token)
        (head, head_column), attr_parts = parts[0], parts[1:]
        modality, colon, name = head.partition(":")
        modality = modality.strip()
        if not modality:
            raise self.error(head_column, f"slot without a modality: a slot is [MODALITY:NAME,attr,...] with "
                                          f"MODALITY one of {', '.join(MODALITIES)}")
        if modality not in MODALITIES:
            raise self.error(head_column, f"unknown modality {modality!r}.{did_you_mean(modality, MODALITIES)} "
                                          f"Modalities: {', '.join(MODALITIES)} (write a literal '[' as '\\[')")
        if side == "decoder" and modality not in DEFAULT_PREPROCESS["decoder"]:
            raise self.error(head_column, f"{modality} cannot be generated: the decoder side holds text-like slots "
                                          f"or one {'/'.join(sorted(OUTPUT_MODALITIES))} output slot")
        name_column = head_column + len(head) - len(name.lstrip())
        name = name.strip() if colon else None
        if name == "":
            raise self.error(name_column, f"empty column name after ':': write [{modality}:NAME]")
        if name is not None and not re.fullmatch(NAME_PATTERN, name):
            raise self.error(name_column, f"bad column name {name!r}: a NAME is letters, digits and '_', not "
                                          f"starting with a digit, optionally dotted (e.g. objs.box)")
        if name is None and (side == "encoder" or modality not in OUTPUT_MODALITIES):
            outputs = "/".join(sorted(OUTPUT_MODALITIES))
            raise self.error(head_column, f"the {side} slot [{modality}] needs a column name: [{modality}:NAME] "
                                          f"(only a decoder {outputs} output may be nameless)")
        raw = {}
        for text, column in attr_parts:
            key, eq, value = text.partition("=")
            if not _IDENTIFIER.fullmatch(key.strip()):
                raise self.error(column, f"bad attribute {text!r}: an attribute is key or key=value"
                                 if text else "empty attribute: remove the extra ','")
            if key.strip() in raw:
                raise self.error(column, f"duplicate attribute {key.strip()!r}")
            value_column = column + len(key) + 1 + len(value) - len(value.lstrip())
            raw[key.strip()] = (value.strip() if eq else None, column, value_column)
        try:
            attrs = resolve_slot_attrs(modality, side, raw, in_repeat, head_column)
        except AttrError as err:
            raise self.error(err.column, str(err)) from None
        if attrs.get("image") and modality == "BOX":
            self.box_image_refs.append((attrs["image"], raw["image"][2]))
        limit = attrs.pop("max_repeat", None)
        if limit is not None and self.max_repeat not in (None, limit):
            raise self.error(raw["max_repeat"][2], f"max_repeat={limit} contradicts max_repeat={self.max_repeat} "
                                                   f"given earlier in the same repetition group")
        self.max_repeat = limit if limit is not None else self.max_repeat
        return Slot(modality, name, attrs, side, None, None, in_repeat, token.column)

    def split_slot(self, token: _Token) -> list:
        """The slot body split at ',' as (stripped text, column); a part starting with a digit continues the
        previous value, so `size=640,480` stays one attribute."""
        parts, offset = [], token.column + 1
        if not token.text.strip():
            raise self.error(token.column, "empty slot: a slot is [MODALITY:NAME,attr,...]")
        for raw in token.text.split(","):
            text = raw.strip()
            if text[:1].isdigit() and len(parts) > 1 and "=" in parts[-1][0]:
                parts[-1] = (f"{parts[-1][0]},{text}", parts[-1][1])
            else:
                parts.append((text, offset + len(raw) - len(raw.lstrip()) if text else offset))
            offset += len(raw) + 1
        return parts

    def check_repeat_items(self, items: list, open_column: int) -> None:
        """At ')*': the group reads one list column (LIST.FIELD names) and has one max_repeat."""
        slots = [s for s in items if isinstance(s, Slot) and s.in_repeat and s.modality != "PLAIN"]
        if not slots:
            raise self.error(open_column, "empty repetition group: '( ... )*' needs at least one slot, "
                                          "e.g. ( [BOX:objs.box] [TEXT:objs.label] )*")
        list_name = slots[0].name.rpartition(".")[0]
        for slot in slots:
            if not list_name or not slot.name.startswith(list_name + "."):
                expected = f"{list_name}.FIELD" if list_name else "LIST.FIELD"
                raise self.error(slot.column, f"slots of a repetition group read fields of one list column: "
                                              f"expected [{slot.modality}:{expected}], got {slot.name!r}")

    def check_markers(self, items: list) -> list:
        """Markers may stand only at a text group's edges; they change nothing and are dropped."""
        pieces = []
        for index, item in enumerate(items):
            if isinstance(item, Slot):
                pieces.append(item)
                continue
            before = next((x for x in reversed(items[:index]) if isinstance(x, Slot)), None)
            after = next((x for x in items[index + 1:] if isinstance(x, Slot)), None)
            text_before, text_after = bool(before and before.text_like), bool(after and after.text_like)
            if index and isinstance(items[index - 1], _Token) and items[index - 1].text == item.text:
                raise self.error(item.column, f"repeated marker {item.text}")
            if text_before and text_after:
                raise self.error(item.column, f"marker {item.text} inside a text group: <BOS>/<EOS> may only "
                                              f"stand at a group's edges, before its first or after its last piece")
            if item.text == "<BOS>" and not text_after:
                raise self.error(item.column, "<BOS> must be followed by text or a text-like slot: it marks the "
                                              "start of a text group")
            if item.text == "<EOS>" and not text_before:
                raise self.error(item.column, "<EOS> must follow text or a text-like slot: it marks the end of a "
                                              "text group")
        return pieces

    @staticmethod
    def group(pieces: list) -> list:
        """Number the runs of consecutive text-like pieces (Slot.group)."""
        grouped, group, previous_text = [], -1, False
        for piece in pieces:
            if piece.text_like and not previous_text:
                group += 1
            grouped.append(dataclasses.replace(piece, group=group) if piece.text_like else piece)
            previous_text = piece.text_like
        return grouped

    def check_decoder(self, decoder: list, arrow_column: int) -> None:
        if not decoder:
            raise self.error(min(arrow_column + 2, len(self.src)), "the decoder side is empty: say what to "
                                                                   "predict, e.g. -> [TEXT:target]")
        outputs = [s for s in decoder if s.modality in OUTPUT_MODALITIES]
        if len(outputs) > 1:
            raise self.error(outputs[1].column, f"two output slots on the decoder side: it holds exactly one "
                                                f"{'/'.join(sorted(OUTPUT_MODALITIES))} slot, or text-like slots")
        if outputs and len(decoder) > 1:
            other = next(s for s in decoder if s is not outputs[0])
            raise self.error(other.column, f"the decoder side mixes an {outputs[0].modality} output slot with "
                                           f"text-like pieces: an {outputs[0].modality} output must stand alone")
        if all(s.modality == "PLAIN" for s in decoder):
            raise self.error(decoder[0].column, "the decoder side has only plain text: it needs a slot to "
                                                "predict, e.g. [TEXT:target]")

    def repeat_group(self, decoder: list, open_column: int) -> RepeatGroup:
        slots = tuple(s for s in decoder if s.in_repeat)
        list_name = next(s.name for s in slots if s.name is not None).rpartition(".")[0]
        return RepeatGroup(slots, self.max_repeat, list_name, open_column)
