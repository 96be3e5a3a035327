"""A benchmark's recipe, run_scripts/<benchmark>/benchmark.yaml, turned into the arguments of ofasys-train
and ofasys-generate that its train.sh and evaluate.sh run (through common/run.sh).

    python -m run_scripts.common.benchmark train BENCHMARK_DIR DATA_DIR ARCH [--gpus N]
    python -m run_scripts.common.benchmark evaluate BENCHMARK_DIR CHECKPOINT DATA_DIR [SUBSET]

print one argument per line. The task is the one the benchmark's convert.py recorded in DATA_DIR's
manifest.json ("task"). benchmark.yaml:

    train:
      every_arch: {...}            # ofasys-train options (flat names) for every arch
      base: {...}                  # per arch, on top; archs without an entry use every_arch alone
    evaluate:
      subset: test                 # default --gen-subset
      flags: {beam: 5, ...}        # ofasys-generate flags (OFA's decoding)

`max_epoch` also sets `max_update` (the polynomial schedule decays until max_update): epochs x
ceil(training rows / (batch_size x update_freq x GPUs)), the rows read from DATA_DIR's shard manifest.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Optional, Sequence

import yaml

RECIPE = "benchmark.yaml"


class RecipeError(ValueError):
    """benchmark.yaml or the arguments given to a benchmark script are not usable."""


@dataclasses.dataclass
class Benchmark:
    """One benchmark folder's recipe."""

    folder: str
    train: dict
    evaluate_subset: str
    evaluate_flags: dict

    @classmethod
    def load(cls, folder: str) -> "Benchmark":
        path = os.path.join(folder, RECIPE)
        try:
            with open(path, encoding="utf-8") as handle:
                recipe = yaml.safe_load(handle)
            evaluate = recipe.get("evaluate", {})
            return cls(folder, recipe["train"], evaluate.get("subset", "test"), evaluate.get("flags", {}))
        except FileNotFoundError:
            raise RecipeError(f"{path} does not exist (is {folder} a run_scripts benchmark folder?)") from None
        except (yaml.YAMLError, KeyError, AttributeError, TypeError) as err:
            raise RecipeError(f"{path}: expected train: {{every_arch: ..., <arch>: ...}} and evaluate: "
                              f"{{subset:, flags:}} ({type(err).__name__}: {err})") from None

    def train_options(self, arch: str) -> dict:
        """every_arch settings, then the arch's own."""
        return {**self.train.get("every_arch", {}), **self.train.get(arch, {})}

    def published_archs(self) -> list[str]:
        return [name for name in self.train if name != "every_arch"]


def as_flags(options: dict) -> list[str]:
    """{"max_len_b": 16, "fp16": True} -> ["--max-len-b", "16", "--fp16"] (False flags are left out)."""
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, str(value)]
    return flags


def converted(data_dir: str) -> dict:
    """DATA_DIR's manifest.json (docs/data_format.md), read as JSON so that the scripts need not import torch."""
    path = os.path.join(data_dir, "manifest.json")
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"{path} does not exist: DATA_DIR must be a shard folder written by the benchmark's "
                          f"convert.py") from None
    except json.JSONDecodeError as err:
        raise RecipeError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("task"), str):
        raise RecipeError(f"{path} records no task: DATA_DIR must be written by run_scripts/<benchmark>/convert.py")
    return manifest


def epochs_to_updates(options: dict, manifest: dict, gpus: int) -> int:
    train = manifest.get("splits", {}).get("train")
    if train is None:
        raise RecipeError("the data has no train split; convert it first (convert.py --split train)")
    rows_per_update = options.get("batch_size", 16) * options.get("update_freq", 1) * gpus
    return options["max_epoch"] * math.ceil(train["rows"] / rows_per_update)


def train_arguments(benchmark: Benchmark, data_dir: str, arch: str, gpus: int = 1) -> list[str]:
    """ofasys-train arguments: the converted task and its data, the arch and the recipe's options for it."""
    manifest = converted(data_dir)
    options = benchmark.train_options(arch)
    if options.get("max_epoch"):
        options = {**options, "max_update": epochs_to_updates(options, manifest, gpus)}
    return ["--task", manifest["task"], "--data", data_dir, "--arch", arch, *as_flags(options)]


def evaluate_arguments(benchmark: Benchmark, checkpoint: str, data_dir: str, subset: Optional[str] = None) -> list[str]:
    """ofasys-generate arguments: the converted task on DATA_DIR's subset with OFA's decoding flags."""
    return ["--path", checkpoint, "--task", converted(data_dir)["task"], "--data", data_dir,
            "--gen-subset", subset or benchmark.evaluate_subset, *as_flags(benchmark.evaluate_flags)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="run_scripts.common.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("benchmark_dir")
    train.add_argument("data_dir")
    train.add_argument("arch")
    train.add_argument("--gpus", type=int, default=1, help="total ranks (turns max_epoch into max_update)")
    evaluate = commands.add_parser("evaluate")
    evaluate.add_argument("benchmark_dir")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("data_dir")
    evaluate.add_argument("subset", nargs="?")
    args = parser.parse_args(argv)
    try:
        benchmark = Benchmark.load(args.benchmark_dir)
        if args.command == "train":
            archs = benchmark.published_archs()
            if archs and args.arch not in archs:
                print(f"note: {benchmark.folder}/{RECIPE} has per-arch settings for {archs} only; arch {args.arch!r} "
                      f"gets its every_arch settings and ofasys-train's defaults", file=sys.stderr)
            arguments = train_arguments(benchmark, args.data_dir, args.arch, args.gpus)
        else:
            arguments = evaluate_arguments(benchmark, args.checkpoint, args.data_dir, args.subset)
    except (RecipeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(arguments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
