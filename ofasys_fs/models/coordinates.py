"""A smooth code of a normalised coordinate u in [0, 1], shared by the `<bin>` embeddings and the image
grid's row and column vectors, so that a box token starts out similar to the patches at its place
(docs/tasks/grounding.md, "Why bins and patches share a code")."""
from __future__ import annotations

import math

import torch

RESOLUTION = 64  # the finest period is 1 / RESOLUTION: finer bins start out alike and are learnt apart


def coordinate_code(values: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] coordinates in [0, 1] -> [N, dim] sin/cos features at dim // 2 frequencies, geometrically spaced
    from a half period over [0, 1] to RESOLUTION periods, scaled to the norm of a N(0, 1/dim) init. The
    frequencies depend only on `dim`, so codes of bins and of patch centres are comparable."""
    pairs = max(dim // 2, 1)
    frequencies = math.pi * torch.logspace(0, math.log10(2 * RESOLUTION), pairs)
    angles = values.double()[:, None] * frequencies[None, :]
    code = torch.cat([angles.sin(), angles.cos()], dim=1)[:, :dim]
    if code.size(1) < dim:
        code = torch.cat([code, code.new_zeros(len(values), dim - code.size(1))], dim=1)
    return (code * math.sqrt(2.0 / dim)).float()
