"""The layout a checkpoint's dict must have before any of it is used (docs/reliability.md, guarantee 4).

`load_checkpoint` checks it once, so that a file that unpickles safely but holds the wrong things (damaged,
hand-edited or crafted) is a CheckpointError naming the key and what was expected, instead of a TypeError or
KeyError deep inside a restore. Weights must be finite: a model with NaN or infinite weights produces nothing.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch


def _is_weights(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _dict_with(**checks: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A dict whose listed keys, when present, pass their checks."""
    return lambda value: isinstance(value, dict) and all(check(value[key]) for key, check in checks.items()
                                                          if key in value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _is_task(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("name"), str)
            and _list_of(_is_str)(value.get("instructions")) and bool(value["instructions"]))


def _is_rng(value: Any) -> bool:
    """A generator state {"torch": uint8 tensor, ...}, with every rank's own under "ranks" (when present)."""
    generator = value.get("torch") if isinstance(value, dict) else None
    ranks = value.get("ranks", []) if isinstance(value, dict) else None
    return (isinstance(generator, torch.Tensor) and generator.dtype == torch.uint8
            and _list_of(_is_rng)(ranks))


LAYOUT: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "model": ("a dict of tensors", _is_weights),
    "ema": ("None or a dict whose 'shadow' is a dict of tensors",
            _optional(lambda value: isinstance(value, dict) and _is_weights(value.get("shadow")))),
    "optimizer": ("None or a dict with a 'state' dict and a 'param_groups' list",
                  _optional(lambda value: isinstance(value, dict) and isinstance(value.get("state"), dict)
                            and _list_of(_is_dict)(value.get("param_groups")))),
    "lr_scheduler": ("a dict", _is_dict),
    "sampler": ("None or a dict", _optional(_is_dict)),
    "rng": ("a dict whose 'torch' is a uint8 tensor (and so is each of its 'ranks')", _is_rng),
    "vocab": ("a dict", _is_dict),
    "config": ("a dict whose 'model', 'data' and 'train' are dicts", _dict_with(model=_is_dict, data=_is_dict,
                                                                               train=_is_dict)),
    "tasks": ("a list of dicts, each with a str 'name' and a non-empty list of str 'instructions'",
              _list_of(_is_task)),
    "user_dirs": ("a list of str", _list_of(_is_str)),
    "train_meta": ("a dict", _is_dict),
}


# Keys that checkpoints of earlier versions lack.
def _is_tokenizer(value: Any) -> bool:
    return (_dict_with(kind=_is_str, config=_is_dict, weights=_is_weights)(value)
            and {"kind", "config", "weights"} <= set(value))


OPTIONAL_LAYOUT: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "image_tokenizers": ("a dict of content hash -> {'kind', 'config', 'weights'}",
                         lambda value: isinstance(value, dict) and all(
                             isinstance(key, str) and _is_tokenizer(item) for key, item in value.items())),
}

# the keys inference reads (OFASys.from_pretrained, --finetune-from-model)
INFERENCE_KEYS = ("model", "ema", "vocab", "config", "tasks", "user_dirs", "train_meta")


def layout_problem(state: dict, keys: Iterable[str] = tuple(LAYOUT)) -> str | None:
    """What is wrong with a checkpoint dict written by the Trainer (a key, and what it should hold), or None;
    `keys`: the keys to check (default all; INFERENCE_KEYS for a checkpoint read only for inference)."""
    for key in keys:
        expected, check = LAYOUT[key]
        if key not in state:
            return f"has no {key!r} (expected {expected}); it was not written by the ofasys_fs Trainer"
        if not check(state[key]):
            return f"has an unusable {key!r} (of type {type(state[key]).__name__}); expected {expected}"
    for key, (expected, check) in OPTIONAL_LAYOUT.items():
        if key in state and not check(state[key]):
            return f"has an unusable {key!r} (of type {type(state[key]).__name__}); expected {expected}"
    weights = {"model": state["model"], **({"ema shadow": state["ema"]["shadow"]} if state["ema"] else {})}
    for part, tensors in weights.items():
        bad = next((name for name, tensor in tensors.items()
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())), None)
        if bad is not None:
            return (f"has NaN or infinite weights ({part} {bad!r}): the run that wrote it diverged; use an earlier "
                    f"checkpoint")
    return None
