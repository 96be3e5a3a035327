"""ofasys-preprocess as a library call: store a data file or folder losslessly as one split of a shard folder
(docs/design.md §10, §15, §12), optionally checking every row against an instruction and training a tokenizer.
User guide: docs/data_format.md, section "ofasys-preprocess"."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Callable, Optional

from ..errors import ConfigError, DataError
from ..instruction import Instruction
from ..preprocess.config import DataConfig
from ..preprocess.image_code import code_only_columns, code_slots, resolve_image_tokenizers, tokenizer_name
from ..registry import import_user_dir
from ..tokenizer import train_tokenizer
from ..vocab import VocabConfig, Vocabulary
from .media_columns import choose_media_columns
from .preprocess_input import open_input, sample_rows
from .row_preparer import RowPreparer
from .rows import IMAGE_CODES_KEY, RowSource
from .shard_writing import TOKENIZER_FILE, log_skipped_row, write_split
from .shards import MANIFEST, is_shard_dir, read_manifest
from .text_corpus import default_text_columns, tokenizer_corpus

DEFAULT_VOCAB_SIZE = 8192


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """What to shard and how; the fields are the ofasys-preprocess flags (docs/data_format.md)."""

    input: str  # data file or folder to read
    destdir: str  # shard folder to write (other splits in it are kept)
    split: str = "train"
    instruction: Optional[str] = None  # validate every row by binding and preprocessing it with this
    workers: int = 1  # processes reading and validating rows
    skip_bad_rows: bool = False  # skip (report, count in the manifest) failing rows instead of stopping
    media_columns: Optional[Sequence[str]] = None  # default: the instruction's media slots, else detected
    train_tokenizer: bool = False  # train a byte-level BPE on the text columns and save it as TOKENIZER_FILE
    vocab_size: int = DEFAULT_VOCAB_SIZE
    text_columns: Optional[Sequence[str]] = None  # default: every string column that is not media
    image_tokenizer: Optional[str] = None  # of the instruction's image_code slots (IMAGE outputs)
    image_codes: bool = False  # store the codes of columns only image_code slots read, instead of their images
    user_dirs: Sequence[str] = ()  # plugin packages to import first


def checking_config(instruction: Instruction) -> DataConfig:
    """The data config rows are checked with. No model is known here, so an IMAGE slot's own `size` may exceed the
    default image side: training checks it against the model."""
    sides = [slot.attrs.get("size") or 0 for slot in instruction.encoder if slot.modality == "IMAGE"]
    return DataConfig(image_size=max([DataConfig.image_size, *sides]))


def preprocess(options: PreprocessOptions, on_skip: Callable[[str], None] = log_skipped_row) -> dict:
    """The whole run; returns the committed manifest. Bad input raises DataError or ConfigError (or another
    ValueError/OSError from the data); rows skipped with `skip_bad_rows` are reported to `on_skip`."""
    for user_dir in options.user_dirs:
        import_user_dir(user_dir)
    instruction = Instruction.parse(options.instruction) if options.instruction is not None else None
    source, input_media = open_input(options.input, options.split)
    samples = sample_rows(source)
    media_columns = choose_media_columns(options.media_columns, instruction, samples, source.base_dir) | input_media
    vocab, tokenizer_json = choose_vocabulary(options, source, samples, media_columns)
    check_tokenizer_agrees(options.destdir, vocab)
    data_cfg, code_columns, extra = None, frozenset(), {"source": options.input}
    if instruction is not None:
        data_cfg = checking_config(instruction)
    if instruction is not None and code_slots([instruction]):
        tokenizers = resolve_image_tokenizers(options.image_tokenizer, [instruction])  # a bad file fails here, first
        default = {"": os.path.abspath(options.image_tokenizer)} if options.image_tokenizer else {}
        data_cfg = dataclasses.replace(data_cfg, image_tokenizers=default)  # workers load the file themselves
        if options.image_codes:
            code_columns = frozenset(code_only_columns([instruction]))
            extra[IMAGE_CODES_KEY] = {slot.name: tokenizers[tokenizer_name(slot)].content_hash
                                      for slot in code_slots([instruction]) if slot.name in code_columns}
    elif options.image_codes:
        raise ConfigError("--image-codes stores the codes of image_code slots (IMAGE outputs); the instruction has "
                          "none")
    preparer = RowPreparer(source, frozenset(media_columns - code_columns), options.split, options.instruction, vocab,
                           data_cfg, code_columns)
    if instruction is not None:
        preparer.encoder()
    if options.instruction:
        extra["instruction"] = options.instruction
    return write_split(preparer, options.destdir, extra, workers=options.workers,
                       skip_bad_rows=options.skip_bad_rows, vocab=vocab, tokenizer_json=tokenizer_json,
                       on_skip=on_skip)


def choose_vocabulary(options: PreprocessOptions, source: RowSource, samples: list[dict],
                      media_columns: set[str]) -> tuple[Optional[Vocabulary], Optional[str]]:
    """(vocabulary to validate and hash with, trained tokenizer JSON to save or None)."""
    if options.train_tokenizer:
        columns = list(options.text_columns or default_text_columns(samples, media_columns))
        if not columns:
            raise ConfigError(f"--train-tokenizer: no text columns found in {source.description}; "
                              f"name them with --text-columns a,b")
        tokenizer_json = train_tokenizer(tokenizer_corpus(source, columns), options.vocab_size)
        return Vocabulary(VocabConfig(), tokenizer_json), tokenizer_json
    saved = os.path.join(options.destdir, TOKENIZER_FILE)
    if os.path.isfile(saved) and is_shard_dir(options.destdir):
        return Vocabulary.from_tokenizer_file(saved), None  # the tokenizer trained for another split
    return (Vocabulary.default() if options.instruction is not None else None), None


def check_tokenizer_agrees(destdir: str, vocab: Optional[Vocabulary]) -> None:
    """Refuse before writing when the folder's other splits were checked with another tokenizer."""
    if vocab is None or not is_shard_dir(destdir):
        return
    recorded = read_manifest(destdir).get("tokenizer_hash")
    if recorded not in (None, vocab.tokenizer_hash):
        raise DataError(f"{destdir}: {MANIFEST} records tokenizer {recorded} for its splits, but this run uses "
                        f"{vocab.tokenizer_hash}; write to another --destdir, or preprocess with the same "
                        f"tokenizer")
