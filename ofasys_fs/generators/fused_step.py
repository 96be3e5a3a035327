"""A fused beam-search step for GPUs (Triton): log-softmax over the constraint's tokens, the hard and soft rules
(generators/step.py) and the top 2k over beam x vocabulary, without materialising the [N, V] log-probs.

It computes exactly what `beam_candidates(step_log_probs(logits, rules).view(R, k, V), scores, first_beam_only)`
computes (the PyTorch reference path), up to float rounding and the order of equal candidates. Two kernels:
`row_statistics` (one program per hypothesis: the log-normaliser over the constraint's tokens, and whether
the soft rules leave that hypothesis a token) and `block_candidates` (one program per hypothesis and vocabulary
block: the block's best 2k extensions); torch.topk then picks the 2k best of a row's blocks. On by default
(`GenerationConfig.fused_step`) since run_scripts/bench/gpu_check.py matched the reference on a GPU;
on CPU tensors or without Triton the reference path runs.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from ..tokenizer import BOS, EOS, PAD, UNK
from .search import NEG_INF, Candidates
from .step import StepRules

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the reference path is used
    triton = None

BLOCK = 1024  # vocabulary entries per program of block_candidates


def available(device: torch.device) -> bool:
    """Whether the fused step can run on `device`: a CUDA device with Triton installed (or any device under
    Triton's interpreter, TRITON_INTERPRET=1, which tests use)."""
    return triton is not None and (device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")


if triton is not None:
    # Kernels may read only constexpr globals (the interpreter allows any; compiled Triton does not).
    BOS_ID, EOS_ID, PAD_ID, UNK_ID = (tl.constexpr(token) for token in (BOS, EOS, PAD, UNK))

    @triton.jit
    def load_block(logits, constrained, row, offsets, vocab: tl.constexpr, HAS_CONSTRAINT: tl.constexpr):
        """One hypothesis's logits at `offsets` (-inf past the vocabulary), whether each is in the vocabulary,
        and whether the constraint allows it (every valid token without constraints)."""
        valid = offsets < vocab
        x = tl.load(logits + row * vocab + offsets, mask=valid, other=float("-inf"))
        if HAS_CONSTRAINT:
            allowed = tl.load(constrained + row * vocab + offsets, mask=valid, other=0) != 0
        else:
            allowed = valid
        return x, valid, allowed

    @triton.jit
    def row_statistics(logits, constrained, soft_ban, log_normaliser, use_relaxed, vocab: tl.constexpr,
                       HAS_CONSTRAINT: tl.constexpr, HAS_SOFT: tl.constexpr, BLOCK_SIZE: tl.constexpr):
        """Per hypothesis: logsumexp over its constrained tokens (over all tokens when none is allowed), and
        whether some hard-allowed token survives the soft rules."""
        row = tl.program_id(0)
        running_max = tl.full((), float("-inf"), tl.float32)
        running_sum = tl.zeros((), tl.float32)
        all_max = tl.full((), float("-inf"), tl.float32)
        all_sum = tl.zeros((), tl.float32)
        allowed_count = tl.zeros((), tl.int32)
        relaxed_count = tl.zeros((), tl.int32)
        for start in range(0, vocab, BLOCK_SIZE):
            offsets = start + tl.arange(0, BLOCK_SIZE)
            x, valid, keep = load_block(logits, constrained, row, offsets, vocab, HAS_CONSTRAINT)
            kept = tl.where(keep, x, float("-inf"))
            block_max = tl.max(kept, axis=0)
            new_max = tl.maximum(running_max, block_max)
            safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)
            running_sum = running_sum * tl.exp(running_max - safe_max) + tl.sum(tl.exp(kept - safe_max), axis=0)
            running_max = new_max
            new_all = tl.maximum(all_max, tl.max(x, axis=0))
            all_sum = all_sum * tl.exp(all_max - new_all) + tl.sum(tl.where(valid, tl.exp(x - new_all), 0.0), axis=0)
            all_max = new_all
            hard = keep & (offsets != BOS_ID) & (offsets != PAD_ID)
            allowed_count += tl.sum(hard.to(tl.int32), axis=0)
            if HAS_SOFT:
                banned = tl.load(soft_ban + row * vocab + offsets, mask=valid, other=0) != 0
                relaxed_count += tl.sum((hard & ~banned).to(tl.int32), axis=0)
        constrained_lse = running_max + tl.log(running_sum)
        all_lse = all_max + tl.log(all_sum)
        tl.store(log_normaliser + row, tl.where(running_max == float("-inf"), all_lse, constrained_lse))
        if HAS_SOFT:
            tl.store(use_relaxed + row, (relaxed_count > 0).to(tl.int8))
        else:
            tl.store(use_relaxed + row, (allowed_count > 0).to(tl.int8))

    @triton.jit
    def block_candidates(logits, constrained, soft_ban, log_normaliser, use_relaxed, at_max, forced_token,
                         hypothesis_scores, out_totals, out_tokens, out_lprobs, vocab: tl.constexpr, blocks, unkpen,
                         HAS_CONSTRAINT: tl.constexpr, HAS_SOFT: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                         TOP: tl.constexpr):
        """The TOP best (hypothesis score + log-prob) tokens of one vocabulary block of one hypothesis."""
        row = tl.program_id(0)
        block = tl.program_id(1)
        offsets = block * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        x, valid, allowed = load_block(logits, constrained, row, offsets, vocab, HAS_CONSTRAINT)
        allowed = allowed & (offsets != BOS_ID) & (offsets != PAD_ID)
        if HAS_SOFT:
            banned = tl.load(soft_ban + row * vocab + offsets, mask=valid, other=0) != 0
            relax = tl.load(use_relaxed + row) != 0
            allowed = allowed & ~(banned & relax)
        lprob = x - tl.load(log_normaliser + row)
        lprob = tl.where(offsets == UNK_ID, lprob - unkpen, lprob)
        if tl.load(at_max + row) != 0:
            allowed = valid & (offsets == EOS_ID)
            lprob = x - tl.load(log_normaliser + row)
        forced = tl.load(forced_token + row)
        if forced >= 0:
            allowed = valid & (offsets == forced)
            lprob = tl.zeros_like(lprob)
        lprob = tl.where(allowed, lprob, float("-inf"))
        total = tl.load(hypothesis_scores + row) + lprob
        base = (row * blocks + block) * TOP
        for rank in tl.static_range(TOP):
            best = tl.argmax(total, axis=0)
            chosen = offsets == block * BLOCK_SIZE + best
            tl.store(out_totals + base + rank, tl.max(total, axis=0))
            tl.store(out_tokens + base + rank, block * BLOCK_SIZE + best)
            tl.store(out_lprobs + base + rank, tl.sum(tl.where(chosen, lprob, 0.0), axis=0))
            total = tl.where(chosen, float("-inf"), total)


def soft_ban_mask(rules: StepRules, count: int, vocab: int, device: torch.device) -> Optional[torch.Tensor]:
    """The soft rules as an int8 [N, V] mask (min_len's </s> and the n-gram pairs), or None when there are none."""
    if not bool(rules.below_min.any()) and not rules.banned[0].numel():
        return None
    mask = torch.zeros(count, vocab, dtype=torch.int8, device=device)
    mask[:, EOS] = rules.below_min.to(torch.int8)
    mask[rules.banned[0], rules.banned[1]] = 1
    return mask


def fused_beam_candidates(logits: torch.Tensor, rules: StepRules, scores: torch.Tensor,
                          first_beam_only: torch.Tensor) -> Candidates:
    """The 2k best (beam, token) extensions per row from raw logits [N, V] (N = R x k, tempered, fp32): what
    beam_candidates(step_log_probs(logits, rules).view(R, k, V), scores [R, k], first_beam_only [R]) returns."""
    rows, beam = scores.shape
    count, vocab = logits.shape
    device = logits.device
    logits = logits.contiguous()
    hypothesis_scores = scores.clone()
    hypothesis_scores[:, 1:] = hypothesis_scores[:, 1:].masked_fill(first_beam_only.view(rows, 1), NEG_INF)
    constrained = rules.constrained.to(torch.int8).contiguous() if rules.constrained is not None else None
    soft = soft_ban_mask(rules, count, vocab, device)
    placeholder = torch.zeros(1, dtype=torch.int8, device=device)
    log_normaliser = torch.empty(count, dtype=torch.float32, device=device)
    use_relaxed = torch.empty(count, dtype=torch.int8, device=device)
    row_statistics[(count,)](
        logits, constrained if constrained is not None else placeholder, soft if soft is not None else placeholder,
        log_normaliser, use_relaxed, vocab,
        HAS_CONSTRAINT=constrained is not None, HAS_SOFT=soft is not None, BLOCK_SIZE=BLOCK)
    top = min(2 * beam, vocab)
    blocks = triton.cdiv(vocab, BLOCK)
    forced_token = torch.full((count,), -1, dtype=torch.int32, device=device)
    forced_token[rules.forced] = rules.forced_tokens.to(torch.int32)
    totals = torch.empty(count, blocks, top, dtype=torch.float32, device=device)
    tokens = torch.empty(count, blocks, top, dtype=torch.int32, device=device)
    lprobs = torch.empty(count, blocks, top, dtype=torch.float32, device=device)
    block_candidates[(count, blocks)](
        logits, constrained if constrained is not None else placeholder, soft if soft is not None else placeholder,
        log_normaliser, use_relaxed, rules.at_max.to(torch.int8), forced_token, hypothesis_scores.view(-1),
        totals, tokens, lprobs, vocab, blocks, float(rules.unkpen),
        HAS_CONSTRAINT=constrained is not None, HAS_SOFT=soft is not None, BLOCK_SIZE=BLOCK, TOP=top)
    per_row = blocks * top
    best, index = totals.view(rows, beam * per_row).topk(min(2 * beam, beam * vocab), dim=1)
    return Candidates(best, torch.div(index, per_row, rounding_mode="floor"),
                      tokens.view(rows, -1).gather(1, index).long(), lprobs.view(rows, -1).gather(1, index))
