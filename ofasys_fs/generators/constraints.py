"""Decoding constraints: which next tokens a hypothesis may take (vocabulary range, answer trie, repetition grammar).

A constraint is recomputed from a hypothesis' generated tokens at every step (the forced prefix excluded,
</s> never included), so beam reordering and finished rows leaving the batch need no constraint state.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Iterable, Optional, Protocol, Sequence, Union

import torch

from ..tokenizer import BOS, EOS, PAD

TokenSet = Union[range, Iterable[int], torch.Tensor]


class Constraint(abc.ABC):
    """Allowed next tokens of each hypothesis, from the tokens it generated so far."""

    @abc.abstractmethod
    def mask(self, generated: Sequence[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
        """BoolTensor [len(generated), vocab_size], True where the next token is allowed."""


def token_mask(tokens: TokenSet, vocab_size: int, what: str) -> torch.Tensor:
    """BoolTensor [vocab_size] of a range, an iterable of ids or a BoolTensor; ids are range-checked."""
    if isinstance(tokens, torch.Tensor) and tokens.dtype == torch.bool:
        if tokens.shape != (vocab_size,):
            raise ValueError(f"{what}: expected a BoolTensor of shape [{vocab_size}] (the vocabulary size), "
                             f"got {list(tokens.shape)}")
        return tokens.detach().cpu().clone()
    ids = torch.as_tensor(list(tokens), dtype=torch.long)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{what}: token ids must lie in [0, {vocab_size}), got ids from {int(ids.min())} "
                         f"to {int(ids.max())}")
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[ids] = True
    return mask


class VocabularyConstraint(Constraint):
    """A fixed set of allowed ids at every step (fairseq's constraint_range, BOX outputs' <bin> ids)."""

    def __init__(self, allowed: TokenSet, vocab_size: int, allow_eos: bool = True):
        self.allowed = token_mask(allowed, vocab_size, "allowed tokens")
        if allow_eos:
            self.allowed[EOS] = True
        if not self.allowed.any():
            raise ValueError("allowed tokens: the constraint allows no token at all (and allow_eos is off)")

    @classmethod
    def from_range(cls, start: int, end: int, vocab_size: int, allow_eos: bool = True) -> "VocabularyConstraint":
        """Ids start <= id < end (plus </s> when allow_eos)."""
        if not 0 <= start < end <= vocab_size:
            raise ValueError(f"constraint_range ({start}, {end}): expected 0 <= start < end <= {vocab_size} "
                             f"(the vocabulary size); end is exclusive")
        return cls(range(start, end), vocab_size, allow_eos)

    def mask(self, generated: Sequence[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
        check_vocab_size(self.allowed.numel(), vocab_size, "allowed tokens")
        return self.allowed.to(device).expand(len(generated), vocab_size)


class AnswerTrie(Protocol):
    """What TrieConstraint needs from a trie of tokenised answers (each ending in </s>)."""

    def allowed(self, prefix: list[int]) -> list[int]:
        """Token ids that extend `prefix` towards some answer (</s> when an answer ends there)."""


class TrieConstraint(Constraint):
    """Closed-set outputs: only continuations of some answer in the trie; the answer is done at its </s>."""

    def __init__(self, trie: AnswerTrie):
        if not callable(getattr(trie, "allowed", None)):
            raise TypeError(f"constraint_trie: expected an object with allowed(prefix) -> list[int] "
                            f"(ofasys_fs.data.trie), got {type(trie).__name__}")
        self.trie = trie

    def mask(self, generated: Sequence[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
        mask = torch.zeros(len(generated), vocab_size, dtype=torch.bool)
        for index, tokens in enumerate(generated):
            allowed = list(self.trie.allowed(list(tokens)))
            if any(not 0 <= token < vocab_size for token in allowed):
                raise ValueError(f"constraint_trie: allowed({list(tokens)}) returned ids outside the vocabulary "
                                 f"[0, {vocab_size}): {allowed}")
            mask[index, allowed] = True
        return mask.to(device)


@dataclasses.dataclass
class Segment:
    """One part of a repeated group: `length` tokens from `tokens`, or (length None) one or more of them."""

    tokens: torch.Tensor  # BoolTensor [V]
    length: Optional[int]
    ids: frozenset = dataclasses.field(init=False)  # the same tokens: set membership is cheaper than indexing

    def __post_init__(self) -> None:
        self.ids = frozenset(self.tokens.nonzero().flatten().tolist())


class RepetitionGrammar(Constraint):
    """The decoder repetition group of docs/design.md §4, e.g. `( [BOX] [TEXT] )*`: 4 bins, a label, bins or </s>, ...

    A small state machine per hypothesis over its generated tokens: the state is (segment, tokens in that
    segment, completed repeats). </s> is allowed only at a group boundary (also before the first group:
    an empty list). A variable-length segment ends when a token of the next segment arrives, so its
    tokens must be disjoint from the next segment's (and from </s> when it is the last).
    """

    def __init__(self, segments: Sequence[tuple[TokenSet, Optional[int]]], vocab_size: int,
                 max_repeat: Optional[int] = None):
        if not segments:
            raise ValueError("repetition grammar: give at least one (tokens, length) segment")
        if max_repeat is not None and max_repeat < 1:
            raise ValueError(f"repetition grammar: max_repeat must be >= 1 or None, got {max_repeat}")
        self.vocab_size, self.max_repeat = vocab_size, max_repeat
        self.segments = []
        for index, (tokens, length) in enumerate(segments):
            mask = token_mask(tokens, vocab_size, f"repetition grammar segment {index}")
            if length is not None and length < 1:
                raise ValueError(f"repetition grammar segment {index}: length must be >= 1 or None, got {length}")
            if not mask.any() or mask[[BOS, PAD, EOS]].any():
                raise ValueError(f"repetition grammar segment {index}: needs at least one token and no <s>, "
                                 f"<pad> or </s>")
            self.segments.append(Segment(mask, length))
        self.eos_only = torch.zeros(vocab_size, dtype=torch.bool)
        self.eos_only[EOS] = True
        for index, segment in enumerate(self.segments):
            following = self.segments[(index + 1) % len(self.segments)].tokens
            if segment.length is None and (segment.tokens & following).any():
                raise ValueError(f"repetition grammar segment {index} has a variable length, so its tokens must "
                                 f"not overlap those of the segment after it (where it would end is ambiguous)")

    @classmethod
    def detection(cls, vocab, max_repeat: Optional[int] = None) -> "RepetitionGrammar":
        """`( [BOX] [TEXT] )*`: 4 <bin> ids, then one or more text ids, repeated; </s> between objects."""
        return cls([(vocab.range("bin"), 4), (vocab.range("text"), None)], len(vocab), max_repeat)

    def advance(self, segment: int, repeats: int) -> tuple[int, int]:
        """(segment, repeats) after `segment` is complete."""
        return (segment + 1, repeats) if segment + 1 < len(self.segments) else (0, repeats + 1)

    def state_after(self, tokens: Sequence[int]) -> Optional[tuple[int, int, int]]:
        """(segment, tokens in it, completed repeats) after `tokens`, or None if they break the grammar."""
        segment, count, repeats = 0, 0, 0
        for token in tokens:
            current = self.segments[segment]
            if current.length is None and count > 0 and token not in current.ids:
                (segment, repeats), count = self.advance(segment, repeats), 0
                current = self.segments[segment]
            past_max_repeat = self.max_repeat is not None and repeats >= self.max_repeat
            if token not in current.ids or (segment == 0 and count == 0 and past_max_repeat):
                return None
            count += 1
            if current.length == count:
                (segment, repeats), count = self.advance(segment, repeats), 0
        return segment, count, repeats

    def start_allowed(self, segment: int, repeats: int) -> torch.Tensor:
        """Allowed tokens where `segment` starts: at a group boundary also </s> (and no new group past max_repeat)."""
        if segment > 0:
            return self.segments[segment].tokens
        if self.max_repeat is not None and repeats >= self.max_repeat:
            return self.eos_only
        return self.segments[0].tokens | self.eos_only

    def allowed_after(self, tokens: Sequence[int]) -> torch.Tensor:
        """BoolTensor [V] of the tokens that may follow `tokens` (none when they already break the grammar)."""
        state = self.state_after(tokens)
        if state is None:
            return torch.zeros(self.vocab_size, dtype=torch.bool)
        segment, count, repeats = state
        if count == 0:
            return self.start_allowed(segment, repeats)
        current = self.segments[segment]
        if current.length is None:
            return current.tokens | self.start_allowed(*self.advance(segment, repeats))
        return current.tokens

    def mask(self, generated: Sequence[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
        check_vocab_size(self.vocab_size, vocab_size, "repetition grammar")
        if not generated:
            return torch.zeros(0, vocab_size, dtype=torch.bool, device=device)
        return torch.stack([self.allowed_after(tokens) for tokens in generated]).to(device)


def check_vocab_size(expected: int, got: int, what: str) -> None:
    if expected != got:
        raise ValueError(f"{what}: built for a vocabulary of {expected} ids but the model outputs {got} logits")
