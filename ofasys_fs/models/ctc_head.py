"""The CTC phone head of the generalist model: encoder states -> logits over (blank, phones).

It lives in the model (not the criterion) so that it is trained by the optimizer, saved in checkpoints
and run inside the model's forward (DDP sees it); the criterion label_smoothed_ce_ctc reads its logits.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from .config import ModelConfig

AUDIO_ADAPTOR = "audio_fbank"  # ctc_head=None builds the head when this adaptor is built


class CTCHead(nn.Module):
    """Linear map of encoder states [.., D] -> [.., 1 + P]: output 0 is the CTC blank, output i >= 1 is the
    vocabulary's phone id `phones.start + i - 1`."""

    def __init__(self, embed_dim: int, phones: range):
        super().__init__()
        self.phones = phones
        self.proj = nn.Linear(embed_dim, 1 + len(phones))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def ctc_phone_range(cfg: ModelConfig, vocab: object, adaptor_names: Iterable[str], vocab_size: int) -> Optional[range]:
    """The phone ids a CTC head covers, or None when the model gets no head.

    ctc_head=False: none. True: required. None: when the audio_fbank adaptor is built and phones are known.
    Phones come from ctc_phone_start/ctc_num_phones (set by an earlier build, so a bare vocab size rebuilds
    the same head) or else from the Vocabulary's phone range.
    """
    wanted = cfg.ctc_head if cfg.ctc_head is not None else AUDIO_ADAPTOR in adaptor_names
    if not wanted:
        return None
    from_vocab = vocab.range("phone") if hasattr(vocab, "range") else None
    if (cfg.ctc_phone_start is None) != (cfg.ctc_num_phones is None):
        raise ValueError("model config: set both ctc_phone_start and ctc_num_phones, or neither")
    phones = from_vocab
    if cfg.ctc_phone_start is not None:
        phones = range(cfg.ctc_phone_start, cfg.ctc_phone_start + cfg.ctc_num_phones)
        if from_vocab is not None and from_vocab != phones:
            raise ValueError(f"model config: the CTC head covers phone ids {phones} (ctc_phone_start/ctc_num_phones) "
                             f"but the vocabulary's phones are {from_vocab}")
    if not phones:
        if cfg.ctc_head:
            raise ValueError("model config ctc_head=True needs phone ids: build with a Vocabulary that has phones, "
                             "or set ctc_phone_start and ctc_num_phones")
        return None
    if phones.start < 0 or phones.stop > vocab_size:
        raise ValueError(f"model config: CTC phone ids {phones} lie outside the vocabulary of {vocab_size} ids")
    return phones
