"""One search step: candidate next tokens per row (beam search or sampling) and which of them go on."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from .topk import top_k

NEG_INF = float("-inf")


@dataclasses.dataclass
class Candidates:
    """Ranked candidates per row, best first: [R, C] each."""

    scores: torch.Tensor  # cumulative log-prob of the hypothesis plus the candidate token
    beams: torch.Tensor  # which beam of the row it extends
    tokens: torch.Tensor
    lprobs: torch.Tensor  # the candidate token's own log-prob (its positional score)

    def take(self, index: torch.Tensor) -> "Candidates":
        """The candidates at positions `index` [R, K] of each row."""
        return Candidates(*(getattr(self, field.name).gather(1, index) for field in dataclasses.fields(self)))


def beam_candidates(lprobs: torch.Tensor, scores: torch.Tensor, first_beam_only: torch.Tensor,
                    beam: Optional[int] = None) -> Candidates:
    """The 2k best (beam, token) extensions per row; lprobs [R, w, V], scores [R, w], first_beam_only [R]; k is
    `beam` (default: w, the hypotheses per row; beam search's first step has one).

    2k candidates always hold k that are not </s> (each beam adds at most one </s>). Rows whose beams
    are still identical copies (before and at the end of the forced prefix) only extend beam 0, so
    that the k survivors differ. Only a hypothesis's own 2k best tokens can be among its row's 2k best,
    so those are picked first: the [R, k, V] sums are never materialised.
    """
    rows, width, vocab = lprobs.shape
    beam = beam or width
    if bool(first_beam_only.any()):
        scores = scores.clone()
        scores[:, 1:] = scores[:, 1:].masked_fill(first_beam_only.view(rows, 1), NEG_INF)
    own, own_tokens = top_k(lprobs, min(2 * beam, vocab))  # [R, k, c]
    per_beam = own.size(2)
    total = (own + scores.unsqueeze(-1)).view(rows, width * per_beam)
    top, index = total.topk(min(2 * beam, width * per_beam), dim=1)
    tokens = own_tokens.view(rows, -1).gather(1, index)
    step = own.view(rows, -1).gather(1, index)
    return Candidates(top, torch.div(index, per_beam, rounding_mode="floor"), tokens, step)


def top_k_top_p(lprobs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """`lprobs` [N, V] with -inf outside the k most likely tokens and outside the smallest set of mass >= p.

    top_k <= 0 and top_p <= 0 switch the filter off; ties at the k-th value are kept.
    """
    if 0 < top_k < lprobs.size(-1):
        kth = lprobs.topk(top_k, dim=-1).values[:, -1:]
        lprobs = lprobs.masked_fill(lprobs < kth, NEG_INF)
    if top_p > 0:
        sorted_lprobs, order = lprobs.sort(dim=-1, descending=True)
        mass_before = sorted_lprobs.softmax(dim=-1).cumsum(dim=-1) - sorted_lprobs.softmax(dim=-1)
        drop_sorted = mass_before >= top_p  # the most likely token always has 0 mass before it
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        lprobs = lprobs.masked_fill(drop, NEG_INF)
    return lprobs


def sample_candidates(lprobs: torch.Tensor, scores: torch.Tensor, top_k: int, top_p: float,
                      generator: Optional[torch.Generator]) -> Candidates:
    """One sampled token per hypothesis; lprobs [R, k, V], scores [R, k] -> k candidates per row, own beams.

    The candidate's score adds the token's unfiltered (but constrained, tempered) log-prob. A hypothesis
    with no allowed token draws a placeholder and keeps its -inf score.
    """
    rows, beam, vocab = lprobs.shape
    flat = lprobs.view(rows * beam, vocab)
    filtered = top_k_top_p(flat, top_k, top_p)
    has_choice = torch.isfinite(filtered).any(dim=-1, keepdim=True)
    weights = torch.where(has_choice, filtered, torch.zeros_like(filtered)).softmax(dim=-1)
    tokens = torch.multinomial(weights, 1, generator=generator)
    step = flat.gather(1, tokens).view(rows, beam)
    beams = torch.arange(beam, device=lprobs.device).expand(rows, beam)
    return Candidates(scores + step, beams, tokens.view(rows, beam), step)


def split_candidates(candidates: Candidates, beam: int, eos: int) -> tuple[torch.Tensor, Candidates]:
    """(finishing [R, C]: finite </s> candidates among each row's best `beam`, the `beam` survivors per row).

    Survivors are the best candidates that are not </s>; where fewer exist (sampling) the rest are
    </s> candidates kept as dead slots with score -inf.
    """
    count = candidates.tokens.size(1)
    is_eos = candidates.tokens.eq(eos)
    rank = torch.arange(count, device=is_eos.device).expand_as(is_eos)
    finishing = is_eos & torch.isfinite(candidates.scores) & (rank < beam)
    order = (rank + count * is_eos.long()).argsort(dim=1, stable=True)[:, :beam]
    survivors = candidates.take(order)
    survivors.scores = survivors.scores.masked_fill(survivors.tokens.eq(eos), NEG_INF)
    return finishing, survivors
