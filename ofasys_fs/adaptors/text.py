"""Adaptor "text": token ids of a text-like group -> shared embeddings with 1-D positions."""
from __future__ import annotations

import torch
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..models.config import ModelConfig
from ..models.layers import ScaledTokenEmbedding
from ..models.positions import SequencePositions
from ..registry import register_adaptor


@register_adaptor("text")
class TextAdaptor(Adaptor):
    """Token ids -> shared table (x sqrt(d) unless scale_embedding is off, + a type vector with type_embedding)
    + layer norm; text position vectors and a bucketed 1-D relative bias table per encoder layer."""

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.tokens = ScaledTokenEmbedding(embed_tokens, model_cfg.scale_embedding, model_cfg.type_embedding)
        self.positions = SequencePositions(model_cfg.max_source_positions, model_cfg, model_cfg.encoder_layers,
                                           owner="text adaptor (max_source_positions)")

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        if "tokens" not in batch:
            raise KeyError(
                f'text adaptor: the {batch.get("modality", "?")} piece has no "tokens" tensor '
                f"(keys: {sorted(batch)})"
            )
        tokens = batch["tokens"]
        padding_mask = batch.get("padding_mask")
        if padding_mask is None:
            padding_mask = tokens.eq(self.tokens.embed_tokens.padding_idx)
        positions = self.positions.positions(tokens.size(1), tokens.device)
        return AdaptorOutput(
            embeddings=self.tokens(tokens),
            padding_mask=padding_mask,
            positions=positions[None].expand_as(tokens),
            rel_bias=self.positions.relative_bias(positions, positions),
            position_embeddings=self.positions.embeddings(positions)[None],
        )
