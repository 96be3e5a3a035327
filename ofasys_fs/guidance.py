"""Classifier-free guidance, one mechanism for every output generated with it (IMAGE codes, MOTION).

The unconditional input is OFASys's empty prompt, made on the collated encoder input (`drop_prompt`), so a
generator that guides needs nothing but the sample it is given. Training replaces the prompt of a share of rows by
the same empty prompt (`with_condition_dropout`, the engine's `condition_dropout`), so that one model learns the
conditional and the unconditional prediction whatever its criterion (docs/design.md §11).
"""
from __future__ import annotations

from typing import Optional

import torch

from .errors import ConfigError
from .rng import rng_for
from .tokenizer import BOS, EOS, PAD


# In a non-text encoder piece: BoolTensor [B], rows whose piece the encoder masks out whatever its adaptor returns
HIDDEN_ROWS = "hidden_rows"


def drop_prompt(pieces: list[dict], rows: Optional[torch.Tensor] = None) -> list[dict]:
    """Encoder pieces (a collated sample's net_input["encoder"]) with the rows where `rows` [B] is True (default:
    every row) emptied: each text group becomes `<s> </s>` (padded to its width) and every other piece is hidden
    (HIDDEN_ROWS), so the decoder of such a row sees only the empty string. Shapes are unchanged; the input is not
    modified."""
    texts = [piece for piece in pieces if "tokens" in piece]
    if not texts:
        raise ConfigError("classifier-free guidance replaces the prompt with an empty text, and this encoder input "
                          "has no text group; add text to the instruction's encoder side, or train with "
                          "--condition-dropout 0 and generate with --guidance-scale 1")
    if rows is None:
        rows = torch.ones(len(texts[0]["tokens"]), dtype=torch.bool)
    dropped = []
    for piece in pieces:
        if "tokens" in piece:
            tokens = piece["tokens"].clone()
            empty = torch.full_like(tokens[0], PAD)
            empty[:2] = torch.tensor([BOS, EOS], device=tokens.device)
            tokens[rows.to(tokens.device)] = empty
            piece = {**piece, "tokens": tokens, "padding_mask": tokens.eq(PAD)}
        else:
            hidden = piece.get(HIDDEN_ROWS)
            hidden = rows if hidden is None else hidden | rows.to(hidden.device)
            piece = {**piece, HIDDEN_ROWS: hidden}
        dropped.append(piece)
    return dropped


def guided(conditional: torch.Tensor, unconditional: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale (cond - uncond): the predictions (clean frames, next-code log-probs) of the rows' own input and
    of the empty prompt. scale 1 is the conditional prediction; OFASys's guidance weight w is scale = 1 + w."""
    return unconditional + scale * (conditional - unconditional)


def with_condition_dropout(sample: dict, share: float, seed: int, update: int) -> dict:
    """The training sample with the prompt of each row dropped with probability `share`, drawn per (seed, task,
    update, row) (rng.py), so neither batching, workers and ranks nor other random draws change which rows. The
    prompt is checked even when no row is dropped, so that an input without text fails at once."""
    rows = torch.tensor([rng_for(seed, sample["task"], update, row, "condition_dropout").random() < share
                         for row in sample["id"].tolist()], dtype=torch.bool)
    encoder = drop_prompt(sample["net_input"]["encoder"], rows)
    return {**sample, "net_input": {**sample["net_input"], "encoder": encoder}}
