"""The empty prompt of classifier-free guidance: the encoder input of chosen rows replaced by the encoding of an
empty string, as OFASys's null condition. Training drops the prompt of a fraction of rows (the diffusion
criterion) so that the model also learns the unconditional prediction the DDIM generator guides with."""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..tokenizer import BOS, EOS, PAD


def drop_prompt(pieces: list[dict], rows: torch.Tensor) -> list[dict]:
    """Encoder pieces (the collated sample's net_input["encoder"]) with rows[b] True emptied: each text group
    becomes `<s> </s>` (padded to its width) and every other piece is masked out, so the decoder of such a row
    sees only the empty string. Shapes are unchanged; the input is not modified."""
    if not any("tokens" in piece for piece in pieces):
        raise ConfigError("classifier-free guidance replaces the prompt with an empty text, and this encoder input "
                          "has no text group; add text to the instruction's encoder side, or train with "
                          "--condition-dropout 0 and generate with --guidance-scale 1")
    dropped = []
    for piece in pieces:
        piece = dict(piece)
        mask = piece["padding_mask"] if "padding_mask" in piece else None
        if "tokens" in piece:
            tokens = piece["tokens"].clone()
            empty = torch.full_like(tokens[0], PAD)
            empty[:2] = torch.tensor([BOS, EOS], device=tokens.device)
            tokens[rows] = empty
            piece["tokens"] = tokens
            mask = tokens.eq(PAD)
        elif mask is not None:
            mask = mask.clone()
            mask[rows] = True
        else:
            raise ConfigError(f"classifier-free guidance: the {piece.get('modality', '?')} encoder piece has no "
                              f"padding_mask to hide it with")
        piece["padding_mask"] = mask
        dropped.append(piece)
    return dropped
