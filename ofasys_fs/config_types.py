"""Loosely typed values (YAML, command-line text, Python) -> the declared type of a config field.

Lenient where users mean one thing ("3e-4" for a float, "(0.9, 0.98)" for a pair, "yes" for a bool),
strict otherwise: anything else raises TypeMismatch, which config.py turns into a ConfigError.
"""
import math
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from .registry import did_you_mean

_NONE_WORDS = {"none", "null", "~"}
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True}
_BOOL_WORDS.update({"false": False, "no": False, "off": False, "0": False})


class TypeMismatch(Exception):
    """A value does not fit a type; `hint` completes the error message (e.g. a did-you-mean)."""

    def __init__(self, hint: str = ""):
        super().__init__(hint)
        self.hint = hint


def type_name(tp: Any) -> str:
    """Readable name of a config type, as used in errors, --help and the docs."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    if tp is Ellipsis:
        return "..."
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return "{" + ", ".join(str(a) for a in args) + "}"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def accepts_text(tp: Any) -> bool:
    """Whether a plain string is a valid value of `tp`."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(accepts_text(a) for a in get_args(tp))
    return tp is str or (origin is Literal and any(isinstance(a, str) for a in get_args(tp)))


def coerce(value: Any, tp: Any) -> Any:
    """`value` converted to `tp` (numbers from strings, tuples from "(a, b)"); raises TypeMismatch."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        alternatives = [a for a in args if a is not type(None)]
        optional = len(alternatives) < len(args)
        if optional and value is None:
            return None
        if optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
            return None
        same_shape_first = sorted(alternatives, key=lambda a: not isinstance(value, _python_type(a)))
        hints = []
        for alternative in same_shape_first:
            try:
                return coerce(value, alternative)
            except TypeMismatch as mismatch:
                hints.append(mismatch.hint)
        raise TypeMismatch(next((h for h in hints if h), ""))
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise TypeMismatch(did_you_mean(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise TypeMismatch()
    if tp in (int, float):
        return _coerce_number(value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeMismatch()
    if origin in (list, tuple) or tp in (list, tuple):
        return _coerce_sequence(value, tp)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise TypeMismatch()
        key_type, value_type = args or (Any, Any)
        return {coerce(k, key_type): coerce(v, value_type) for k, v in value.items()}
    raise TypeError(f"config type {tp!r} is not supported")


def _coerce_number(value: Any, tp: type) -> Any:
    if isinstance(value, str):
        try:
            value = int(value.strip()) if tp is int else float(value.strip())
        except ValueError:
            try:
                value = float(value.strip())  # "1e5" for an int
            except ValueError:
                raise TypeMismatch() from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeMismatch()
    if not math.isfinite(value):
        raise TypeMismatch(" NaN and infinity are not option values.")
    if tp is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeMismatch()
        return int(value)
    return float(value)


def _python_type(tp: Any) -> type:
    origin = get_origin(tp)
    if origin is Literal:
        return type(get_args(tp)[0])
    candidate = origin or tp
    return candidate if isinstance(candidate, type) else object


def _coerce_sequence(value: Any, tp: Any) -> Any:
    origin, args = get_origin(tp) or tp, get_args(tp)
    homogeneous = origin is list or (len(args) == 2 and args[1] is Ellipsis)
    element_types = list(args[:1]) if homogeneous else list(args)
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] + text[-1] in ("()", "[]"):
            items = [piece.strip() for piece in text[1:-1].split(",") if piece.strip()]
        elif element_types and all(accepts_text(t) for t in element_types):
            items = [value]
        else:
            items = [piece.strip() for piece in text.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    else:
        raise TypeMismatch()
    if homogeneous or not element_types:
        converted = [coerce(v, element_types[0]) for v in items] if element_types else items
        return converted if origin is list else tuple(converted)
    if len(items) != len(element_types):
        raise TypeMismatch(f" It needs exactly {len(element_types)} values.")
    return tuple(coerce(v, t) for v, t in zip(items, element_types))
