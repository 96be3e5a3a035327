"""fairseq config dataclasses generated from ours, so that every ofasys_fs option of the model and the criterion
is a fairseq flag of the same name, type, default and help, declared in one place (our dataclass)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Iterable, Mapping

from fairseq.dataclass import FairseqDataclass
from omegaconf import II


def mirrored_dataclass(name: str, source: type, exclude: Iterable[str] = (),
                       shared: Mapping[str, str] = None) -> type:
    """A FairseqDataclass named `name` with the fields of our dataclass `source` except `exclude`. A field in
    `shared` takes its value from that fairseq option (e.g. sentence_avg from optimization.sentence_avg) instead
    of declaring a flag of its own, which would clash."""
    shared, excluded = dict(shared or {}), set(exclude)
    hints = typing.get_type_hints(source)
    fields = []
    for field in dataclasses.fields(source):
        if field.name in excluded:
            continue
        if field.name in shared:
            fields.append((field.name, hints[field.name], dataclasses.field(default=II(shared[field.name]))))
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = field.metadata.get("help") or f"ofasys_fs {source.__name__}.{field.name}"
        fields.append((field.name, hints[field.name], dataclasses.field(default=default, metadata={"help": help_text})))
    return dataclasses.make_dataclass(name, fields, bases=(FairseqDataclass,))


def ours_from(cfg: typing.Any, source: type, **given: typing.Any) -> typing.Any:
    """Our dataclass `source` from a fairseq config holding its mirrored fields (plus `given` ones)."""
    names = {field.name for field in dataclasses.fields(source)} - set(given)
    return source(**given, **{name: getattr(cfg, name) for name in names if hasattr(cfg, name)})
