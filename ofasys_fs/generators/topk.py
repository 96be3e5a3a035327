"""The k largest entries along a long last dimension (a step's log-probs over the vocabulary), fast on CPU.

torch.topk's CPU kernel partially sorts every row: 1.7 ms for the 10 best of each of 80 rows x 17,470 ids (tiny
arch, beam 5), a fifth of that step's output projection. Block maxima first cut it to 0.65 ms
(run_scripts/bench/RESULTS.md): every one of the k largest entries lies in a block whose maximum is among the k
largest maxima, so the k best of those blocks' entries are the k best of the row.
"""
from __future__ import annotations

import torch

BLOCK = 64  # entries per block: the fastest of 32-256 at 16 and 80 rows x 17,470 ids (one thread)
MIN_BLOCKS_PER_K = 8  # fewer blocks than this per wanted entry prune too little to pay


def top_k(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest entries along the last dimension, largest first, as torch.topk gives
    them; by blocks on CPU when the dimension is long (which of several equal entries comes first may differ,
    as it may between torch.topk's own kernels)."""
    length = values.size(-1)
    if values.device.type != "cpu" or length < BLOCK * MIN_BLOCKS_PER_K * k:
        return values.topk(k, dim=-1)
    leading = values.shape[:-1]
    rows = values.reshape(-1, length)
    whole = length - length % BLOCK  # entries in whole blocks; the tail (under BLOCK) is always a candidate
    maxima = rows[:, :whole].view(rows.size(0), whole // BLOCK, BLOCK).amax(dim=-1)
    blocks = maxima.topk(k, dim=-1).indices
    offsets = torch.arange(BLOCK, device=values.device)
    candidates = (blocks.unsqueeze(-1) * BLOCK + offsets).view(rows.size(0), k * BLOCK)
    if whole < length:
        tail = torch.arange(whole, length, device=values.device).expand(rows.size(0), length - whole)
        candidates = torch.cat([candidates, tail], dim=1)
    best, position = rows.gather(1, candidates).topk(k, dim=-1)
    indices = candidates.gather(1, position)
    return best.view(*leading, k), indices.view(*leading, k)
