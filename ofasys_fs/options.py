"""How a config field is declared: its default, help text and check in one place (docs/design.md, "Configs").

Every config dataclass (the training sections, ModelConfig, GenerationConfig, VocabConfig, DataConfig,
component configs) declares its fields with `option(...)`. The config machinery (config.py) turns them
into flags, YAML keys and docs, converts text to each field's type and runs its `check`; `check_fields`
runs the same checks for a dataclass built in Python, so a rule is written once, next to its field.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
from typing import Any, Callable, Literal, Optional, Union, get_args, get_origin, get_type_hints

from .config_types import type_name
from .errors import ConfigError

Check = Callable[[Any], None]  # raises ValueError saying what is expected


def option(default: Any, help: str, *, check: Check = None, **metadata: Any) -> Any:
    """A dataclass field with its help text and optional check (mutable defaults are copied per instance).

    Other metadata: `aliases` (more flat names), `short` (a one-letter flag), `fairseq_list` (accept a
    one-element list, as fairseq's per-epoch options), `transient` (not written by --print-config).
    """
    info = {"help": help, **metadata}
    if check is not None:
        info["check"] = check
    if isinstance(default, (list, dict)):
        factory = lambda: type(default)(default)  # noqa: E731
        return dataclasses.field(default_factory=factory, metadata=info)
    return dataclasses.field(default=default, metadata=info)


def section(cls: type, help: str) -> Any:
    """A nested section field (a dataclass filled with its defaults)."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def at_least(minimum: float) -> Check:
    """Check that a number (when given) is >= minimum."""

    def check(value):
        if value is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")

    return check


def positive(value: Any) -> None:
    """Check that a number (when given) is > 0."""
    if value is not None and not value > 0:
        raise ValueError("must be > 0")


def fraction(value: Any) -> None:
    """Check that a probability-like number (when given) lies in [0, 1)."""
    if value is not None and not 0 <= value < 1:
        raise ValueError("must be in [0, 1)")


def one_of(*choices: Any) -> Check:
    """Check that a value (when given) is one of `choices`."""

    def check(value):
        if value is not None and value not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}")

    return check


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _expected(tp: Any) -> str:
    """How a type is named in an error message."""
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}
    return names.get(tp) or type_name(tp)


def type_problem(value: Any, tp: Any) -> Optional[str]:
    """What `value` should have been when it is not a value of `tp` as Python code passes it (no text parsing:
    2.5 is no int, "yes" no bool, NaN no float), else None."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or (tp is type(None) and value is None):
        return None
    if origin in (Union, types.UnionType):
        if any(type_problem(value, alternative) is None for alternative in args):
            return None
        return " or ".join(_expected(a) for a in args if a is not type(None)) + (" or None" * (type(None) in args))
    if origin is Literal:
        return None if any(value == a and type(value) is type(a) for a in args) else type_name(tp)
    if tp is bool:
        return None if isinstance(value, bool) else _expected(tp)
    if tp is int:
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else _expected(tp)
    if tp is float:
        fine = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        return None if fine else _expected(tp)
    if tp is str:
        return None if isinstance(value, str) else _expected(tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return type_name(tp)
        items = args[:1] * len(value) if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        if len(items) != len(value) or any(type_problem(v, a) for v, a in zip(value, items)):
            return type_name(tp)
        return None
    if origin is dict:
        return None if isinstance(value, dict) else type_name(tp)
    return None if not isinstance(tp, type) or isinstance(value, tp) else type_name(tp)


def check_fields(cfg: Any, what: str) -> None:
    """Check every field of a dataclass instance built in Python: its type (strictly, see `type_problem`) and its
    `check`. Call it from `__post_init__`; `what` names the config in messages ("model config")."""
    hints = _hints(type(cfg))
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        expected = type_problem(value, hints[field.name])
        if expected is not None:
            raise ConfigError(f"{what} {field.name}={value!r}: expected {expected}")
        check = field.metadata.get("check")
        if check is not None:
            try:
                check(value)
            except ValueError as err:
                raise ConfigError(f"{what} {field.name}={value!r}: {err}") from None
