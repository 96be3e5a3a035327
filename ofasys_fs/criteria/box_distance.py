"""Distance-aware loss on `<bin>` targets: the expected distance, under the model's distribution over the
`<bin>` ids, between a bin's coordinate and the target's. Cross-entropy scores a box coordinate as right or
wrong, so a model from scratch learns nothing from a guess one bin off that it would not learn from one across
the image; this term is smaller the nearer the mass lies to the target, so every step says which way to move
(docs/tasks/grounding.md, "Distance-aware bins")."""
from __future__ import annotations

import torch


def box_distance(logits: torch.Tensor, target: torch.Tensor, bins: range) -> torch.Tensor:
    """Per token [N]: E_p |c(i) - c(target)| for logits [N, V] and target [N], p the softmax over the ids of
    `bins` (`<bin>_0..<bin>_{n-1}`, coordinate c(i) = i / (n - 1) of the image side); 0 where the target is no bin."""
    is_bin = (target >= bins.start) & (target < bins.stop)
    distance = logits.new_zeros(target.shape)
    if len(bins) < 2 or not bool(is_bin.any()):
        return distance
    probs = torch.softmax(logits[is_bin, bins.start:bins.stop], dim=-1)
    coordinates = torch.arange(len(bins), device=logits.device, dtype=probs.dtype) / (len(bins) - 1)
    wanted = coordinates[target[is_bin] - bins.start]
    expected = (probs * (coordinates[None, :] - wanted[:, None]).abs()).sum(-1)
    return distance.masked_scatter(is_bin, expected.to(distance.dtype))
