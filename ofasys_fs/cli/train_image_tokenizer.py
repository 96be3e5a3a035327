"""ofasys-train-image-tokenizer: train the fsq image tokenizer that IMAGE outputs are generated in, or convert a
taming-transformers VQGAN (docs/image_generation.md).

    ofasys-train-image-tokenizer --data ROWS --column img --out tok.pt [--image-size 16 --grid 4 ...]
    ofasys-train-image-tokenizer --from-vqgan last.ckpt --vqgan-config model.yaml --out vqgan.pt

Training logs the loss and the held-out PSNR, writes OUT and OUT's -reconstructions.png (held-out originals
above their reconstructions), and resumes from OUT.state after an interruption.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from ..config import add_config_args, load_config
from ..engine.tokenizer_training import TokenizerTrainConfig, train_image_tokenizer
from ..errors import ConfigError
from ..image_tokenizers.files import save_image_tokenizer
from ..image_tokenizers.fsq import FSQConfig
from ..image_tokenizers.vqgan import VQGANTokenizer
from ..options import section
from .command import add_debug_flag, entry_point

PROG = "ofasys-train-image-tokenizer"


@dataclasses.dataclass
class TokenizerCommandConfig:
    """The flags of the command: the fsq tokenizer's sizes and how it is trained."""

    fsq: FSQConfig = section(FSQConfig, "the fsq tokenizer's sizes")
    training: TokenizerTrainConfig = section(TokenizerTrainConfig, "training")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Train an image tokenizer (fsq) on the images of a data "
                                                            "file, or convert a VQGAN (docs/image_generation.md).")
    parser.add_argument("--out", required=True, help="the tokenizer file to write (.pt)")
    data = parser.add_argument_group("data (training)")
    data.add_argument("--data", help="rows with an image column: a .jsonl/.tsv/.parquet file, a folder with "
                                     "train.jsonl, or a shard folder")
    data.add_argument("--valid-data", help="held-out rows for the PSNR in the log (default: valid_fraction of --data)")
    vqgan = parser.add_argument_group("conversion (instead of training)")
    vqgan.add_argument("--from-vqgan", metavar="CKPT", help="a taming-transformers VQGAN checkpoint (state_dict)")
    vqgan.add_argument("--vqgan-config", metavar="YAML", help="its taming YAML config (model.target, model.params)")
    add_config_args(parser, TokenizerCommandConfig)
    add_debug_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.from_vqgan or args.vqgan_config:
        if not (args.from_vqgan and args.vqgan_config) or args.data:
            raise ConfigError("convert with --from-vqgan CKPT --vqgan-config YAML (and no --data), or train with "
                              "--data")
        tokenizer = VQGANTokenizer.from_taming(args.from_vqgan, args.vqgan_config)
        reference = save_image_tokenizer(tokenizer, args.out, info={"converted_from": args.from_vqgan})
        print(f"{PROG}: wrote {args.out} ({tokenizer.num_codes} codes, grid {tokenizer.grid[0]}x{tokenizer.grid[1]}, "
              f"{tokenizer.image_size} px; {reference})")
        return 0
    if not args.data:
        raise ConfigError("give --data ROWS to train a tokenizer (or --from-vqgan to convert one)")
    cfg = load_config(TokenizerCommandConfig, args=args)
    train_image_tokenizer(args.data, args.out, cfg.fsq, cfg.training, valid_data=args.valid_data,
                          log=lambda line: print(f"{PROG}: {line}", flush=True), progress=sys.stderr.isatty())
    return 0


main = entry_point(PROG, build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
