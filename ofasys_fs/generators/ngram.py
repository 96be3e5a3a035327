"""Vectorised no-repeat-ngram blocking (fairseq's --no-repeat-ngram-size) without Python loops over tokens."""
from __future__ import annotations

import torch


def banned_ngram_pairs(tokens: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hypotheses, tokens): each next token that would repeat an n-gram of `size` in `tokens` [N, L].

    Every complete n-gram of a hypothesis whose first n-1 tokens equal the hypothesis' last n-1 tokens
    bans its last token. A pair may appear more than once.
    """
    count, length = tokens.shape
    if size < 1 or length < size:
        empty = tokens.new_zeros(0)
        return empty, empty
    windows = tokens.unfold(1, size, 1)  # [N, L - size + 1, size]
    context = tokens[:, length - size + 1:]  # the last size - 1 tokens
    rows, starts = (windows[:, :, :-1] == context[:, None, :]).all(dim=-1).nonzero(as_tuple=True)
    return rows, windows[rows, starts, -1]


def banned_ngram_mask(tokens: torch.Tensor, size: int, vocab_size: int) -> torch.Tensor:
    """BoolTensor [N, V]: True for each next token that would repeat an n-gram of `size` in `tokens` [N, L]."""
    banned = torch.zeros(tokens.size(0), vocab_size, dtype=torch.bool, device=tokens.device)
    rows, next_tokens = banned_ngram_pairs(tokens, size)
    banned[rows, next_tokens] = True
    return banned
