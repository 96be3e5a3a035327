"""Rows -> Examples: bind a row to one of the task's templates, run each slot's preprocessor, and build the
encoder pieces and the decoder sequence by the boundary rule of docs/design.md §4.

Consecutive text-like pieces of a side form one group wrapped once in `<s> ... </s>`; on the decoder,
plain text and `no_loss` slots get no loss, and those before the first loss-bearing slot are the forced
prefix at inference. See docs/internals.md, "Rows -> examples -> batches".
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch

from ..contracts import Preprocessor, SampleContext
from ..errors import ConfigError, DataError
from ..instruction import OUTPUT_MODALITIES, BoundSlot, Instruction, InstructionError, Slot, parse_templates
from ..media import load_image
from ..preprocess.config import DataConfig
from ..preprocess.image import ImageGeometry
from ..registry import PREPROCESSOR_REGISTRY, build_preprocessor
from ..rng import rng_for
from .collate import collate_examples
from .trie import Trie

PHONES_KEY = "phones"  # extra output of decoder text-like preprocessors (text_phone), collated as phone_targets


class EncodeError(DataError):
    """A row the task cannot encode; names the task, row and column (when one slot is at fault)."""

    def __init__(self, reason: str, task: str = "", row: Optional[int] = None, column: Optional[str] = None):
        self.reason, self.task, self.row, self.column = reason, task, row, column
        where = [f"task {task!r}"] * bool(task) + [f"row {row}"] * (row is not None)
        where += [f"column {column!r}"] * bool(column)
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)

    def __reduce__(self):
        return type(self), (self.reason, self.task, self.row, self.column)


@dataclasses.dataclass
class Example:
    """One encoded row (docs/internals.md). Target positions index `decoder_tokens[1:]`."""

    index: int
    template: int
    encoder: list  # per piece: {"modality", "adaptor", "tokens"} for a text group, else the preprocessor's features
    decoder_tokens: Optional[torch.Tensor]  # <s> ... </s>; None when the row has no target
    prefix_length: int  # forced tokens after <s>
    row: dict
    source_length: int  # tokens of the encoder text groups
    target_length: int  # len(decoder_tokens) - 1, or 0
    prefix_tokens: torch.Tensor  # the forced prefix (without <s>), also without a target
    loss_mask: Optional[torch.Tensor] = None  # BoolTensor over target positions: False for prompts and no_loss
    constraints: list = dataclasses.field(default_factory=list)  # (target position, allowed ids: range or list)
    image_sizes: dict = dataclasses.field(default_factory=dict)  # encoder IMAGE column -> ImageGeometry
    phone_targets: Optional[torch.Tensor] = None  # phone ids of a text_phone target
    # (target position of its first <bin>, (x0, y0, x1, y1) in [0, 1]) of each BOX target with a loss
    target_boxes: list = dataclasses.field(default_factory=list)
    # a continuous output slot's target ({"frames": [T, F], ...} of its preprocessor; then decoder_tokens is None)
    decoder_features: Optional[dict] = None


@dataclasses.dataclass
class _DecoderPiece:
    slot: Slot
    tokens: list
    loss: bool
    column: str


class RowEncoder:
    """Turns rows of one task into Examples and batches of Examples into samples; one per task and vocabulary.

    `answers` (the task's closed answer set) is needed when a decoder slot has `closed_set`, unless
    `check_closed_set` is False (ofasys-preprocess, which cannot know the set): such slots are then encoded
    as plain text, without answer check or constraints. `data_cfg` (default: DataConfig()) holds the length
    limits and is passed on to the preprocessors.
    """

    def __init__(self, task_name: str, templates: Union[str, Instruction, Sequence], vocab: Any,
                 data_cfg: Optional[DataConfig] = None, answers: Optional[Sequence[str]] = None,
                 check_closed_set: bool = True):
        data_cfg = data_cfg if data_cfg is not None else DataConfig()
        if not isinstance(data_cfg, DataConfig):
            raise TypeError(f"RowEncoder: data_cfg must be a DataConfig, got {type(data_cfg).__name__}")
        self.task_name, self.vocab, self.data_cfg = task_name, vocab, data_cfg
        self.templates = _as_templates(templates)
        self.max_source_positions = data_cfg.max_source_positions
        self.max_target_positions = data_cfg.max_target_positions
        self.truncate_long = data_cfg.truncate_long
        self.truncations = 0  # groups cut to the maximum length (in this process)
        self.preprocessors: dict[Slot, Preprocessor] = {}
        for template in self.templates:
            self._check_template(template)
            for slot in (*template.encoder, *template.decoder):
                if slot.modality != "PLAIN" and slot not in self.preprocessors:
                    self.preprocessors[slot] = self._build_preprocessor(slot)
        self.answers = list(answers) if answers is not None else None
        self.tries = {slot: self._build_trie(template, slot) for template in self.templates
                      for slot in template.decoder if slot.attrs.get("closed_set") and check_closed_set}
        self.outside_answers_reported = False  # a valid/test target outside the answers is reported once

    @classmethod
    def for_task(cls, task: Any, vocab: Any, data_cfg: Optional[DataConfig] = None) -> "RowEncoder":
        """The encoder of a `Task`: its templates, and its closed answer set when a slot needs one."""
        closed = any(s.attrs.get("closed_set") for t in task.templates for s in t.decoder)
        answers = task.closed_set_answers() if closed else task.answers
        return cls(task.name, task.templates, vocab, data_cfg, answers)

    # ---- construction ------------------------------------------------------------------------

    def _error(self, reason: str) -> ConfigError:
        return ConfigError(f"task {self.task_name!r}: {reason}")

    def _check_template(self, template: Instruction) -> None:
        for slot in template.decoder:
            if slot.attrs.get("disable_auto_boseos"):
                raise self._error(f"disable_auto_boseos on the decoder slot {slot} of {template.text!r}: the decoder "
                                  f"sequence always starts with <s> and its target ends with </s>")
        for side in (template.encoder, template.decoder):
            groups: dict = {}
            for slot in side:
                if slot.text_like:
                    groups.setdefault(slot.group, []).append(slot)
            for group, slots in groups.items():
                names = {slot.adaptor for slot in slots if slot.modality != "PLAIN"}
                if len(names) > 1:
                    raise self._error(f"text group {group} of {template.text!r} mixes adaptors {sorted(names)}; one "
                                      f"group is embedded by one adaptor")

    def output_preprocessor(self, template: Instruction) -> Optional[Preprocessor]:
        """The preprocessor of a template's non-text output slot (None for a text-like decoder)."""
        return None if template.output_modality == "TEXT" else self.preprocessors[template.decoder[0]]

    def continuous_output(self, template: Instruction) -> Optional[Preprocessor]:
        """The preprocessor of a template's continuous output slot (None when the decoder generates tokens)."""
        output = self.output_preprocessor(template)
        return output if output is not None and output.continuous else None

    def _build_preprocessor(self, slot: Slot) -> Preprocessor:
        if slot.preprocess not in PREPROCESSOR_REGISTRY:
            raise self._error(f"the slot {slot} needs preprocessor {slot.preprocess!r}, which is not registered "
                              f"(known: {', '.join(PREPROCESSOR_REGISTRY.names())}); a --user-dir plugin registers "
                              f"more with register_preprocessor")
        try:
            preprocessor = build_preprocessor(slot.preprocess, slot, self.vocab, self.data_cfg)
        except ValueError as err:
            raise self._error(f"cannot build the slot {slot}: {err}") from err
        output = slot.side == "decoder" and slot.modality in OUTPUT_MODALITIES
        if output and not (preprocessor.text_like or preprocessor.continuous):
            raise self._error(f"preprocessor {slot.preprocess!r} of the {slot.modality} output {slot} must return "
                              f"decoder tokens (text_like=True, as image_code does) or feature frames for an output "
                              f"adaptor (continuous=True, as audio_mel does)")
        if not output and slot.text_like != preprocessor.text_like:
            kind = "text-like" if slot.text_like else "non-text"
            raise self._error(f"preprocessor {slot.preprocess!r} of the {kind} slot {slot} must set text_like="
                              f"{slot.text_like}")
        return preprocessor

    def _build_trie(self, template: Instruction, slot: Slot) -> Trie:
        """The slot's answers tokenised as the slot tokenises, followed by </s> when it ends the decoder."""
        if not self.answers:
            raise self._error(f"the closed_set slot {slot} needs the task's answers: give answers=[...] (Task "
                              f"answers, or training data to collect them from)")
        ends_decoder = slot is template.decoder[-1] and not slot.in_repeat
        tokenize = getattr(self.preprocessors[slot], "tokenize", None)
        if tokenize is None:
            raise self._error(f"the closed_set slot {slot} needs a preprocessor with tokenize(answer) -> ids "
                              f"(as TextLikePreprocessor has); {slot.preprocess!r} has none")
        return Trie(tokenize(answer) + ([self.vocab.eos] if ends_decoder else []) for answer in self.answers)

    # ---- rows -> examples --------------------------------------------------------------------

    def template_index(self, ctx: SampleContext) -> int:
        """Which template a row uses: drawn per (seed, task, epoch, row) when there are several."""
        if len(self.templates) == 1:
            return 0
        rng = rng_for(ctx.seed, ctx.task, ctx.epoch, ctx.row_index, "template")
        return int(rng.integers(len(self.templates)))

    def encode(self, row: Mapping, ctx: SampleContext) -> Example:
        """One row -> Example; EncodeError (a ValueError) naming task, row and column on bad data."""
        ctx = dataclasses.replace(ctx, task=ctx.task or self.task_name, image_sizes=dict(ctx.image_sizes or {}),
                                  row=row)
        index = self.template_index(ctx)
        template = self.templates[index]
        try:
            bound = template.bind(row, ctx.split)
        except InstructionError as err:
            raise EncodeError(err.one_line(), ctx.task, ctx.row_index) from None
        features = {}
        for position, piece in enumerate(bound.encoder):
            if not piece.slot.text_like:
                features[position] = self._run(piece, ctx)
                geometry = self._geometry(template, piece, features[position], ctx)
                if geometry is not None:
                    ctx.image_sizes[piece.slot.name] = geometry
        encoder = self._encoder_pieces(bound.encoder, features, ctx)
        source_length = sum(len(piece["tokens"]) for piece in encoder if piece["modality"] == "TEXT")
        example = Example(index=ctx.row_index, template=index, encoder=encoder, decoder_tokens=None,
                          prefix_length=0, row=dict(row), source_length=source_length, target_length=0,
                          prefix_tokens=torch.zeros(0, dtype=torch.long), image_sizes=dict(ctx.image_sizes))
        self._fill_decoder(example, template, bound.decoder, row, ctx)
        return example

    def _run(self, piece: BoundSlot, ctx: SampleContext) -> dict:
        column = _display_column(piece)
        try:
            return self.preprocessors[piece.slot](piece.value, dataclasses.replace(ctx, column=column))
        except ValueError as err:
            raise EncodeError(_reason(err), ctx.task, ctx.row_index, column) from err

    def _geometry(self, template: Instruction, piece: BoundSlot, features: dict, ctx: SampleContext):
        """The image's geometry for BOX slots: from the preprocessor's `orig_size` (and crop/flip) outputs, else
        read from the image itself when a BOX slot needs it (None otherwise)."""
        if piece.slot.modality != "IMAGE":
            return None
        if "orig_size" in features:
            return ImageGeometry.of(features)
        if not any(s.modality == "BOX" for s in (*template.encoder, *template.decoder)):
            return None
        try:
            return ImageGeometry.of(load_image(piece.value, ctx.base_dir).size)
        except ValueError as err:
            raise EncodeError(_reason(err), ctx.task, ctx.row_index, piece.slot.name) from err

    def _text_tokens(self, piece: BoundSlot, ctx: SampleContext) -> dict:
        if piece.slot.modality == "PLAIN":
            return {"tokens": torch.tensor(self.vocab.encode_piece(piece.value), dtype=torch.long)}
        return self._run(piece, ctx)

    def _encoder_pieces(self, bound: list, features: dict, ctx: SampleContext) -> list:
        pieces, group, group_slots = [], [], []

        def close_group():
            if group_slots:
                tokens = self._wrap(group, group_slots, ctx)
                pieces.append({"modality": "TEXT", "adaptor": group_adaptor(group_slots), "tokens": tokens})
            group.clear()
            group_slots.clear()

        for position, piece in enumerate(bound):
            if not piece.slot.text_like:
                close_group()
                pieces.append({"modality": piece.slot.modality, "adaptor": piece.slot.adaptor, **features[position]})
                continue
            if group_slots and piece.slot.group != group_slots[0].group:
                close_group()
            group.extend(self._text_tokens(piece, ctx)["tokens"].tolist())
            group_slots.append(piece.slot)
        close_group()
        return pieces

    def _wrap(self, tokens: list, slots: list, ctx: SampleContext) -> torch.Tensor:
        """An encoder group's ids in `<s> ... </s>` (unless disable_auto_boseos), within max_source_positions."""
        wrapped = not any(s.attrs.get("disable_auto_boseos") for s in slots)
        room = self.max_source_positions - 2 * wrapped
        if len(tokens) > room:
            what = f"encoder text group {slots[0].group} has {len(tokens) + 2 * wrapped} tokens"
            tokens = self._truncated(tokens, room, ctx, what, self.max_source_positions, "max_source_positions")
        ids = [self.vocab.bos, *tokens, self.vocab.eos] if wrapped else tokens
        return torch.tensor(ids, dtype=torch.long)

    def _truncated(self, tokens: list, room: int, ctx: SampleContext, what: str, limit: int, option: str) -> list:
        if not self.truncate_long:
            raise EncodeError(f"{what}, more than {option}={limit}; raise {option} or set truncate_long "
                              f"(--truncate-long) to cut long groups", ctx.task, ctx.row_index)
        self.truncations += 1
        return tokens[:room]

    def _fill_decoder(self, example: Example, template: Instruction, bound: list, row: Mapping,
                      ctx: SampleContext) -> None:
        """Decoder tokens, prefix, loss mask, constraints and phone targets of one row (or its target frames)."""
        if self.continuous_output(template) is not None:
            if bound[0].value is not None:
                example.decoder_features = self._run(bound[0], ctx)
                example.target_length = int(example.decoder_features["frames"].size(0))
            return
        pieces, phones = [], []
        for piece in bound:
            loss = not (piece.slot.modality == "PLAIN" or piece.slot.no_loss)
            if piece.value is None:
                if not loss and not any(p is None or p.loss for p in pieces):
                    raise EncodeError(f"the decoder prompt slot {piece.slot} has no value; a prompt is forced as a "
                                      f"prefix at inference and needs its column", ctx.task, ctx.row_index,
                                      piece.slot.name)
                pieces.append(None)
                continue
            output = self._text_tokens(piece, ctx)
            pieces.append(_DecoderPiece(piece.slot, output["tokens"].tolist(), loss, _display_column(piece)))
            if PHONES_KEY in output:
                phones.extend(output[PHONES_KEY].tolist())
        first_loss = next((i for i, p in enumerate(pieces) if p is None or p.loss), len(pieces))
        example.prefix_tokens = torch.tensor([t for p in pieces[:first_loss] for t in p.tokens], dtype=torch.long)
        example.prefix_length = len(example.prefix_tokens)
        if None in pieces or (template.repeat is not None and _missing(row, template.repeat.list_name)):
            return
        inner, loss_mask, constraints, boxes = [], [], [], []
        for index, piece in enumerate(pieces):
            constraints.extend(self._constraints(piece, len(inner), index == len(pieces) - 1, ctx))
            if piece.slot.modality == "BOX" and piece.loss:
                boxes.append((len(inner), self._box_coordinates(piece.tokens)))
            inner.extend(piece.tokens)
            loss_mask.extend([piece.loss] * len(piece.tokens))
        room = self.max_target_positions - 1  # the target is inner + </s>
        if len(inner) > room:
            inner = self._truncated(inner, room, ctx, f"the decoder target has {len(inner) + 1} tokens",
                                    self.max_target_positions, "max_target_positions")
            loss_mask = loss_mask[:room]
            constraints = [(position, allowed) for position, allowed in constraints if position < room]
            boxes = [(position, box) for position, box in boxes if position + len(box) <= room]
            example.prefix_tokens = example.prefix_tokens[:room]
            example.prefix_length = len(example.prefix_tokens)
        example.decoder_tokens = torch.tensor([self.vocab.bos, *inner, self.vocab.eos], dtype=torch.long)
        example.loss_mask = torch.tensor([*loss_mask, True], dtype=torch.bool)
        example.target_length = len(inner) + 1
        example.constraints = constraints
        example.target_boxes = boxes
        example.phone_targets = torch.tensor(phones, dtype=torch.long) if phones else None

    def _box_coordinates(self, tokens: list) -> tuple[float, ...]:
        """A BOX slot's `<bin>` ids -> its normalised coordinates (bin i of n is i / (n - 1))."""
        bins = self.vocab.range("bin")
        return tuple((token - bins.start) / max(len(bins) - 1, 1) for token in tokens)

    def _constraints(self, piece: _DecoderPiece, start: int, last: bool, ctx: SampleContext) -> list:
        """(target position, allowed ids) of a BOX slot (`<bin>`s), a slot whose preprocessor names its
        `token_range` (an IMAGE output's codes) or a closed_set slot (the answer trie)."""
        token_range = getattr(self.preprocessors.get(piece.slot), "token_range", None)
        if token_range is not None:
            return [(start + i, token_range) for i in range(len(piece.tokens))]
        if piece.slot.modality == "BOX":
            # In a repetition an object's first bin competes with </s> and with more label text, so it keeps
            # the full softmax; the generator's grammar then normalises over the same choices (generators/).
            first = 1 if piece.slot.in_repeat else 0
            return [(start + i, self.vocab.range("bin")) for i in range(first, len(piece.tokens))]
        trie = self.tries.get(piece.slot)
        if trie is None:
            return []
        sequence = piece.tokens + ([self.vocab.eos] if last and not piece.slot.in_repeat else [])
        if sequence in trie:
            return [(start + i, trie.allowed(sequence[:i])) for i in range(len(sequence))]
        outside = EncodeError(f"the target {self.vocab.decode(piece.tokens)!r} of the closed_set slot {piece.slot} is "
                              f"not one of the task's {len(self.answers)} answers", ctx.task, ctx.row_index,
                              piece.column)
        if ctx.is_train:
            raise outside
        if not self.outside_answers_reported:  # a benchmark's answers need not all occur in training
            self.outside_answers_reported = True
            warnings.warn(f"{outside} (split {ctx.split!r}); such rows keep an unconstrained loss and count as "
                          f"misses in the metric (reported once per task)", stacklevel=2)
        return []

    # ---- examples -> batch -------------------------------------------------------------------

    def collate(self, examples: Sequence[Example]) -> dict:
        """A batch of Examples of this task -> the `sample` dict (docs/internals.md)."""
        if not examples:
            raise ValueError(f"task {self.task_name!r}: cannot collate an empty batch")
        template = self.templates[examples[0].template]
        collaters, previous_text = [], False
        for slot in template.encoder:
            if not slot.text_like:
                collaters.append(self.preprocessors[slot].collate)
            elif not previous_text:
                collaters.append(None)
            previous_text = slot.text_like
        output = self.continuous_output(template)
        decoder = None if output is None else (template.decoder[0], output)
        return collate_examples(self.task_name, examples, collaters, self.vocab.pad, len(self.vocab), decoder,
                                self.vocab.range("bin"))


def _as_templates(templates: Union[str, Instruction, Sequence]) -> list:
    if isinstance(templates, Instruction):
        return [templates]
    if not isinstance(templates, str) and templates and all(isinstance(t, Instruction) for t in templates):
        return list(templates)
    return parse_templates(templates)


def _reason(err: ValueError) -> str:
    """The message without location context (a MediaError keeps its bare `.reason`)."""
    return getattr(err, "reason", None) or str(err)


def _display_column(piece: BoundSlot) -> str:
    """The column a slot reads, with the item index inside a repetition group: "objs[1].box"."""
    name = piece.slot.name or ""
    if piece.repeat_index is None:
        return name
    head, _, field = name.rpartition(".")
    return f"{head}[{piece.repeat_index}].{field}"


def _missing(row: Mapping, name: str) -> bool:
    """Whether a (possibly dotted) column is absent or None in the row."""
    if name in row:
        return row[name] is None
    head, dot, rest = name.partition(".")
    return not (dot and isinstance(row.get(head), Mapping)) or _missing(row[head], rest)


def group_adaptor(slots: Sequence[Slot]) -> str:
    """The adaptor of a text group: its slots' (literal text takes theirs), or "text" for literals alone."""
    named = [slot.adaptor for slot in slots if slot.modality != "PLAIN"]
    return named[0] if named else slots[0].adaptor
