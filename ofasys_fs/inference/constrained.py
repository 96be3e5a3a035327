"""Decode with the softmax the model was trained with at constrained positions.

Training takes the log-softmax over the allowed tokens only at BOX and closed_set target positions
(`constraint_masks`, docs/internals.md), so the model never learns the raw probability of a token that was
the only one allowed (the second piece of a two-token answer, the </s> after it). The generator masks
disallowed tokens without renormalising (fairseq), which ranks closed-set answers by those untrained raw
values. This wrapper masks the logits before the generator's log-softmax, so each constrained step is
normalised over its allowed tokens exactly as in training.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

# generated tokens (after the forced prefix) -> the ids allowed next with training's renormalisation, or None
PositionRule = Callable[[list], Optional[Sequence[int]]]


class ConstrainedSoftmax(nn.Module):
    """A GeneralistModel whose decoder masks the logits by `rule` past the forced prefix.

    Every row of a call must have the same forced-prefix length, so that the generated tokens of a
    hypothesis are `prev_output_tokens[1 + prefix_length:]`.
    """

    def __init__(self, model: nn.Module, prefix_length: int, rule: PositionRule):
        super().__init__()
        self.model, self.prefix_length, self.rule = model, prefix_length, rule

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def cfg(self):
        return self.model.cfg

    def encoder(self, pieces: list):
        return self.model.encoder(pieces)

    def reorder_encoder_out(self, encoder_out, new_order: torch.Tensor):
        return self.model.reorder_encoder_out(encoder_out, new_order)

    def reorder_incremental_state(self, incremental_state: dict, new_order: torch.Tensor) -> None:
        self.model.reorder_incremental_state(incremental_state, new_order)

    def decoder(self, prev_output_tokens: torch.Tensor, encoder_out, incremental_state: Optional[dict] = None):
        """The model's logits, masked by `rule` at every returned position past the forced prefix (the last one
        in incremental decoding, all of them when scoring whole candidates)."""
        logits, extra = self.model.decoder(prev_output_tokens, encoder_out, incremental_state)
        start, length = 1 + self.prefix_length, prev_output_tokens.size(1)
        first = length - logits.size(1)  # input position of logits[:, 0]; position t predicts token t + 1
        allowed = torch.ones(logits.shape, dtype=torch.bool)
        tokens = prev_output_tokens.tolist()
        for position in range(max(first, start - 1), length):
            for row, sequence in enumerate(tokens):
                ids = self.rule(sequence[start:position + 1])
                if ids:  # None: unconstrained here; empty: a dead end the generator's own constraint blocks
                    allowed[row, position - first] = False
                    allowed[row, position - first, torch.as_tensor(list(ids), dtype=torch.long)] = True
        return logits.masked_fill(~allowed.to(logits.device), float("-inf")), extra
