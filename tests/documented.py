"""Run the commands and code a document prints, exactly as printed (the project's rule: every command the docs
print is run by a test). Shell blocks are fenced as ```sh, Python blocks as ```python; the ofasys-* commands run
in-process through their main(argv), `python -m MODULE ...` through runpy, both in the given folder."""
from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import re
import runpy
import shlex
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent


def blocks(document: str, language: str) -> list[str]:
    """The fenced code blocks of a markdown file (relative to the repository) in the given language."""
    text = (REPO / document).read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def commands(document: str) -> list[str]:
    """Every command line of the document's sh blocks (comments and blank lines left out)."""
    return [line.split(" #")[0].strip() for block in blocks(document, "sh") for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def run(command: str, folder: os.PathLike) -> int:
    """Run one printed command in `folder`; returns its exit code."""
    program, *argv = shlex.split(command)
    with contextlib.chdir(folder):
        if program.startswith("ofasys-"):
            module = importlib.import_module(f"ofasys_fs.cli.{program[len('ofasys-'):]}")
            return module.main(argv)
        if program == "python" and argv[:1] == ["-m"]:
            saved = sys.argv
            sys.argv = [argv[1], *argv[2:]]
            try:
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            except SystemExit as exit_:
                return int(exit_.code or 0)
            finally:
                sys.argv = saved
            return 0
    raise ValueError(f"tests/documented.py cannot run {command!r}")


def execute(code: str, folder: os.PathLike) -> dict:
    """Run a printed Python block in `folder`; returns its globals."""
    scope: dict = {"__name__": "__main__"}
    with contextlib.chdir(folder):
        exec(compile(code, "<documented block>", "exec"), scope)
    return scope
