"""Building byte-level BPE tokenizers (HF `tokenizers`): training one, or reading GPT-2/fairseq files.

These produce the tokenizer JSON that `ofasys_fs.vocab.Vocabulary` wraps; nothing here downloads.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .errors import DataError

logger = logging.getLogger(__name__)

# Trained at tokenizer ids 0-3 so that a trained tokenizer's ids equal the vocabulary's ids (OFA order).
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
BOS, PAD, EOS, UNK = range(len(SPECIAL_TOKENS))  # the fixed ids every vocabulary starts with

PathLike = Union[str, Path]


def _byte_level(model: models.Model) -> Tokenizer:
    """Wrap a BPE model with GPT-2's byte-level pre-tokenizer and decoder (no prefix space added)."""
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _checked_texts(texts: Iterable[str]) -> Iterator[str]:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"train_tokenizer: text #{index} is a {type(text).__name__}, expected str")
        yield text


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_path: Optional[PathLike] = None) -> str:
    """Train a byte-level BPE with `<s> <pad> </s> <unk>` at ids 0-3; return (and optionally write) its JSON.

    Training is deterministic for a given corpus order. A corpus too small to fill `vocab_size` gives a
    smaller vocabulary (logged as a warning).
    """
    minimum = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"train_tokenizer: vocab_size must be an int >= {minimum} "
            f"({len(SPECIAL_TOKENS)} special tokens + 256 byte symbols), got {vocab_size!r}"
        )
    tokenizer = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_checked_texts(texts), trainer)
    if tokenizer.get_vocab_size() < vocab_size:
        logger.warning(
            "train_tokenizer: the corpus only supports %d tokens (asked for %d)", tokenizer.get_vocab_size(), vocab_size
        )
    tokenizer_json = tokenizer.to_str()
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(tokenizer_json, encoding="utf-8")
    return tokenizer_json


def _existing_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"GPT-2 {what} not found: {path}")
    return path


def gpt2_tokenizer_json(vocab_json_path: PathLike, merges_txt_path: PathLike) -> str:
    """The tokenizer JSON of GPT-2's byte-level BPE given by its `vocab.json` and `merges.txt` paths."""
    vocab_path = _existing_file(vocab_json_path, "vocab.json")
    merges_path = _existing_file(merges_txt_path, "merges.txt")
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"GPT-2 vocab.json {vocab_path} is not valid JSON: {err}") from None
    if not isinstance(vocab, dict):
        raise DataError(f"GPT-2 vocab.json {vocab_path} must map token strings to ids, got a {type(vocab).__name__}")
    missing = [symbol for symbol in pre_tokenizers.ByteLevel.alphabet() if symbol not in vocab]
    if missing:
        # Without every byte symbol, text containing that byte could not be encoded faithfully.
        raise DataError(
            f"GPT-2 vocab.json {vocab_path} lacks {len(missing)} of the 256 byte-level symbols "
            f"(e.g. {sorted(missing)[:5]}); it is not a byte-level BPE vocabulary"
        )
    try:
        model = models.BPE.from_file(str(vocab_path), str(merges_path))
    except Exception as err:  # tokenizers raises a bare Exception on malformed merges
        raise DataError(f"cannot read GPT-2 BPE files {vocab_path} and {merges_path}: {err}") from None
    return _byte_level(model).to_str()


def read_fairseq_dict(dict_txt_path: PathLike, tokenizer_size: int) -> list[Optional[int]]:
    """The tokenizer id behind each line of a fairseq/OFA `dict.txt` (`<gpt2-id> <count>` per line), in order.

    Lines whose symbol is not an integer (fairseq's `madeupword0000` fillers) keep their slot as None.
    """
    path = Path(dict_txt_path)
    if not path.is_file():
        raise DataError(f"fairseq dict.txt not found: {path}")
    token_ids: list[Optional[int]] = []
    line_of_id: dict[int, int] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if fields[-1:] == ["#fairseq:overwrite"]:
            fields = fields[:-1]
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{line_number}: expected '<symbol> <count>', got {line!r}")
        symbol = fields[0]
        if not symbol.isdigit():
            token_ids.append(None)
            continue
        token_id = int(symbol)
        if token_id >= tokenizer_size:
            raise DataError(
                f"{path}:{line_number}: GPT-2 id {token_id} is not in vocab.json (ids 0..{tokenizer_size - 1})"
            )
        if token_id in line_of_id:
            raise DataError(f"{path}:{line_number}: GPT-2 id {token_id} already listed on line {line_of_id[token_id]}")
        line_of_id[token_id] = line_number
        token_ids.append(token_id)
    if not token_ids:
        raise DataError(f"fairseq dict.txt {path} is empty")
    return token_ids
