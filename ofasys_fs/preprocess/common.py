"""Helpers every preprocessor shares: reading the data config, batching fixed-size feature tensors."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def cfg_get(data_cfg: Any, key: str, default: Any) -> Any:
    """`data_cfg[key]` for a dict, `data_cfg.key` for an object; `default` when absent, None or no config."""
    if data_cfg is None:
        return default
    value = data_cfg.get(key) if isinstance(data_cfg, Mapping) else getattr(data_cfg, key, None)
    return default if value is None else value


def stack_items(items: list[dict[str, torch.Tensor]], what: str) -> dict[str, torch.Tensor]:
    """Stack each key of equally shaped per-sample outputs into a batch ([B, ...]); `what` names the slot kind."""
    if not items:
        raise ValueError(f"cannot collate an empty list of {what} items")
    keys = list(items[0])
    batch = {}
    for key in keys:
        shapes = {tuple(item[key].shape) for item in items}
        if len(shapes) != 1:
            raise ValueError(f"cannot batch {what} {key!r} tensors of different shapes {sorted(shapes)}; "
                             f"every sample of a batch must be preprocessed with the same settings")
        batch[key] = torch.stack([item[key] for item in items])
    return batch
