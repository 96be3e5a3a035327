"""Exhaustive closed-set scoring (OFA's all-candidate evaluation): teacher-forced log-prob of every answer."""
from __future__ import annotations

from typing import Sequence

import torch

from ..tokenizer import BOS, EOS, PAD
from .prefix import forced_prefixes

LOGITS_PER_CALL = 2**26  # decoder logits (rows x positions x vocabulary) per decoder call


def checked_candidates(candidates: Sequence[Sequence[int]], vocab_size: int) -> list[list[int]]:
    """Candidate answers as lists of ids without a trailing </s> (one is accepted and removed)."""
    if not candidates:
        raise ValueError("candidates: the closed set is empty; give at least one tokenised answer")
    result = []
    for index, candidate in enumerate(candidates):
        tokens = [int(token) for token in candidate]
        if tokens and tokens[-1] == EOS:
            tokens = tokens[:-1]
        if any(token in (BOS, PAD, EOS) or not 0 <= token < vocab_size for token in tokens):
            raise ValueError(f"candidate {index} {list(candidate)}: expected token ids in [0, {vocab_size}) without "
                             f"<s>/<pad> (and </s> only at the end)")
        result.append(tokens)
    return result


def candidate_log_probs(model, sample: dict, candidates: Sequence[Sequence[int]]) -> torch.Tensor:
    """FloatTensor [B, C, L + 1]: log-prob of each token of each candidate then </s>, 0 after its end.

    Every row scores every candidate after its own forced prefix (whose tokens are not scored), given
    the row's encoder output; rows x candidates are batched into as few decoder calls as memory allows.
    """
    encoder_out = model.encoder(sample["net_input"]["encoder"])
    rows = encoder_out.x.size(0)
    device = encoder_out.x.device
    candidates = checked_candidates(candidates, model_vocab_size(model))
    prefix, prefix_lengths = forced_prefixes(sample, rows)
    prefixes = [prefix[row, :int(prefix_lengths[row])].tolist() for row in range(rows)]
    longest = max(len(candidate) for candidate in candidates) + 1
    positions = max(len(p) for p in prefixes) + longest
    per_call = max(1, LOGITS_PER_CALL // (rows * positions * model_vocab_size(model)))
    trie = AnswerTrie(candidates, device)
    chunks = []
    for start in range(0, len(candidates), per_call):
        chunk = candidates[start:start + per_call]
        order = torch.arange(rows, device=device).repeat_interleave(len(chunk))
        pairs = [(prefixes[row], candidate) for row in range(rows) for candidate in chunk]
        inputs, targets = teacher_forcing_batch(pairs, device)
        logits, _ = model.decoder(inputs, model.reorder_encoder_out(encoder_out, order))
        logits = logits.float()
        normaliser = trie.log_normaliser(logits, pairs, targets.size(1))
        token_lprobs = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) - normaliser
        token_lprobs = token_lprobs.masked_fill(targets.lt(0), 0.0)
        chunks.append(answer_positions(token_lprobs, [len(p) for p, _ in pairs], longest).view(rows, len(chunk), -1))
    return torch.cat(chunks, dim=1)


class AnswerTrie:
    """The candidates' prefix tree: at each answer position the log-softmax is taken over the next tokens the
    closed set allows there, as training's constraint-aware loss does (so scores equal trie-constrained beams)."""

    def __init__(self, candidates: list[list[int]], device: torch.device):
        nodes: dict[tuple, set] = {}
        for candidate in candidates:
            sequence = [*candidate, EOS]
            for i, token in enumerate(sequence):
                nodes.setdefault(tuple(sequence[:i]), set()).add(token)
        self.node_index = {prefix: i for i, prefix in enumerate(nodes)}
        self.tokens = torch.tensor(sorted(set().union(*nodes.values())), device=device)
        column = {int(token): i for i, token in enumerate(self.tokens.tolist())}
        self.children = torch.zeros(len(nodes), len(self.tokens), dtype=torch.bool, device=device)
        for prefix, following in nodes.items():
            self.children[self.node_index[prefix], [column[t] for t in following]] = True

    def log_normaliser(self, logits: torch.Tensor, pairs: list[tuple[list[int], list[int]]], length: int):
        """[P, length]: logsumexp of the logits over the allowed next tokens at each answer position (0 elsewhere)."""
        nodes = torch.full((len(pairs), length), -1, dtype=torch.long)
        for index, (prefix, answer) in enumerate(pairs):
            for i in range(len(answer) + 1):
                nodes[index, len(prefix) + i] = self.node_index[tuple(answer[:i])]
        nodes = nodes.to(logits.device)
        allowed = self.children[nodes.clamp(min=0)]
        subset = logits[..., self.tokens].masked_fill(~allowed, float("-inf")).logsumexp(-1)
        return subset.masked_fill(nodes.lt(0), 0.0)


def score_candidates(model, sample: dict, candidates: Sequence[Sequence[int]]) -> torch.Tensor:
    """FloatTensor [B, C]: summed log-prob of each candidate plus </s> for each row (no length penalty)."""
    return candidate_log_probs(model, sample, candidates).sum(dim=-1)


def teacher_forcing_batch(pairs: list[tuple[list[int], list[int]]], device: torch.device):
    """Decoder inputs `<s> prefix answer` and targets (-1 on the prefix and padding), right-padded."""
    length = max(len(prefix) + len(answer) for prefix, answer in pairs) + 1
    inputs = torch.full((len(pairs), length), PAD, dtype=torch.long)
    targets = torch.full((len(pairs), length), -1, dtype=torch.long)
    for index, (prefix, answer) in enumerate(pairs):
        sequence = [BOS, *prefix, *answer, EOS]
        inputs[index, :len(sequence) - 1] = torch.tensor(sequence[:-1])
        targets[index, len(prefix):len(sequence) - 1] = torch.tensor(sequence[len(prefix) + 1:])
    return inputs.to(device), targets.to(device)


def answer_positions(token_lprobs: torch.Tensor, prefix_lengths: list[int], width: int) -> torch.Tensor:
    """[N, width]: each row's log-probs from its prefix length on (left-aligned answers), 0-padded."""
    padded = torch.nn.functional.pad(token_lprobs, (0, width))
    offsets = torch.tensor(prefix_lengths, device=token_lprobs.device)[:, None]
    index = offsets + torch.arange(width, device=token_lprobs.device)[None, :]
    return padded.gather(1, index)


def model_vocab_size(model) -> int:
    """The number of output logits (the shared embedding table's rows)."""
    size = getattr(model, "vocab_size", None)
    if size is None:
        raise ValueError("generation: the model has no vocab_size; build it first (GeneralistModel.build)")
    return int(size)
