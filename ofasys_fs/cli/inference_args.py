"""What ofasys-generate, ofasys-validate and ofasys-interactive share: the checkpoint flags, the generation
flags (taken from the config system's `generation` section, so names and checks match ofasys-train), and
one-line error reporting."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

from ..config import ConfigError, add_config_args, load_config
from ..configs import GenerationConfig
from ..data.rows import DataError
from ..engine.checkpoint import CheckpointError
from ..registry import RegistryError
from .arg_types import positive_int

USER_ERRORS = (ConfigError, CheckpointError, DataError, RegistryError, FileNotFoundError, ImportError, KeyError,
               TypeError, ValueError)


def add_checkpoint_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--path, --user-dir (repeatable), --device, --batch-size."""
    group = parser.add_argument_group("checkpoint")
    group.add_argument("--path", required=True, help="checkpoint file written by ofasys-train / Trainer")
    group.add_argument("--user-dir", action="append", default=[], metavar="DIR",
                       help="plugin package folder to import (repeatable); the checkpoint's recorded ones are "
                            "only named in a warning, never imported on its say-so")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    group.add_argument("--batch-size", type=positive_int, default=None, help="rows per generation batch (default: 16)")
    return parser


def add_generation_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """One flag per option of the config's `generation` section (--beam, --max-len-b, --lenpen, ...)."""
    return add_config_args(parser.add_argument_group("generation"), GenerationConfig)


def given_generation_options(args: argparse.Namespace) -> dict:
    """The generation options given on the command line (checked and typed); unset ones are left to the
    task's and the output kind's defaults."""
    resolved = load_config(GenerationConfig, args=args)
    return {field.name: getattr(resolved, field.name) for field in dataclasses.fields(GenerationConfig)
            if field.name in vars(args)}


def load_model(args: argparse.Namespace):
    """OFASys.from_pretrained with the checkpoint flags."""
    from ..hub import OFASys

    return OFASys.from_pretrained(args.path, user_dir=args.user_dir, device=args.device)


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body; a user error ends with one clear line on stderr and exit code 1."""
    try:
        return body()
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1

