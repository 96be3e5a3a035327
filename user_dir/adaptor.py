"""Adaptor "text_conv": the text adaptor plus a depthwise convolution that mixes neighbouring tokens."""
import dataclasses

import torch
from torch import nn

from ofasys_fs import register_adaptor
from ofasys_fs.adaptors.text import TextAdaptor
from ofasys_fs.contracts import AdaptorOutput


@register_adaptor("text_conv")
class TextConvAdaptor(TextAdaptor):
    """Token embeddings + a residual depthwise Conv1d (kernel 3) over time, padding kept at zero."""

    def __init__(self, model_cfg, embed_tokens: nn.Embedding):
        super().__init__(model_cfg, embed_tokens)
        dim = model_cfg.embed_dim
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=dim)
        nn.init.zeros_(self.conv.weight)  # starts as the plain text adaptor
        nn.init.zeros_(self.conv.bias)

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        out = super().forward(batch)
        x = out.embeddings.masked_fill(out.padding_mask[..., None], 0.0)
        mixed = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return dataclasses.replace(out, embeddings=out.embeddings + mixed)
