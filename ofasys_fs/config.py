"""Dataclass configs -> argparse flags, YAML files and key=value overrides, with clear errors.

Precedence, low to high: dataclass defaults, the YAML file, key=value overrides, flags, keyword
arguments. The config dataclasses are declared by their owners with options.py's `option`; the option reference in docs/config.md
is generated from them by `python -m tools.render_docs`.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
import sys
from collections.abc import Hashable, Mapping
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from .config_types import TypeMismatch, accepts_text, coerce, type_name
from .errors import ConfigError
from .registry import did_you_mean


class _ConfigYamlLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 scalars: only true/false are booleans (VQA answers "yes"/"no" stay text)
    and 3e-4 is a number, as users expect."""


_ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _ConfigYamlDumper(yaml.SafeDumper):
    """Quotes every string that either YAML 1.1 or the loader above would read as something else."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$")
for _resolver_class in (_ConfigYamlLoader, _ConfigYamlDumper):
    _resolver_class.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def _mapping_without_repeated_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    """A YAML mapping; a key written twice is an error (YAML would silently keep the last value). Keys brought
    in by a `<<` merge may be overridden, as YAML intends."""
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports it
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice in one mapping; "
                                                    f"keep one", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_ConfigYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeated_keys)


def _load_yaml(stream: Any) -> Any:
    return yaml.load(stream, Loader=_ConfigYamlLoader)


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    type: Any
    spec: dataclasses.Field
    kind: str  # "section" (a nested dataclass), "items" (a list of dataclasses) or "leaf"
    item_cls: Optional[type] = None


@dataclasses.dataclass(frozen=True)
class _Source:
    name: str  # a file name, 'override "k=v"', "flag --k" or "keyword arguments"
    root: type


@functools.cache
def _fields(cls: type) -> dict[str, _Field]:
    hints = get_type_hints(cls)
    fields = {}
    for spec in dataclasses.fields(cls):
        tp = hints[spec.name]
        item = get_args(tp)[0] if get_origin(tp) is list and get_args(tp) else None
        if dataclasses.is_dataclass(tp):
            fields[spec.name] = _Field(spec.name, tp, spec, "section", tp)
        elif dataclasses.is_dataclass(item):
            fields[spec.name] = _Field(spec.name, tp, spec, "items", item)
        else:
            fields[spec.name] = _Field(spec.name, tp, spec, "leaf")
    return fields


@functools.cache
def _flat_index(cls: type) -> dict[str, tuple[str, ...]]:
    """Leaf name or alias -> its path, over cls and its sections (lists of dataclasses excluded)."""
    index: dict[str, tuple[str, ...]] = {}

    def walk(owner: type, prefix: tuple[str, ...]) -> None:
        for f in _fields(owner).values():
            if f.kind == "section":
                walk(f.item_cls, prefix + (f.name,))
            elif f.kind == "leaf":
                for name in (f.name, *f.spec.metadata.get("aliases", ())):
                    if name in index or (prefix and name in _fields(cls)):
                        raise TypeError(
                            f"{cls.__name__}: option name {name!r} is used twice; flat names must be unique"
                        )
                    index[name] = prefix + (f.name,)

    walk(cls, ())
    return index


def _leaf_at(cls: type, path: tuple[str, ...]) -> _Field:
    for name in path[:-1]:
        cls = _fields(cls)[name].item_cls
    return _fields(cls)[path[-1]]


def _coerce_leaf(f: _Field, value: Any, key: str, source: str) -> Any:
    """Convert and validate one leaf value (type, choices, the field's check)."""
    if f.spec.metadata.get("fairseq_list") and isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ConfigError(f"{source}: {key} takes one value (no fairseq per-epoch lists), got {value!r}")
        value = value[0]
    try:
        converted = coerce(value, f.type)
    except TypeMismatch as mismatch:
        raise ConfigError(f"{source}: {key} expects {type_name(f.type)}, got {value!r}.{mismatch.hint}") from None
    choices = f.spec.metadata.get("choices")
    if choices is not None and converted not in choices:
        listing = ", ".join(map(str, choices))
        hint = did_you_mean(converted, choices)
        raise ConfigError(f"{source}: {key} must be one of {listing}, got {value!r}.{hint}")
    check = f.spec.metadata.get("check")
    if check is not None:
        try:
            check(converted)
        except ValueError as error:
            raise ConfigError(f"{source}: {key}={converted!r}: {error}") from None
    return converted


def _parse_text(raw: str) -> Any:
    try:
        return _load_yaml(raw)
    except yaml.YAMLError:
        return raw


def _coerce_text(f: _Field, raw: str, key: str, source: str) -> Any:
    """A value typed on the command line: read as YAML, but kept verbatim for a text option when YAML
    would turn it into something else ("yes", "1.0", "a: b")."""
    parsed = _parse_text(raw)
    if accepts_text(f.type) and parsed is not None and not isinstance(parsed, str):
        try:
            return _coerce_leaf(f, parsed, key, source)
        except ConfigError:
            return _coerce_leaf(f, raw.strip(), key, source)
    return _coerce_leaf(f, parsed, key, source)


def _unknown_key(src: _Source, cls: type, prefix: str, key: str, flat: bool) -> ConfigError:
    known = [*_fields(cls), *(_flat_index(cls) if flat else ())]
    hint = did_you_mean(key, known)
    home = _flat_index(src.root).get(key)
    if home is not None and not flat:
        hint = f' Use "{".".join(home)}".'
    listing = "" if flat or hint else f" Keys of {prefix.rstrip('.')}: {', '.join(_fields(cls))}."
    return ConfigError(f'{src.name}: unknown key "{prefix}{key}".{hint}{listing}')


def _merge(src: _Source, cls: type, target: dict, incoming: Any, prefix: str = "", flat: bool = False) -> list:
    """Merge a mapping (YAML-style: sections, and flat leaf names when `flat`) into `target`;
    returns the leaf paths written. A dataclass instance counts as the mapping of all its fields."""
    if dataclasses.is_dataclass(incoming) and not isinstance(incoming, type):
        incoming = config_to_dict(incoming)
    if not isinstance(incoming, Mapping):
        where = prefix.rstrip(".") or "the config"
        raise ConfigError(f"{src.name}: {where} must be a mapping of keys, got {incoming!r}")
    written: list[tuple] = []
    for key, value in incoming.items():
        key = str(key)
        if key in _fields(cls):
            path = (key,)
        elif flat and key in _flat_index(cls):
            path = _flat_index(cls)[key]
        else:
            raise _unknown_key(src, cls, prefix, key, flat)
        written += _assign(src, cls, target, path, value, prefix)
    duplicates = sorted({p for p in written if written.count(p) > 1})
    if duplicates:
        twice = prefix + ".".join(duplicates[0])
        raise ConfigError(f"{src.name}: {twice} is given twice (in its section and as a flat key)")
    return written


def _assign(src: _Source, cls: type, target: dict, path: tuple, value: Any, prefix: str) -> list[tuple]:
    node = target
    for name in path[:-1]:
        node, cls = node[name], _fields(cls)[name].item_cls
    f = _fields(cls)[path[-1]]
    key = prefix + ".".join(path)
    if f.kind == "section":
        return [path[:-1] + (f.name,) + p for p in _merge(src, f.item_cls, node[f.name], value, key + ".")]
    if f.kind == "items":
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{src.name}: {key} expects a list of mappings, got {value!r}")
        node[f.name] = [_new_item(src, f.item_cls, item, f"{key}.{i}.") for i, item in enumerate(value)]
    else:
        node[f.name] = _coerce_leaf(f, value, key, src.name)
    return [path]


def _new_item(src: _Source, cls: type, incoming: Any, prefix: str) -> dict:
    item = config_to_dict(cls())
    _merge(src, cls, item, incoming, prefix)
    return item


def _apply_override(src: _Source, target: dict, text: str) -> None:
    """One `key=value`: dotted (optimization.lr, tasks.0.weight, tasks.0.options.k) or flat (lr)."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ConfigError(f'{src.name}: expected key=value, e.g. "optimization.lr=3e-4" or "lr=3e-4"')
    parts = key.split(".")
    if parts[0] not in _fields(src.root) and parts[0] in _flat_index(src.root):
        parts = [*_flat_index(src.root)[parts[0]], *parts[1:]]
    cls, node, i = src.root, target, 0
    while True:
        name, prefix = parts[i], ".".join(parts[:i]) + "." if i else ""
        if name not in _fields(cls):
            raise _unknown_key(src, cls, prefix, name, flat=i == 0)
        f, rest = _fields(cls)[name], parts[i + 1:]
        if not rest or f.kind == "leaf":
            break
        if f.kind == "section":
            cls, node, i = f.item_cls, node[name], i + 1
            continue
        entries, entry = node[name], f"{prefix}{name}.{rest[0]}"
        if not rest[0].isdigit() or int(rest[0]) >= len(entries):
            raise ConfigError(
                f'{src.name}: no entry "{entry}" ({prefix}{name} holds {len(entries)}); '
                f'set a key of an existing one by index, e.g. "{prefix}{name}.0.KEY=VALUE"'
            )
        if len(rest) == 1:
            raise ConfigError(f'{src.name}: set a key of {entry}, e.g. "{entry}.KEY=VALUE"')
        cls, node, i = f.item_cls, entries[int(rest[0])], i + 2
    dotted = prefix + name
    if f.kind != "leaf":
        _assign(src, cls, node, (name,), _parse_text(raw), prefix)
    elif rest:
        updated = _with_key(node[name], rest, _parse_text(raw), dotted, src.name)
        node[name] = _coerce_leaf(f, updated, dotted, src.name)
    else:
        node[name] = _coerce_text(f, raw, dotted, src.name)


def _with_key(mapping: Any, keys: list[str], value: Any, key: str, source: str) -> dict:
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{source}: {key} is {mapping!r}, not a mapping, so it has no key {keys[0]!r}")
    updated = dict(mapping)
    if len(keys) > 1:
        value = _with_key(updated.get(keys[0]), keys[1:], value, f"{key}.{keys[0]}", source)
    updated[keys[0]] = value
    return updated


def _apply_flags(cls: type, target: dict, args: Any) -> None:
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    for name, path in _flat_index(cls).items():
        if path[-1] != name or name not in given:
            continue
        f, source = _leaf_at(cls, path), f"flag {_flag(name)}"
        value = given[name]
        node = target
        for part in path[:-1]:
            node = node[part]
        convert = _coerce_text if isinstance(value, str) else _coerce_leaf
        node[name] = convert(f, value, name, source)


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return _load_yaml(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _build(cls: type, data: Mapping, where: str = "") -> Any:
    kwargs = {}
    for name, f in _fields(cls).items():
        path = f"{where}.{name}" if where else name
        if f.kind == "section":
            kwargs[name] = _build(f.item_cls, data[name], path)
        elif f.kind == "items":
            kwargs[name] = [_build(f.item_cls, item, f"{path}.{i}") for i, item in enumerate(data[name])]
        else:
            kwargs[name] = coerce(data[name], f.type)
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(f"{where or cls.__name__}: {error}") from None


def load_config(
    cls: type,
    yaml_path: Union[str, os.PathLike, None] = None,
    overrides=(),
    args: Union[argparse.Namespace, dict, None] = None,
    **kwargs: Any,
) -> Any:
    """Resolve a config: defaults < YAML file < key=value overrides < flags (`args`) < keyword arguments.

    `args` is what `add_config_args` parsed (other attributes are ignored); keyword arguments are
    flat option names or sections (Trainer(max_update=..., lr=...)), and unknown ones are errors.
    """
    target = config_to_dict(cls())
    if isinstance(overrides, str):
        overrides = [overrides]
    if yaml_path is not None:
        _merge(_Source(str(yaml_path), cls), cls, target, _read_yaml(yaml_path), flat=True)
    for text in overrides:
        _apply_override(_Source(f'override "{text}"', cls), target, text)
    if args is not None:
        _apply_flags(cls, target, args)
    if kwargs:
        _merge(_Source("keyword arguments", cls), cls, target, kwargs, flat=True)
    return _build(cls, target)


def config_from_dict(cls: type, data: Mapping, source: str = "config dict") -> Any:
    """Build a config from a (possibly partial, sectioned or flat) plain dict, validating every key."""
    target = config_to_dict(cls())
    _merge(_Source(source, cls), cls, target, data, flat=True)
    return _build(cls, target)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists, no tuples) that YAML and JSON can write; config_from_dict reads it back."""
    return _plain(dataclasses.asdict(cfg))


def _dump_yaml(data: dict) -> str:
    return yaml.dump(data, Dumper=_ConfigYamlDumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def config_to_yaml(cfg: Any) -> str:
    """The config as YAML; `load_config(type(cfg), yaml_path=<file with it>) == cfg`."""
    return _dump_yaml(config_to_dict(cfg))


def _reset_transient(cls: type, data: dict, defaults: dict) -> None:
    for name, f in _fields(cls).items():
        if f.kind == "section":
            _reset_transient(f.item_cls, data[name], defaults[name])
        elif f.spec.metadata.get("transient"):
            data[name] = defaults[name]


def print_config(cfg: Any, file=None, only_changed: bool = False) -> None:
    """Print the resolved config as YAML (--print-config); one-shot switches such as print_config
    itself are printed at their defaults, so the output can be fed back as a config file. With
    `only_changed`, only the options that differ from the defaults (what a run prints at its start)."""
    defaults = config_to_dict(type(cfg)())
    data = config_to_dict(cfg)
    _reset_transient(type(cfg), data, defaults)
    if only_changed:
        data = _changed(type(cfg), data, defaults)
        print("# options that differ from the defaults (--print-config prints them all)", file=file or sys.stdout)
    print(_dump_yaml(data) if data else "{}\n", end="", file=file or sys.stdout)


def _changed(cls: type, data: dict, defaults: dict) -> dict:
    """The entries of a config dict that differ from the defaults: sections only when something in them does,
    list items (tasks) without their default keys."""
    changed = {}
    for name, f in _fields(cls).items():
        value = data[name]
        if f.kind == "section":
            value = _changed(f.item_cls, value, defaults[name])
            if value:
                changed[name] = value
        elif f.kind == "items":
            if value:
                changed[name] = [_changed(f.item_cls, item, config_to_dict(f.item_cls())) for item in value]
        elif value != defaults[name]:
            changed[name] = value
    return changed


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default(f: _Field) -> Any:
    return f.spec.default_factory() if f.spec.default is dataclasses.MISSING else f.spec.default


def _is_bool(tp: Any) -> bool:
    return tp is bool or tp == Optional[bool]


def _flags_of(f: _Field) -> tuple[list[str], list[str]]:
    """(flags setting the option, --no-X flags turning a bool off)."""
    names = [_flag(f.name), *(_flag(a) for a in f.spec.metadata.get("aliases", ()))]
    if "short" in f.spec.metadata:
        names.insert(0, f.spec.metadata["short"])
    negations = [f"--no-{f.name.replace('_', '-')}"] if _is_bool(f.type) and _default(f) is not False else []
    return names, negations


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """Add one flag per leaf option (an argument group per section); only flags given appear in the
    parsed namespace, so `load_config(args=...)` overrides nothing else."""
    _flat_index(cls)  # fails early on duplicate flat names

    def add(group, owner: type) -> None:
        for f in _fields(owner).values():
            if f.kind == "section":
                add(parser.add_argument_group(f.name, f.item_cls.__doc__), f.item_cls)
            elif f.kind == "leaf":
                _add_flag(group, f)

    add(parser, cls)
    return parser


def _add_flag(group, f: _Field) -> None:
    names, negations = _flags_of(f)
    help_text = f"{f.spec.metadata.get('help', '')} (default: {_default(f)!r})".replace("%", "%%")
    common = {"dest": f.name, "default": argparse.SUPPRESS}
    if _is_bool(f.type):
        group.add_argument(*names, action="store_true", help=help_text, **common)
        if negations:
            group.add_argument(*negations, action="store_false", help=f"turn {names[-1]} off", **common)
        return
    literals = [t for t in (f.type, *get_args(f.type)) if get_origin(t) is Literal]
    metavar = "{" + ",".join(get_args(literals[0])) + "}" if literals else None
    action = "append" if get_origin(f.type) is list else "store"
    group.add_argument(*names, action=action, metavar=metavar, help=help_text, **common)
