"""The vocabulary of an OFA checkpoint, with ids identical to OFA's (docs/pretrained.md, "Vocabulary"):

    0 <s>  1 <pad>  2 </s>  3 <unk> | GPT-2 BPE tokens in dict.txt order | <mask> | <code_*> | <bin_*>

fairseq and OFASys files: `--bpe-dir` with OFA's encoder.json, vocab.bpe and dict.txt; Hugging Face: vocab.json
(BART's, whose ids already are OFA's) and merges.txt. The code and bin counts come from the token names where the
source lists them (Hugging Face's added_tokens.json, OFASys's global_dict_indices), else from the run's settings;
the total must equal the embedding rows. OFASys's rows are then reordered to these ids through their names.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

import torch

from ..errors import CheckpointError
from ..tokenizer import SPECIAL_TOKENS, gpt2_tokenizer_json, read_fairseq_dict
from ..vocab import Vocabulary, VocabConfig
from .ofa_sources import HUGGINGFACE, OFASource

BPE_FILES = ("encoder.json", "vocab.bpe", "dict.txt")
OFA_NUM_BINS, OFA_NUM_CODES = 1000, 8192
HF_ADDED_TOKENS = "added_tokens.json"
OFASYS_TEXT, OFASYS_CODE, OFASYS_BIN, OFASYS_PHONE = "<text>_", "<code>_", "<bin>_", "<phone>_"


def bpe_file(folder: Optional[str], name: str, layout: str) -> str:
    if folder is None:
        raise CheckpointError(f"an OFA {layout} checkpoint needs --bpe-dir: the folder with OFA's "
                              f"{', '.join(BPE_FILES)} (OFA's utils/BPE)")
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise CheckpointError(f"--bpe-dir {folder} has no {name} (expected OFA's {', '.join(BPE_FILES)})")
    return path


def source_vocabulary(source: OFASource, bpe_dir: Optional[str]) -> tuple[Vocabulary, list[Optional[int]]]:
    """The vocabulary whose ids are the source's embedding rows (OFASys: after `ofasys_rows` reorders them), and
    the tokenizer id behind each text id (None: a dict.txt filler)."""
    embedding = source.weights.get("encoder.embed_tokens.weight")
    # OFASys rows are reordered through their names (unnamed ones listed); the other layouts' rows are our ids
    rows = None if embedding is None or source.token_rows is not None else embedding.shape[0]
    if source.layout == HUGGINGFACE:
        tokenizer_json = gpt2_tokenizer_json(os.path.join(source.path, "vocab.json"),
                                             os.path.join(source.path, "merges.txt"))
        text_ids = bart_text_ids(tokenizer_json)
        names = list(read_added_tokens(source.path))
    else:
        tokenizer_json = gpt2_tokenizer_json(bpe_file(bpe_dir, "encoder.json", source.layout),
                                             bpe_file(bpe_dir, "vocab.bpe", source.layout))
        text_ids = read_fairseq_dict(bpe_file(bpe_dir, "dict.txt", source.layout), token_count(tokenizer_json))
        names = sorted(source.token_rows or (), key=(source.token_rows or {}).get)
    config = vocab_config(names, source.settings, rows, len(text_ids), source.path,
                          all_named=source.token_rows is not None)
    vocab = Vocabulary(config, tokenizer_json, text_ids)
    if rows is not None and len(vocab) != rows:
        sizes = {kind: len(vocab.range(kind)) for kind in ("special", "text", "mask", "code", "bin", "phone")}
        raise CheckpointError(f"{source.path}: its embedding has {rows} rows, but the vocabulary built from its files "
                              f"has {len(vocab)} ids {sizes}; give the BPE files the checkpoint was trained with")
    return vocab, text_ids


def token_count(tokenizer_json: str) -> int:
    return len(json.loads(tokenizer_json)["model"]["vocab"])


def bart_text_ids(tokenizer_json: str) -> list[int]:
    """BART's vocab.json already holds fairseq's ids (<s>=0 ... <mask> last): text ids are the tokenizer ids
    between the four specials and <mask>."""
    vocab = json.loads(tokenizer_json)["model"]["vocab"]
    specials = [vocab.get(token) for token in SPECIAL_TOKENS]
    if specials != list(range(len(SPECIAL_TOKENS))) or "<mask>" not in vocab:
        raise CheckpointError(f"vocab.json is not OFA's (BART's) vocabulary: expected {list(SPECIAL_TOKENS)} at ids "
                              f"0-3 and a <mask> token, got ids {specials}")
    return list(range(len(SPECIAL_TOKENS), vocab["<mask>"]))


def read_added_tokens(folder: str) -> dict[str, int]:
    """Hugging Face's added_tokens.json (<code_*>, <bin_*>), when the folder has one."""
    path = os.path.join(folder, HF_ADDED_TOKENS)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def numbered(names: list[str], pattern: str) -> int:
    """How many of `names` match `pattern` (one number group); they must be numbered 0..N-1."""
    numbers = sorted(int(match.group(1)) for name in names if (match := re.fullmatch(pattern, name)))
    if numbers != list(range(len(numbers))):
        raise CheckpointError(f"the tokens {pattern} are not numbered 0..N-1")
    return len(numbers)


def vocab_config(names: list[str], settings: dict[str, Any], rows: Optional[int], text_size: int,
                 path: str, all_named: bool = False) -> VocabConfig:
    """Codes and bins from the token names when listed (Hugging Face <code_i>/<bin_i>, OFASys <code>_i/<bin>_i;
    `all_named`: the names list every row, as OFASys's do), else from the run's settings (code_dict_size,
    num_bins), else OFA's counts with the rest of the rows as codes."""
    codes = numbered(names, r"<code_(\d+)>") or numbered(names, re.escape(OFASYS_CODE) + r"(\d+)")
    bins = numbered(names, r"<bin_(\d+)>") or numbered(names, re.escape(OFASYS_BIN) + r"(\d+)")
    phones = tuple(name[len(OFASYS_PHONE):] for name in names if name.startswith(OFASYS_PHONE))
    if all_named:
        return VocabConfig(num_codes=codes, num_bins=bins, phones=phones, reserved=0)
    bins = bins or int(settings.get("num_bins", OFA_NUM_BINS))
    if not codes:
        codes = int(settings.get("code_dict_size", OFA_NUM_CODES))
        if rows is not None and "code_dict_size" not in settings:
            codes = rows - len(SPECIAL_TOKENS) - text_size - 1 - bins - len(phones)
    if codes < 0:
        raise CheckpointError(f"{path}: its {rows} embedding rows are fewer than the {text_size} text tokens and "
                              f"{bins} bins its files name")
    return VocabConfig(num_codes=codes, num_bins=bins, phones=phones, reserved=0)


def ofasys_rows(embedding: torch.Tensor, token_rows: dict[str, int], vocab: Vocabulary,
                text_ids: list[Optional[int]]) -> tuple[torch.Tensor, list[str]]:
    """OFASys's embedding rows in our id order, through global_dict_indices (OFASys names text rows
    `<text>_<dict.txt symbol>`); also the names of the rows no id of ours uses."""
    fillers = iter(range(len(text_ids)))  # fairseq's dict.txt fillers are madeupword0000, 0001, ...
    text = [OFASYS_TEXT + (str(token) if token is not None else f"madeupword{next(fillers):04d}") for token in text_ids]
    names = [*SPECIAL_TOKENS, *text, "<mask>", *(f"{OFASYS_CODE}{i}" for i in range(len(vocab.range("code")))),
             *(f"{OFASYS_BIN}{i}" for i in range(len(vocab.range("bin")))),
             *(f"{OFASYS_PHONE}{phone}" for phone in vocab.config.phones)]
    missing = [name for name in names if name not in token_rows]
    if missing:
        raise CheckpointError(f"the checkpoint's global_dict_indices has no row for {missing[:5]} (ids of OFA's "
                              f"vocabulary); give the BPE files it was trained with")
    unused = sorted(set(token_rows) - set(names), key=token_rows.__getitem__)
    return embedding[torch.tensor([token_rows[name] for name in names])], unused
