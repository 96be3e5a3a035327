"""The command-line reference of docs/cli.md: usage and one table per argument group of every command."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import typing

from .markdown import cell

HELP_WIDTH = 100  # fixed, so the usage lines do not depend on the terminal


def cli_parsers() -> dict[str, argparse.ArgumentParser]:
    """Module name -> parser of every `ofasys_fs.cli` module that has `build_parser()`."""
    import ofasys_fs.cli as cli_package

    parsers = {}
    for module_info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ofasys_fs.cli.{module_info.name}")
        if hasattr(module, "build_parser"):
            parsers[module_info.name] = module.build_parser()
    return parsers


def config_sections() -> dict[str, set[str]]:
    """TrainConfig's sections (common, dataset, ...) -> their option names; add_config_args makes one group
    of each, whose flags docs/config.md documents."""
    from ofasys_fs.engine.config import TrainConfig

    return {name: {f.name for f in dataclasses.fields(kind)}
            for name, kind in typing.get_type_hints(TrainConfig).items() if dataclasses.is_dataclass(kind)}


def action_row(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    """One argument as a table row: its flags, the value it takes and its help."""
    flags = cell(", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar or action.dest}`")
    takes_value = action.nargs != 0
    value = (action.metavar or action.dest.upper()) if takes_value else ""
    if action.choices and takes_value:
        value = "{" + ",".join(map(str, action.choices)) + "}"
    help_text = formatter._expand_help(action) if action.help else ""
    return f"| {flags} | {cell(value)} | {cell(help_text)} |"


def parser_reference(parser: argparse.ArgumentParser) -> str:
    """Usage, description and one table per argument group; config sections are listed by flag name only
    (their options are documented in docs/config.md)."""
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=HELP_WIDTH)
    formatter = parser._get_formatter()
    lines = [f"## `{parser.prog}`", "", cell(parser.description or ""), "", "```",
             parser.format_usage().strip(), "```", ""]
    sections = config_sections()
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if not actions:
            continue
        if {a.dest for a in actions} <= sections.get(group.title, set()):
            flags = ", ".join(f"`{flag}`" for a in actions for flag in a.option_strings)
            lines.extend([f"**{group.title}** (docs/config.md, section `{group.title}`): {flags}", ""])
            continue
        lines.extend([f"**{group.title}**", "", "| argument | value | help |", "|---|---|---|"])
        lines.extend(action_row(formatter, action) for action in actions)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def cli_reference() -> str:
    """The generated block of docs/cli.md."""
    return "\n".join(parser_reference(parser) for parser in cli_parsers().values())
