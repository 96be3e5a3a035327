"""Attribute schemas: what each preprocessor name accepts inside an instruction slot.

The instruction parser validates every `[MODALITY:NAME,key=value]` against the schema of the slot's
preprocessor, so typos and out-of-range values fail at parse time, before any data is read. Built-in
preprocessors declare their schema here even before their implementation exists; a `--user-dir`
plugin calls `register_attr_schema` for its own preprocessor.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Optional

from .errors import PluginError
from .registry import ADAPTOR_REGISTRY, did_you_mean

MODALITIES = ("TEXT", "IMAGE", "AUDIO", "VIDEO", "MOTION", "BOX", "PHONE", "STRUCT", "CATEGORY")
TEXT_LIKE_MODALITIES = frozenset({"TEXT", "BOX", "PHONE", "STRUCT", "CATEGORY"})
OUTPUT_MODALITIES = frozenset({"IMAGE", "AUDIO", "MOTION"})  # non-text outputs: one slot fills the decoder
SIDES = ("encoder", "decoder")
ATTR_TYPES = (bool, int, float, str)
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"

DEFAULT_PREPROCESS = {
    "encoder": {"TEXT": "text", "IMAGE": "image", "AUDIO": "audio", "VIDEO": "video", "MOTION": "motion_6d",
                "BOX": "box", "PHONE": "phone", "STRUCT": "struct", "CATEGORY": "category"},
    "decoder": {"TEXT": "text", "IMAGE": "image_code", "AUDIO": "audio_mel", "MOTION": "motion_6d",
                "BOX": "box", "PHONE": "phone", "STRUCT": "struct", "CATEGORY": "category"},
}

# Adaptor names valid before their implementations are registered (they come in later issues).
BUILTIN_ADAPTORS = frozenset(
    {"text", "image_patch", "image_resnet", "audio_fbank", "video_frames", "image_code", "audio_mel", "motion_6d",
     "motion_6d_diffusion"}
)
BUILTIN_ADAPTOR_ALIASES = {"image_vqgan": "image_code"}


@dataclasses.dataclass(frozen=True)
class Attr:
    """One slot attribute: its type (bool = a flag without value), default, range, allowed sides, help.

    `max_exclusive` makes `max` an open bound (ratios 0 <= p < 1); `pattern` is a regex a str value
    must match in full.
    """

    type: type
    default: Any = None
    min: Optional[float] = None
    max: Optional[float] = None
    sides: tuple = SIDES
    help: str = ""
    max_exclusive: bool = False
    pattern: Optional[str] = None
    decoding_only: bool = False  # changes how an output is generated, not what a model learns (hub task matching)

    def convert(self, key: str, raw: Optional[str]) -> Any:
        """The typed value of `key=raw` (raw None: written bare, as a flag); ValueError saying what was expected."""
        if self.type is bool:
            if raw is not None:
                raise ValueError(f"{key} is a flag and takes no value: write '{key}', not '{key}={raw}'")
            return True
        if not raw:
            raise ValueError(f"{key} needs a value: {key}=<{self.type.__name__}>")
        if self.type is str:
            if self.pattern is not None and not re.fullmatch(self.pattern, raw):
                raise ValueError(f"{key}={raw} is malformed: expected {self.help}")
            return raw
        try:
            value = self.type(raw)
        except ValueError:
            raise ValueError(f"{key} expects {'an integer' if self.type is int else 'a number'}, got {raw!r}") from None
        too_high = self.max is not None and (value >= self.max if self.max_exclusive else value > self.max)
        if not math.isfinite(value) or (self.min is not None and value < self.min) or too_high:
            raise ValueError(f"{key}={raw} is out of range: expected {self.range_text() or 'a finite number'}")
        return value

    def range_text(self) -> str:
        """Human-readable range, e.g. '0 <= value < 1', or '' when unbounded."""
        low = f"{self.min} <= " if self.min is not None else ""
        high = (f" < {self.max}" if self.max_exclusive else f" <= {self.max}") if self.max is not None else ""
        return f"{low}value{high}" if low or high else ""


@dataclasses.dataclass(frozen=True)
class AttrSchema:
    """The attributes one preprocessor name accepts, the modalities and sides it serves, its default adaptor."""

    name: str
    modalities: frozenset
    attrs: dict
    aliases: tuple = ()
    sides: tuple = SIDES
    adaptor: Optional[str] = None  # None: the model architecture picks (image_patch or image_resnet)
    decoder_adaptor: Optional[str] = None  # the default adaptor on the decoder side, when it differs (an output)


# Attributes every slot accepts; their defaults come from the modality and the schema.
COMMON_ATTRS = {
    "preprocess": Attr(str, None, help="registered preprocessor name (default per modality and side)"),
    "adaptor": Attr(str, None, help="registered adaptor name (default per preprocessor)"),
}
# Accepted on slots inside a repetition group `( ... )*`; stored on the group, not on the slot.
MAX_REPEAT_ATTR = Attr(int, None, min=1, sides=("decoder",), help="cap on the number of repeats")

_SCHEMAS: dict[str, AttrSchema] = {}
_SCHEMA_ALIASES: dict[str, str] = {}


def register_attr_schema(
    preprocess_name: str,
    modalities,
    attrs: dict,
    aliases=(),
    sides=SIDES,
    adaptor: Optional[str] = None,
    decoder_adaptor: Optional[str] = None,
) -> AttrSchema:
    """Declare the slot attributes of a preprocessor name, making the name valid in instructions."""
    modalities = frozenset([modalities] if isinstance(modalities, str) else modalities)
    for n in (preprocess_name, *aliases):
        if n in _SCHEMAS or n in _SCHEMA_ALIASES:
            raise PluginError(f'attribute schema "{n}" is already registered')
    unknown = sorted(modalities.difference(MODALITIES))
    if unknown or not modalities:
        raise PluginError(
            f'attribute schema "{preprocess_name}": modalities must be a non-empty subset of '
            f"{', '.join(MODALITIES)}; got {sorted(modalities)}"
        )
    _check_sides(preprocess_name, "schema", sides)
    for key, attr in attrs.items():
        _check_attr(preprocess_name, key, attr)
    schema = AttrSchema(preprocess_name, modalities, dict(attrs), tuple(aliases), tuple(sides), adaptor,
                        decoder_adaptor)
    _SCHEMAS[preprocess_name] = schema
    for alias in aliases:
        _SCHEMA_ALIASES[alias] = preprocess_name
    return schema


def _check_sides(owner: str, what: str, sides) -> None:
    if not sides or any(side not in SIDES for side in sides):
        raise PluginError(f'attribute schema "{owner}": {what} sides must be a non-empty subset of {SIDES}, '
                            f"got {sides!r}")


def _check_attr(owner: str, key: str, attr: Attr) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise PluginError(f'attribute schema "{owner}": attribute name {key!r} is not an identifier')
    if key in COMMON_ATTRS or key == "max_repeat":
        raise PluginError(f'attribute schema "{owner}": "{key}" is common to every slot and cannot be redeclared')
    if not isinstance(attr, Attr) or attr.type not in ATTR_TYPES:
        raise PluginError(f'attribute schema "{owner}": "{key}" must be an Attr of type bool, int, float or str')
    _check_sides(owner, f'attribute "{key}"', attr.sides)


def get_attr_schema(name: str) -> AttrSchema:
    """The schema registered under a preprocessor name or alias; PluginError with a did-you-mean otherwise."""
    canonical = _SCHEMA_ALIASES.get(name, name)
    if canonical not in _SCHEMAS:
        raise PluginError(
            f'unknown preprocess "{name}".{did_you_mean(name, schema_names())} Known: {", ".join(sorted(_SCHEMAS))}. '
            f"A --user-dir preprocessor declares its attributes with register_attr_schema."
        )
    return _SCHEMAS[canonical]


def schema_names() -> list[str]:
    """Every registered preprocessor name and alias."""
    return sorted([*_SCHEMAS, *_SCHEMA_ALIASES])


def adaptor_names() -> list[str]:
    """Every adaptor name valid in `adaptor=`: built-in names plus everything in the adaptor registry."""
    registered = [*ADAPTOR_REGISTRY.entries, *ADAPTOR_REGISTRY.aliases]
    return sorted({*BUILTIN_ADAPTORS, *BUILTIN_ADAPTOR_ALIASES, *registered})


def canonical_adaptor(name: str) -> Optional[str]:
    """The canonical adaptor name for a name or alias, or None when it is unknown."""
    if name in BUILTIN_ADAPTORS or name in ADAPTOR_REGISTRY.entries:
        return name
    return BUILTIN_ADAPTOR_ALIASES.get(name) or ADAPTOR_REGISTRY.aliases.get(name)


class AttrError(ValueError):
    """An invalid slot attribute; `column` is where the instruction parser puts its caret."""

    def __init__(self, column: int, reason: str):
        super().__init__(reason)
        self.column = column


def slot_defaults(modality: str, side: str, preprocess: Optional[str] = None) -> dict:
    """The attrs of a slot with nothing written (given `preprocess`: that schema's attribute defaults)."""
    default_preprocess = DEFAULT_PREPROCESS[side][modality if modality != "PLAIN" else "TEXT"]
    schema = get_attr_schema(preprocess or default_preprocess)
    adaptor = schema.decoder_adaptor if side == "decoder" and schema.decoder_adaptor else schema.adaptor
    return {"preprocess": default_preprocess, "adaptor": adaptor,
            **{key: attr.default for key, attr in schema.attrs.items()}}


def training_attrs(attrs: dict) -> dict:
    """A slot's attrs with its `decoding_only` attributes at their defaults: what training sees of it (an
    instruction differing from a trained one only in those is that task's)."""
    schema = get_attr_schema(attrs["preprocess"])
    return {**attrs, **{key: attr.default for key, attr in schema.attrs.items() if attr.decoding_only}}


def plain_attrs(side: str) -> dict:
    """Plain text is tokenised like a TEXT slot; on the decoder it is a prompt, so it has no loss."""
    return {**slot_defaults("PLAIN", side), **({"no_loss": True} if side == "decoder" else {})}


def resolve_slot_attrs(modality: str, side: str, written: dict, in_repeat: bool, head_column: int) -> dict:
    """Validated, typed attrs of one slot with its preprocessor's defaults filled in; AttrError otherwise.

    `written` maps each attribute key to (raw value or None, key column, value column).
    """
    preprocess, key_column, preprocess_column = written.get(
        "preprocess", (DEFAULT_PREPROCESS[side][modality], head_column, head_column))
    if not preprocess:
        raise AttrError(key_column, "preprocess needs a value: preprocess=NAME")
    try:
        schema = get_attr_schema(preprocess)
    except PluginError as err:
        raise AttrError(preprocess_column, str(err)) from None
    if modality not in schema.modalities:
        raise AttrError(preprocess_column, f"preprocess {preprocess!r} handles "
                                           f"{'/'.join(sorted(schema.modalities))} slots, not {modality}")
    if side not in schema.sides:
        raise AttrError(preprocess_column, f"preprocess {preprocess!r} works on the {schema.sides[0]} side only; "
                                           f"the {side} default for {modality} is "
                                           f"{DEFAULT_PREPROCESS[side][modality]!r}")
    attrs = slot_defaults(modality, side, schema.name)
    known = {**COMMON_ATTRS, **schema.attrs, **({"max_repeat": MAX_REPEAT_ATTR} if in_repeat else {})}
    for key, (value, key_column, value_column) in written.items():
        attr = known.get(key)
        if attr is None and key == "max_repeat":
            raise AttrError(key_column, "max_repeat applies only to slots inside a repetition group '( ... )*'")
        if attr is None:
            raise AttrError(key_column, f"unknown attribute {key!r} for a {modality} slot with preprocess "
                                        f"{schema.name!r}.{did_you_mean(key, known)} "
                                        f"Attributes: {', '.join(sorted(known))}")
        if side not in attr.sides:
            raise AttrError(key_column, f"attribute {key!r} is allowed on the {attr.sides[0]} side only")
        try:
            attrs[key] = attr.convert(key, value)
        except ValueError as err:
            raise AttrError(value_column if value else key_column, str(err)) from None
    attrs["preprocess"] = schema.name
    if "adaptor" in written:
        attrs["adaptor"] = canonical_adaptor(attrs["adaptor"])
        if attrs["adaptor"] is None:
            name = written["adaptor"][0]
            raise AttrError(written["adaptor"][2], f"unknown adaptor {name!r}.{did_you_mean(name, adaptor_names())} "
                                                   f"Known: {', '.join(adaptor_names())}")
    return attrs


def _ratio(help_text: str, sides=SIDES) -> Attr:
    return Attr(float, 0.0, min=0.0, max=1.0, max_exclusive=True, sides=sides, help=help_text)


def _flag(help_text: str, sides=SIDES) -> Attr:
    return Attr(bool, False, sides=sides, help=help_text)


_BOUNDARY = {
    "add_bos": _flag("accepted for compatibility; a group is wrapped in <s> ... </s> anyway"),
    "add_eos": _flag("accepted for compatibility; a group is wrapped in <s> ... </s> anyway"),
    "disable_auto_boseos": _flag("do not wrap this slot's text group in <s> ... </s>"),
}
_NO_LOSS = {"no_loss": _flag("no loss on these tokens; forced as a prefix at inference", sides=("decoder",))}
_CLOSED_SET = {"closed_set": _flag("output restricted to the task's answers (trie-constrained)", sides=("decoder",))}
_NORMALISE = {
    "uncased": _flag("lower-case the raw string"),
    "no_punctuation": _flag("remove punctuation from the raw string"),
    "max_length": Attr(int, None, min=1, help="truncate to this many tokens"),
}
_TEXT_ATTRS = {
    **_NORMALISE,
    "mask_ratio": _ratio("BART span masking of this ratio of tokens (train split only)", sides=("encoder",)),
    "noise_ratio": _ratio("random replacement of this ratio of tokens (train split only)", sides=("encoder",)),
    "drop_ratio": _ratio("drop the slot's whole text with this probability (train split only; an augmentation: "
                         "classifier-free guidance is trained by condition_dropout)", sides=("encoder",)),
    **_NO_LOSS,
    **_CLOSED_SET,
    **_BOUNDARY,
}
_N_FRAMES_PER_STEP = {"n_frames_per_step": Attr(int, 1, min=1, help="audio frames stacked per step")}

register_attr_schema("text", {"TEXT"}, _TEXT_ATTRS, adaptor="text")
register_attr_schema("text_phone", {"TEXT"}, _TEXT_ATTRS, sides=("decoder",), adaptor="text")
register_attr_schema(
    "image", {"IMAGE"},
    {"mask_ratio": _ratio("mask this ratio of the image's centre"),
     "size": Attr(int, None, min=1, help="square side in pixels this slot's images are resized to (OFA's per-task "
                                         "patch_image_size); default and maximum: the model's image_size")},
    sides=("encoder",)
)
register_attr_schema(
    "box",
    {"BOX"},
    {
        "image": Attr(str, None, pattern=NAME_PATTERN, help="the encoder IMAGE column whose frame the box is in"),
        "size": Attr(str, None, pattern=r"[0-9]+,[0-9]+", help="W,H in pixels when no image is bound"),
        **_NO_LOSS,
        **_BOUNDARY,
    },
    adaptor="text",
)
register_attr_schema(
    "audio",
    {"AUDIO"},
    {**_N_FRAMES_PER_STEP, "use_mask": _flag("SpecAugment-style time/frequency masking (train split only)"),
     "cmvn": Attr(str, "global", pattern="global|utterance",
                  help="fbank normalisation: global (training split's per-bin statistics) or utterance")},
    sides=("encoder",),
    adaptor="audio_fbank",
)
register_attr_schema(
    "video", {"VIDEO"}, {"num_frames": Attr(int, 8, min=1, help="frames sampled per video")},
    sides=("encoder",), adaptor="video_frames",
)
register_attr_schema("struct", {"STRUCT"}, {**_NORMALISE, **_NO_LOSS, **_BOUNDARY}, adaptor="text")
register_attr_schema(
    "phone",
    {"PHONE"},
    {"mask_ratio": _ratio("BART span masking of phones (train split only)", sides=("encoder",)),
     **_NO_LOSS, **_BOUNDARY},
    adaptor="text",
)
register_attr_schema("category", {"CATEGORY"}, {**_CLOSED_SET, **_NO_LOSS, **_BOUNDARY}, adaptor="text")
register_attr_schema(
    "image_code",
    {"IMAGE"},
    {"tokenizer": Attr(str, None, help="image tokenizer file of this slot (default: the model's image_tokenizer)")},
    aliases=("image_vqgan",),
    adaptor="image_code",
)
register_attr_schema("audio_mel", {"AUDIO"}, {
    "n_frames_per_step": Attr(int, None, min=1, help="mel frames per decoder step (default: the model's "
                                                     "mel_frames_per_step, which it must equal)"),
    "trim_db": Attr(float, 0.0, min=0, help="targets lose their leading and trailing frames quieter than the "
                                            "loudest frame by more than this many dB, but 50 ms each side (0: "
                                            "kept; e.g. 40)")},
    sides=("decoder",), adaptor="audio_mel")
register_attr_schema(
    "motion_6d",
    {"MOTION"},
    {"max_length": Attr(int, None, min=1, help="a window of this many frames (train: a random one, else the "
                                               "centred one; a shorter clip is an error); default: the whole clip; "
                                               "an output generates this many frames (needed there)"),
     "fps": Attr(float, None, min=1, help="frames per second clips are resampled to (default: the data config's "
                                          "motion_fps, 30)"),
     "known": Attr(int, None, min=1, sides=("decoder",), decoding_only=True,
                   help="in-betweening: the first and last K frames of the row's motion are given and kept, the rest "
                        "generated"),
     "known_mask": Attr(str, None, pattern=NAME_PATTERN, sides=("decoder",), decoding_only=True,
                        help="in-betweening: the column holding each row's frame mask (max_length values, 1 = the "
                             "frame of the row's motion is given and kept)")},
    adaptor="motion_6d",
    decoder_adaptor="motion_6d_diffusion",
)
