"""ofasys-preprocess: store a data file or folder losslessly as a shard folder (docs/data_format.md).

Parses the flags and calls `ofasys_fs.data.preprocess_run.preprocess`. Bad rows stop the run with one error
line (exit code 1, no manifest), or are skipped and counted with `--skip-bad-rows`.
User guide: docs/data_format.md, section "ofasys-preprocess".
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Optional

from ..data.preprocess_run import DEFAULT_VOCAB_SIZE, PreprocessOptions, preprocess
from ..data.shard_writing import TOKENIZER_FILE
from .arg_types import positive_int
from .command import CommandParser, EXIT_OK, add_debug_flag, debugging, run_command

PROG = "ofasys-preprocess"


def comma_list(text: str) -> list[str]:
    """argparse type: "a,b" -> ["a", "b"]."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The ofasys-preprocess argument parser."""
    parser = CommandParser(prog=PROG, description=(
        "Store a .jsonl/.tsv/.parquet file, a Hugging Face dataset saved with save_to_disk, or a media folder "
        "with metadata.jsonl losslessly as a shard folder (see docs/data_format.md)."))
    parser.add_argument("--input", required=True, help="data file or folder to read")
    parser.add_argument("--destdir", required=True, help="shard folder to write (other splits in it are kept)")
    parser.add_argument("--split", default="train", help="split name to write (default: train)")
    parser.add_argument("--instruction", help="validate every row by binding and preprocessing it with this instruction")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes reading and validating rows")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="skip (and report on stderr, count in the manifest) rows that fail instead of stopping")
    parser.add_argument("--media-columns", type=comma_list,
                        help="columns holding media paths/URLs/bytes (default: the instruction's IMAGE/AUDIO/VIDEO "
                             "slots, else detected from the values)")
    parser.add_argument("--train-tokenizer", action="store_true",
                        help=f"train a byte-level BPE on the text columns and save it as {TOKENIZER_FILE}")
    parser.add_argument("--vocab-size", type=positive_int, default=DEFAULT_VOCAB_SIZE,
                        help=f"tokens of the trained tokenizer (default: {DEFAULT_VOCAB_SIZE})")
    parser.add_argument("--text-columns", type=comma_list,
                        help="columns to train the tokenizer on (default: every string column that is not media)")
    parser.add_argument("--image-tokenizer", help="the image tokenizer file of the instruction's image_code slots "
                                                  "(IMAGE outputs), to validate their images")
    parser.add_argument("--image-codes", action="store_true",
                        help="store the codes of the columns only image_code slots read instead of their images "
                             "(training then needs the same tokenizer; the manifest records it)")
    parser.add_argument("--user-dir", action="append", default=[], help="plugin package to import (repeatable)")
    add_debug_flag(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> PreprocessOptions:
    """The parsed flags as the library's options."""
    return PreprocessOptions(
        input=args.input, destdir=args.destdir, split=args.split, instruction=args.instruction,
        workers=args.workers, skip_bad_rows=args.skip_bad_rows, media_columns=args.media_columns,
        train_tokenizer=args.train_tokenizer, vocab_size=args.vocab_size, text_columns=args.text_columns,
        image_tokenizer=args.image_tokenizer, image_codes=args.image_codes, user_dirs=tuple(args.user_dir))


def report_skipped(reason: str) -> None:
    print(f"{PROG}: skipped {reason}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Write the split and say what was written."""
    manifest = preprocess(options_from_args(args), on_skip=report_skipped)
    entry = manifest["splits"][args.split]
    columns = ", ".join(f"{name} ({spec['kind']})" for name, spec in entry["columns"].items())
    print(f"{PROG}: wrote {entry['rows']} rows of split {args.split!r} to {args.destdir} "
          f"(skipped {manifest['skipped_rows'][args.split]}); columns: {columns}")
    return EXIT_OK


def main(argv: Optional[Iterable[str]] = None) -> int:
    """Entry point of `ofasys-preprocess`; returns the exit code (docs/cli.md, "Exit codes"). An interrupted run
    writes no manifest entry for its split."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    if (args.vocab_size != DEFAULT_VOCAB_SIZE or args.text_columns) and not args.train_tokenizer:
        parser.error("--vocab-size and --text-columns only apply with --train-tokenizer")
    return run_command(PROG, lambda: run(args), debugging(args))


if __name__ == "__main__":
    sys.exit(main())
