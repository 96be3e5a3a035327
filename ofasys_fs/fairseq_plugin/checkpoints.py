"""fairseq checkpoints of the `ofasys` task: the torch safe globals fairseq's own files need, and the conversion of an
ofasys_fs checkpoint into one that fairseq-generate loads (`ofasys-fairseq-convert IN OUT`). The other way needs no
conversion: OFASys.from_pretrained and ofasys-generate read the fairseq checkpoint itself."""
from __future__ import annotations

import argparse
import sys

import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_MODEL_NAME_REGISTRY
from omegaconf import OmegaConf

from ofasys_fs.checkpoint import atomic_write, inference_weights, load_checkpoint
from ofasys_fs.checkpoint_fairseq import SAFE_GLOBALS, TASK_STATE_KEY, inference_payload
from ofasys_fs.cli.command import EXIT_OK, add_debug_flag, entry_point

from .criterion import CRITERION_NAME, OfasysCriterion
from .model import MODEL_NAME, SET_WHEN_BUILT
from .task import TASK_NAME

PROG = "ofasys-fairseq-convert"


def allow_fairseq_globals() -> None:
    """Let torch's weights_only loading (fairseq's torch.load) build what fairseq checkpoints hold besides tensors
    and plain values (argparse.Namespace, in the config of a legacy optimizer such as sgd), instead of turning
    weights_only off."""
    torch.serialization.add_safe_globals(list(SAFE_GLOBALS))


def fairseq_config(model_cfg: dict) -> dict:
    """fairseq's full config of the `ofasys` task, model (the stored arch and sizes) and criterion, as plain values."""
    arch = model_cfg["arch"] if ARCH_MODEL_NAME_REGISTRY.get(model_cfg["arch"]) == MODEL_NAME else MODEL_NAME
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, ["converted", "--task", TASK_NAME, "--arch", arch,
                                                "--criterion", CRITERION_NAME])
    cfg = convert_namespace_to_omegaconf(args)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    config["model"].update({key: value for key, value in model_cfg.items() if key not in SET_WHEN_BUILT})
    return config


def to_fairseq(state: dict) -> dict:
    """A fairseq checkpoint of an ofasys_fs one: its inference weights, and what inference needs as task state."""
    num_updates = int((state.get("train_meta") or {}).get("num_updates", 0))
    return {
        "args": None,
        "cfg": fairseq_config(state["config"]["model"]),
        "model": inference_weights(state),
        "criterion": {},
        "optimizer_history": [{"criterion_name": OfasysCriterion.__name__, "optimizer_name": "none",
                               "lr_scheduler_state": {}, "num_updates": num_updates}],
        "task_state": {TASK_STATE_KEY: inference_payload(state)},
        "extra_state": {"train_iterator": {"epoch": 1}},
        "last_optimizer_state": None,
    }


def convert(args: argparse.Namespace) -> int:
    state = to_fairseq(load_checkpoint(args.input))
    atomic_write(args.output, lambda handle: torch.save(state, handle))
    print(f"{PROG}: wrote {args.output}; decode it with fairseq-generate DATA --user-dir ofasys_fs/fairseq_plugin "
          f"--task ofasys --path {args.output}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Write an ofasys_fs checkpoint as a fairseq checkpoint of "
                                                            "the ofasys task, for fairseq-generate (docs/fairseq.md).")
    parser.add_argument("input", help="ofasys_fs checkpoint (ofasys-train / Trainer)")
    parser.add_argument("output", help="fairseq checkpoint to write")
    add_debug_flag(parser)
    return parser


main = entry_point(PROG, build_parser, convert)


if __name__ == "__main__":
    sys.exit(main())
