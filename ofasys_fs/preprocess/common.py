"""What non-text preprocessors share: batching fixed-size feature tensors."""
from __future__ import annotations

import torch


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
