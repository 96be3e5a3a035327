"""ofasys-interactive: decode JSON rows read from stdin, one JSON output per line on stdout (docs/design.md §15).

    echo '{"img": "cat.jpg"}' | ofasys-interactive --path CKPT \
        --instruction '[IMAGE:img] what does the image describe? -> [TEXT:cap]'

Each non-blank input line is one row (a JSON object); each gets exactly one output line, in order:
the Output's fields, or {"error": "..."} for a line that cannot be decoded (also reported on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence, TextIO

from ..data.rows import parse_json_row
from ..errors import OFASysError
from .command import CommandParser, debugging, run_command
from .inference_args import add_checkpoint_args, add_generation_args, given_generation_options, load_model

PROG = "ofasys-interactive"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description="Decode JSON rows from stdin (docs/inference.md).")
    parser.add_argument("--instruction", required=True, help="the instruction every row is decoded with")
    add_checkpoint_args(parser)
    add_generation_args(parser)
    return parser


def serve(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Answer every stdin line; returns 1 when some line failed, else 0."""
    options = given_generation_options(args)
    model = load_model(args)
    predictor = model.predictor(args.instruction)
    failures = 0
    for number, line in enumerate(stdin, start=1):
        if not line.strip():
            continue
        try:
            row = parse_json_row(line)
            reply = predictor.predict([row], options=options)[0].to_dict()
        except OFASysError as err:  # a bad JSON line is a DataError too
            failures += 1
            reply = {"error": f"line {number}: {err}"}
            print(f"{PROG}: {reply['error']}", file=sys.stderr)
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
    return 1 if failures else 0


def main(argv: Optional[Sequence[str]] = None, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None) -> int:
    """Entry point of `ofasys-interactive`; stdin/stdout may be given (tests)."""
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: serve(args, stdin or sys.stdin, stdout or sys.stdout), debugging(args))


if __name__ == "__main__":
    sys.exit(main())
