"""ofasys-convert-ofa: OFA's released weights -> an ofasys_fs checkpoint (docs/pretrained.md).

    ofasys-convert-ofa ofa_base.pt --out ofa_base_fs.pt --bpe-dir OFA/utils/BPE
    ofasys-convert-ofa ofa-tiny/ --out ofa_tiny_fs.pt              # a Hugging Face OFA folder
    ofasys-convert-ofa multitask.pt --out ofasys_fs.pt --bpe-dir OFA/utils/BPE

Prints what it wrote, the tensors it could not map and the ofasys-train flags that fine-tune from the result.
"""
from __future__ import annotations

import argparse

from ..pretrained.convert import convert_ofa
from .arg_types import positive_int
from .command import EXIT_OK, add_debug_flag, entry_point

PROG = "ofasys-convert-ofa"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Convert an OFA fairseq checkpoint, a Hugging Face OFA "
                                                            "folder or OFASys's multitask.pt into an ofasys_fs "
                                                            "checkpoint (docs/pretrained.md).")
    parser.add_argument("src", help="an OFA .pt file (fairseq, or OFASys's multitask.pt) or a Hugging Face OFA folder "
                                    "(config.json, pytorch_model.bin or model.safetensors, vocab.json, merges.txt)")
    parser.add_argument("--out", required=True, help="the ofasys_fs checkpoint to write")
    parser.add_argument("--bpe-dir", help="OFA's encoder.json, vocab.bpe and dict.txt (OFA's utils/BPE); needed for "
                                          ".pt files")
    parser.add_argument("--image-size", type=positive_int, help="image side the model preprocesses to (default: the "
                                                                "source's patch_image_size, else 384)")
    parser.add_argument("--use-ema", action="store_true", help="take the EMA weights of a fairseq checkpoint "
                                                               "(extra_state['ema'], OFA's --ema-eval)")
    add_debug_flag(parser)
    return parser


def convert(args: argparse.Namespace) -> int:
    report = convert_ofa(args.src, args.out, bpe_dir=args.bpe_dir, image_size=args.image_size, use_ema=args.use_ema)
    print("\n".join(report.lines()))
    return EXIT_OK


main = entry_point(PROG, build_parser, convert)
