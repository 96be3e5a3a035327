"""Where tensors live: the device a run asks for, checked against this machine, and samples moved there."""
from __future__ import annotations

import re
from typing import Any, Union

import torch

from .errors import ConfigError


def resolve_device(name: Union[str, torch.device]) -> torch.device:
    """"auto" -> cuda when available, else cpu; a device this machine lacks is a ConfigError saying so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(f"device {name!r}: this machine has no usable CUDA GPU (none found, or no driver); use "
                              f"cpu or auto")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available on this machine; use cpu or auto")
    return device


def move_to(value: Any, device: torch.device) -> Any:
    """Tensors of a (nested) sample moved to the device; other values kept."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: move_to(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [move_to(item, device) for item in value]
    return value


def check_device_name(value: str) -> None:
    """Check a device name that torch accepts (or "auto")."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError('expected "auto", "cpu", "cuda", "cuda:N" or "mps"')
