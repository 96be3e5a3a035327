"""The option reference of docs/config.md: one table per config section, read from the config dataclasses."""
from __future__ import annotations

from ofasys_fs.config import _default, _fields, _flags_of
from ofasys_fs.config_types import type_name
from ofasys_fs.engine.config import TrainConfig

from .markdown import escape


def config_reference_markdown(cls: type = TrainConfig) -> str:
    """Markdown tables of every option, one per section (the reference part of docs/config.md)."""
    lines: list[str] = []

    def table(owner: type, path: str, title: str, with_flags: bool) -> None:
        leaves = [f for f in _fields(owner).values() if f.kind == "leaf"]
        if leaves:
            lines.extend([f"### `{path or 'top level'}`: {title}", ""])
            lines.extend(["| option | flag | type | default | description |", "|---|---|---|---|---|"])
            for f in leaves:
                flags = ", ".join(f"`{n}`" for n in sum(_flags_of(f), [])) if with_flags else "(YAML, overrides)"
                key = f"{path}.{f.name}" if path else f.name
                cells = [f"`{key}`", flags, type_name(f.type), f"`{_default(f)!r}`", f.spec.metadata.get("help", "")]
                lines.append("| " + " | ".join(escape(c) for c in cells) + " |")
            lines.append("")
        for f in _fields(owner).values():
            if f.kind != "leaf":
                sub = (f"{path}.{f.name}" if path else f.name) + (".N" if f.kind == "items" else "")
                title = f.spec.metadata.get("help", "") or f.item_cls.__doc__
                table(f.item_cls, sub, title, with_flags and f.kind == "section")

    table(cls, "", cls.__doc__, True)
    return "\n".join(lines).rstrip() + "\n"
