"""Vectorised no-repeat-ngram blocking (fairseq's --no-repeat-ngram-size) without Python loops over tokens."""
from __future__ import annotations

import torch


def banned_ngram_mask(tokens: torch.Tensor, size: int, vocab_size: int) -> torch.Tensor:
    """BoolTensor [N, V]: True for each next token that would repeat an n-gram of `size` in `tokens` [N, L].

    Every complete n-gram of a hypothesis whose first n-1 tokens equal the hypothesis' last n-1 tokens
    bans its last token.
    """
    count, length = tokens.shape
    banned = torch.zeros(count, vocab_size, dtype=torch.long, device=tokens.device)
    if size < 1 or length < size:
        return banned.bool()
    windows = tokens.unfold(1, size, 1)  # [N, L - size + 1, size]
    context = tokens[:, length - size + 1:]  # the last size - 1 tokens
    matches = (windows[:, :, :-1] == context[:, None, :]).all(dim=-1)
    # scatter_add, not scatter: one token may end several windows, matching and not matching.
    banned.scatter_add_(1, windows[:, :, -1], matches.long())
    return banned > 0
