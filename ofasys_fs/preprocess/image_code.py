"""The "image_code" preprocessor (alias image_vqgan): an image as the `<code>_i` tokens of an image tokenizer.

On the decoder (an IMAGE output) it is text-like: the codes are the target tokens, wrapped in `<s> ... </s>`
like text, constrained to the code ids, and generated as exactly rows x cols codes; `postprocess` turns
generated codes back into a PIL image. On the encoder the codes are one piece for the `image_code` adaptor,
which embeds them with 2-D positions over the grid. Values are images (any form `load_image` reads), or the
codes themselves: a list (flat or one list per grid row), an int32/int64 array or tensor, or a string of
space-separated numbers. The tokenizer is the model's `image_tokenizer` unless the slot names its own
(`tokenizer=PATH`); docs/image_generation.md.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Optional

import numpy as np
import torch

from ..contracts import ImageTokenizer, Preprocessor, SampleContext
from ..errors import ConfigError
from ..image_tokenizers.files import HASH_PREFIX, load_image_tokenizer, remembered
from ..image_tokenizers.images import image_tensor, to_pil
from ..registry import register_preprocessor
from .common import stack_items
from .config import DataConfig

CODE_TEXT = re.compile(r"\s*\d+(\s+\d+)*\s*")
CODE_DTYPES = (np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64)  # uint8 arrays are images
CACHE_ROWS = 200_000  # codes of images given by path or bytes, kept per process (encoded once per row)
PREPROCESS_NAME = "image_code"


def tokenizer_name(slot: Any) -> str:
    """How a slot names its tokenizer: its `tokenizer=` value, or '' for the model's image_tokenizer."""
    return slot.attrs.get("tokenizer") or ""


def code_slots(templates) -> list:
    """The image_code slots of some templates (both sides)."""
    return [slot for template in templates for slot in (*template.encoder, *template.decoder)
            if slot.modality != "PLAIN" and slot.preprocess == PREPROCESS_NAME]


def code_only_columns(templates) -> set:
    """Columns that only image_code slots read (their images can be stored as codes)."""
    coded = {slot.name for slot in code_slots(templates) if slot.name}
    others = {slot.name for template in templates for slot in (*template.encoder, *template.decoder)
              if slot.name and slot.modality != "PLAIN" and slot.preprocess != PREPROCESS_NAME}
    return coded - others


def resolve_image_tokenizers(default: Optional[str], templates) -> dict[str, ImageTokenizer]:
    """The tokenizers the templates' image_code slots need, by how they name them ('': `default`, a path)."""
    found: dict[str, ImageTokenizer] = {}
    for slot in code_slots(templates):
        name = tokenizer_name(slot)
        if name in found:
            continue
        path = name or default
        if not path:
            raise ConfigError(f"the slot {slot} makes image codes and needs an image tokenizer: set image_tokenizer="
                              f"PATH (Trainer(image_tokenizer=...), --image-tokenizer, model.image_tokenizer) or "
                              f"tokenizer=PATH on the slot; ofasys-train-image-tokenizer trains one")
        found[name] = load_image_tokenizer(path)
    return found


def tokenizer_for(slot: Any, data_cfg: DataConfig) -> ImageTokenizer:
    """The slot's tokenizer: the one the data config gives for its name (a content hash, as training records it,
    or a file), else its own file."""
    name = tokenizer_name(slot)
    if name in data_cfg.image_tokenizers:
        reference = data_cfg.image_tokenizers[name]
        return remembered(reference) if reference.startswith(HASH_PREFIX) else load_image_tokenizer(reference)
    if name:
        return load_image_tokenizer(name)
    raise ValueError("no image tokenizer: give the model's image_tokenizer=PATH (Trainer(image_tokenizer=...), "
                     "--image-tokenizer, model.image_tokenizer) or tokenizer=PATH on the slot")


@register_preprocessor(PREPROCESS_NAME, aliases=("image_vqgan",))
class ImageCodePreprocessor(Preprocessor):
    """IMAGE slot -> {"tokens": the rows x cols code ids, row by row}."""

    modality = "IMAGE"
    text_like = True  # as a decoder output; an encoder slot is a piece of its own (set per instance)
    generator = "code_sampling"  # the generator of an IMAGE output (sampled candidates, guidance, reranking)

    def __init__(self, slot: Any, vocab: Any, data_cfg: Optional[DataConfig] = None):
        super().__init__(slot, vocab, data_cfg if data_cfg is not None else DataConfig())
        self.text_like = slot.side == "decoder"
        self.tokenizer = tokenizer_for(slot, self.data_cfg)
        self.rows, self.cols = self.tokenizer.grid
        self.length = self.rows * self.cols
        self.token_range = vocab.range("code")
        if len(self.token_range) < self.tokenizer.num_codes:
            raise ValueError(f"its image tokenizer has {self.tokenizer.num_codes} codes, but the vocabulary only "
                             f"{len(self.token_range)} code ids (VocabConfig num_codes); leave num_codes unset to "
                             f"take the tokenizer's")
        if self.text_like and self.length + 1 > self.data_cfg.max_target_positions:
            raise ValueError(f"its image tokenizer makes {self.rows}x{self.cols} = {self.length} codes, which with "
                             f"</s> exceed the model's max_target_positions={self.data_cfg.max_target_positions}")
        self.cache: dict = {}

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        return {"tokens": self.codes(value, ctx.base_dir) + self.token_range.start}

    def codes(self, value: Any, base_dir: Optional[str] = None) -> torch.Tensor:
        """The value's rows x cols codes, row by row (an image is encoded once per process and value)."""
        key = cache_key(value, base_dir)
        codes = self.cache.get(key) if key is not None else None
        if codes is None:
            codes = self.given_codes(value)
            if codes is None:
                codes = self.encode_image(value, base_dir)
                if key is not None and len(self.cache) < CACHE_ROWS:
                    self.cache[key] = codes
        return codes

    def given_codes(self, value: Any) -> Optional[torch.Tensor]:
        """The codes of a value that holds them (None for an image); ValueError for a wrong count or range."""
        if isinstance(value, str) and CODE_TEXT.fullmatch(value):
            codes = [int(part) for part in value.split()]
        elif isinstance(value, (list, tuple)):
            codes = np.asarray(value, dtype=object).reshape(-1).tolist()
            if not all(isinstance(code, (int, np.integer)) and not isinstance(code, bool) for code in codes):
                raise ValueError(f"image codes given as a list must be integers, got {value!r:.80}")
        elif isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dtype != torch.uint8:
            codes = value.reshape(-1).tolist()
        elif isinstance(value, np.ndarray) and value.dtype.type in CODE_DTYPES:
            codes = value.reshape(-1).tolist()
        else:
            return None
        if len(codes) != self.length:
            raise ValueError(f"expected {self.length} image codes ({self.rows} x {self.cols}, the tokenizer's grid), "
                             f"got {len(codes)}")
        bad = [code for code in codes if not 0 <= code < self.tokenizer.num_codes]
        if bad:
            raise ValueError(f"image code {bad[0]} is outside the tokenizer's codes 0..{self.tokenizer.num_codes - 1}")
        return torch.tensor(codes, dtype=torch.long)

    @torch.no_grad()
    def encode_image(self, value: Any, base_dir: Optional[str]) -> torch.Tensor:
        size, channels = self.tokenizer.image_size, self.tokenizer.channels
        return self.tokenizer.encode(image_tensor(value, size, channels, base_dir)[None])[0].reshape(-1)

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return stack_items(items, "IMAGE codes")

    def decoding_options(self, vocab_size: int) -> dict:
        """What generating this output needs: the code ids only, exactly rows x cols of them."""
        allowed = torch.zeros(vocab_size, dtype=torch.bool)
        allowed[self.token_range.start:self.token_range.start + self.tokenizer.num_codes] = True
        return {"allowed_tokens": allowed, "min_len": self.length, "max_len_a": 0.0, "max_len_b": self.length}

    @torch.no_grad()
    def postprocess(self, tokens: list[int], row: Optional[dict] = None):
        """Generated code ids -> a PIL image (None when they are not a full grid of codes)."""
        codes = torch.tensor(tokens, dtype=torch.long) - self.token_range.start
        if codes.numel() != self.length or bool((codes < 0).any() | (codes >= self.tokenizer.num_codes).any()):
            return None
        device = next(self.tokenizer.parameters(), torch.zeros(0)).device
        return to_pil(self.tokenizer.decode(codes.view(1, self.rows, self.cols).to(device))[0])


def cache_key(value: Any, base_dir: Optional[str]) -> Optional[tuple]:
    """A key for values whose codes cannot change within a run: paths (with their folder), bytes and arrays."""
    if isinstance(value, str):
        return (base_dir, value) if len(value) < 4096 else ("text", hashlib.sha1(value.encode()).hexdigest())
    if isinstance(value, (bytes, bytearray)):
        return ("bytes", hashlib.sha1(value).hexdigest())
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.shape, hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest())
    return None
