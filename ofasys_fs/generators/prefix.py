"""Per-row forced decoder prefixes (decoder prompts, docs/design.md §4) read from a collated sample."""
from __future__ import annotations

import torch

from ..tokenizer import BOS, EOS, PAD


def forced_prefixes(sample: dict, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prefix tokens [B, P] right-padded with <pad>, prefix lengths [B]) of the tokens each row must start with.

    Read from `sample["prefix_tokens"]` when present, else `prev_output_tokens[:, 1:1 + prefix_lengths]`;
    no prefix when neither is there.
    """
    if sample.get("prefix_tokens") is not None:
        prefix = sample["prefix_tokens"]
        lengths = prefix.ne(PAD).sum(dim=1)
        source = 'sample["prefix_tokens"]'
    elif sample.get("prefix_lengths") is not None and "prev_output_tokens" in sample.get("net_input", {}):
        lengths = sample["prefix_lengths"]
        prev = sample["net_input"]["prev_output_tokens"]
        longest = int(lengths.max()) if lengths.numel() else 0
        if longest >= prev.size(1):
            raise ValueError(
                f"forced prefix: prefix_lengths {lengths.tolist()} need prev_output_tokens longer than "
                f"{prev.size(1)} positions (<s> plus the prefix)"
            )
        prefix = prev[:, 1:1 + longest]
        source = 'net_input["prev_output_tokens"]'
    else:
        return torch.full((batch_size, 0), PAD, dtype=torch.long), torch.zeros(batch_size, dtype=torch.long)
    if prefix.dim() != 2 or prefix.size(0) != batch_size or lengths.shape != (batch_size,):
        raise ValueError(f"forced prefix: {source} must have {batch_size} rows (one per encoder row), "
                         f"got shape {list(prefix.shape)}")
    prefix = prefix.long().cpu()
    lengths = lengths.long().cpu()
    positions = torch.arange(prefix.size(1))
    inside = positions[None, :] < lengths[:, None]
    bad = inside & (prefix.eq(PAD) | prefix.eq(EOS) | prefix.eq(BOS))
    if bad.any():
        row = int(bad.any(dim=1).nonzero()[0])
        raise ValueError(
            f"forced prefix of row {row} (from {source}) contains <s>, <pad> or </s> within its first "
            f"{int(lengths[row])} tokens: {prefix[row, :int(lengths[row])].tolist()}; a prefix is plain tokens, "
            f"left-aligned and right-padded with <pad>"
        )
    return prefix.masked_fill(~inside, PAD), lengths
