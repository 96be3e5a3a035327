"""Adaptor "image_code" (alias image_vqgan): image codes with 2-D positions over their grid.

As an encoder piece (an image_code input slot) the codes are embedded with the shared table and the
image adaptors' row/column positions and 2-D relative bias. On the decoder, where an IMAGE output's codes
are ordinary target tokens, `decoder_positions` adds a learnt row + column vector to the embedding of each
code token by its cell (OFA's image position embeddings of generated codes), so that the decoder knows
which cell a code fills, also across rows.
"""
from __future__ import annotations

import torch
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..errors import ConfigError
from ..models.config import ModelConfig
from ..models.layers import ScaledTokenEmbedding
from ..registry import register_adaptor
from .image_grid import grid_positions


@register_adaptor("image_code")
class ImageCodeAdaptor(Adaptor):
    """Codes of a rows x cols grid (model config image_code_grid) in the vocabulary's code ids (image_code_range)."""

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        if model_cfg.image_code_grid is None or model_cfg.image_code_range is None:
            raise ConfigError("the image_code adaptor needs the code grid and ids (model config image_code_grid, "
                              "image_code_range): training sets them from the image tokenizer and the vocabulary")
        self.rows, self.cols = model_cfg.image_code_grid
        self.start, self.end = model_cfg.image_code_range
        dim = model_cfg.embed_dim
        self.tokens = ScaledTokenEmbedding(embed_tokens, model_cfg.scale_embedding)
        self.positions = grid_positions(max(self.rows, self.cols), model_cfg, owner="image_code adaptor")
        self.decoder_rows, self.decoder_cols = nn.Embedding(self.rows, dim), nn.Embedding(self.cols, dim)
        for table in (self.decoder_rows, self.decoder_cols):
            nn.init.normal_(table.weight, std=dim**-0.5)

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        tokens = batch.get("tokens")
        if tokens is None or tokens.dim() != 2 or tokens.size(1) != self.rows * self.cols:
            got = list(tokens.shape) if tokens is not None else f"keys {sorted(batch)}"
            raise ValueError(f"image_code adaptor: expected codes [batch, {self.rows * self.cols}] (a {self.rows}x"
                             f"{self.cols} grid), got {got}")
        position_embeddings, rel_bias = self.positions(self.rows, self.cols, tokens.device)
        return AdaptorOutput(embeddings=self.tokens(tokens), padding_mask=torch.zeros_like(tokens, dtype=torch.bool),
                             rel_bias=rel_bias, position_embeddings=position_embeddings)

    def decoder_positions(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """[B, T, D] to add to the decoder's embeddings of `tokens` (decoder positions start..start+T-1): the cell
        vectors of code tokens (position p >= 1 holds code p - 1 of the grid), zero elsewhere."""
        cells = torch.arange(start, start + tokens.size(1), device=tokens.device) - 1
        is_code = (tokens >= self.start) & (tokens < self.end) & (cells >= 0) & (cells < self.rows * self.cols)
        cells = cells.clamp(0, self.rows * self.cols - 1)
        vectors = self.decoder_rows(cells // self.cols) + self.decoder_cols(cells % self.cols)
        return vectors[None] * is_code.unsqueeze(-1).to(vectors.dtype)
