"""A prefix tree over token-id sequences: the closed answer set of a task (training masks and decoding)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


class Trie:
    """Token-id sequences sharing prefixes; `allowed(prefix)` lists the ids that may follow a prefix."""

    def __init__(self, sequences: Iterable[Sequence[int]] = ()):
        self.root: dict = {}
        self.size = 0
        for sequence in sequences:
            self.add(sequence)

    def add(self, sequence: Sequence[int]) -> None:
        """Insert one sequence (a duplicate is ignored)."""
        node = self.root
        for token in sequence:
            node = node.setdefault(int(token), {})
        if None not in node:
            node[None] = True  # end-of-sequence marker
            self.size += 1

    def _node(self, prefix: Sequence[int]):
        node = self.root
        for token in prefix:
            node = node.get(int(token))
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Sorted ids that extend `prefix` towards some sequence; [] when the prefix leads nowhere."""
        node = self._node(prefix)
        return sorted(token for token in node if token is not None) if node else []

    def __contains__(self, sequence: Sequence[int]) -> bool:
        """Whether `sequence` was added (a whole sequence, not just a prefix)."""
        node = self._node(sequence)
        return bool(node) and None in node

    def __len__(self) -> int:
        return self.size
