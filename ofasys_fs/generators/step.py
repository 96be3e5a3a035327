"""One decoding step's log-probs: normalisation over the constraint's tokens, then the hard and soft rules.

The reference PyTorch step. It touches the [N, V] log-probs a few times only: the soft rules (min_len's
</s> ban, n-gram blocking) are sparse (hypothesis, token) pairs, and the dense constraint mask exists only
when the call has constraints.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..tokenizer import BOS, EOS, PAD, UNK
from .search import NEG_INF


@dataclasses.dataclass
class StepRules:
    """What may come next for each of the N active hypotheses (docs/generation.md, "Hard and soft rules")."""

    constrained: Optional[torch.Tensor]  # BoolTensor [N, V] of the constraints (True = allowed), or None: no constraints
    at_max: torch.Tensor  # BoolTensor [N]: at the maximum length, only </s>
    below_min: torch.Tensor  # BoolTensor [N]: </s> is soft-banned (min_len)
    banned: tuple[torch.Tensor, torch.Tensor]  # (hypotheses, tokens) soft-banned by n-gram blocking; may repeat
    forced: torch.Tensor  # BoolTensor [N]: inside the forced prefix
    forced_tokens: torch.Tensor  # LongTensor [forced.sum()]: the prefix token of each forced hypothesis
    unkpen: float = 0.0


def step_log_probs(logits: torch.Tensor, rules: StepRules) -> torch.Tensor:
    """FloatTensor [N, V]: log-softmax of `logits` over the constraint's tokens, -inf where a token may not come next.

    Hard rules: constraints, never <s>/<pad>, only </s> at the maximum length, the forced prefix token (log-prob
    0). Soft rules (min_len's </s>, n-gram blocking) give way for a hypothesis they would leave no token.
    A hypothesis whose constraints allow nothing gets -inf everywhere.
    """
    constrained = rules.constrained
    if constrained is None:
        lprobs = torch.log_softmax(logits, dim=-1)
    else:
        # Normalise over the constraint's tokens, as training's constraint-aware loss does (criteria/): a token
        # that was the only one allowed there was never trained against the rest of the vocabulary.
        dead_end = ~constrained.any(dim=1, keepdim=True)
        lprobs = torch.log_softmax(logits.masked_fill(~constrained & ~dead_end, NEG_INF), dim=-1)
        lprobs.masked_fill_(~constrained, NEG_INF)
    at_max = rules.at_max.nonzero().squeeze(1) if rules.at_max.any() else None
    eos_at_max = lprobs[at_max, EOS] if at_max is not None else None
    soft_rows, soft_tokens = soft_banned(rules, constrained, lprobs.size(1))
    lprobs[:, BOS] = NEG_INF
    lprobs[:, PAD] = NEG_INF
    if rules.unkpen:
        lprobs[:, UNK] -= rules.unkpen
    if soft_rows.numel():
        lprobs[soft_rows, soft_tokens] = NEG_INF
    if at_max is not None:
        lprobs[at_max] = NEG_INF
        lprobs[at_max, EOS] = eos_at_max
    if rules.forced.any():
        forced = rules.forced.nonzero().squeeze(1)
        lprobs[forced] = NEG_INF
        lprobs[forced, rules.forced_tokens] = 0.0
    return lprobs


def soft_banned(rules: StepRules, constrained: Optional[torch.Tensor], vocab: int):
    """The soft-banned (hypothesis, token) pairs to apply: those of hypotheses left with an allowed token."""
    eos_rows = rules.below_min.nonzero().squeeze(1)
    if not eos_rows.numel() and not rules.banned[0].numel():
        return rules.banned
    rows = torch.cat([eos_rows, rules.banned[0]])
    tokens = torch.cat([torch.full_like(eos_rows, EOS), rules.banned[1]])
    keys = torch.unique(rows * vocab + tokens)  # a pair may be banned twice (</s> by both rules)
    rows, tokens = torch.div(keys, vocab, rounding_mode="floor"), keys % vocab
    hard_allowed = (tokens != BOS) & (tokens != PAD)
    if constrained is None:
        allowed_count = torch.full((rules.at_max.numel(),), vocab - 2, device=rows.device)
    else:
        hard_allowed &= constrained[rows, tokens]
        allowed_count = constrained.sum(dim=1) - constrained[:, BOS].long() - constrained[:, PAD].long()
    rows, tokens = rows[hard_allowed], tokens[hard_allowed]
    remaining = allowed_count - torch.bincount(rows, minlength=allowed_count.numel())
    keep = remaining[rows] > 0
    return rows[keep], tokens[keep]
