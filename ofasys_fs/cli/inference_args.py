"""What ofasys-generate, ofasys-validate and ofasys-interactive share: the checkpoint flags and the generation
flags (GenerationConfig's, so names and checks match ofasys-train and the Python API)."""
from __future__ import annotations

import argparse

from ..config import add_config_args, load_config
from ..generators.config import GenerationConfig
from ..hub import OFASys
from ..models.quantize import QUANTIZE_CHOICES
from .arg_types import positive_int
from .command import add_debug_flag


def add_checkpoint_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--path, --user-dir (repeatable), --device, --batch-size, --quantize."""
    group = parser.add_argument_group("checkpoint")
    group.add_argument("--path", required=True, help="checkpoint file written by ofasys-train / Trainer")
    group.add_argument("--user-dir", action="append", default=[], metavar="DIR",
                       help="plugin package folder to import (repeatable); the checkpoint's recorded ones are "
                            "only named in a warning, never imported on its say-so")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    group.add_argument("--batch-size", type=positive_int, default=None, help="rows per generation batch (default: 16)")
    group.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                       help="decode with int8 linear layers (dynamic quantisation, CPU only; default device cpu); "
                            "off by default (docs/inference.md)")
    add_debug_flag(parser)
    return parser


def add_generation_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """One flag per option of the config's `generation` section (--beam, --max-len-b, --lenpen, ...)."""
    return add_config_args(parser.add_argument_group("generation"), GenerationConfig)


def given_generation_options(args: argparse.Namespace) -> dict:
    """The generation options given on the command line (checked and typed); unset ones are left to the
    task's and the output kind's defaults."""
    return load_config(GenerationConfig, args=args).given()


def load_model(args: argparse.Namespace) -> OFASys:
    """OFASys.from_pretrained with the checkpoint flags."""
    return OFASys.from_pretrained(args.path, user_dir=args.user_dir, device=args.device, quantize=args.quantize)
