"""Box-guided cross-attention: while the decoder writes a box's `<bin>`s, the cross-attention mass it puts
anywhere but on the image cells inside that box is penalised. The four tokens' cross-entropy say where the
object is only through its coordinates; this says it at every cell, so that a model from scratch learns early
to look at the named object (docs/tasks/grounding.md, "Box-guided attention"). With region `edge` (or
`box_and_edge`), the step writing a coordinate is guided to the box's edge that the coordinate names, the cells a
box's border is read from."""
from __future__ import annotations

from typing import Any, Optional

import torch

REGIONS = ("box", "edge", "box_and_edge")  # where the attention of a step writing a box coordinate is guided


def cell_coverage(boxes: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Boxes [N, 4] (x0, y0, x1, y1 in [0, 1]) -> [N, rows * cols]: the share of each cell of a rows x cols grid
    (read row by row) that lies inside the box, the box first widened about its centre to at least one cell
    (so that a box smaller than a cell still names where to look)."""

    def side(low: torch.Tensor, high: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
        centre, half = (low + high) / 2, ((high - low).abs() / 2).clamp(min=0.5 / cells)
        return centre - half, centre + half

    x0, x1 = side(boxes[:, 0], boxes[:, 2], cols)
    y0, y1 = side(boxes[:, 1], boxes[:, 3], rows)

    def overlap(low: torch.Tensor, high: torch.Tensor, cells: int) -> torch.Tensor:
        edges = torch.arange(cells + 1, device=boxes.device, dtype=boxes.dtype) / cells
        inside = torch.minimum(high[:, None], edges[None, 1:]) - torch.maximum(low[:, None], edges[None, :-1])
        return inside.clamp(min=0) * cells

    return (overlap(y0, y1, rows)[:, :, None] * overlap(x0, x1, cols)[:, None, :]).flatten(1)


def image_grid(encoder_out: Any) -> Optional[tuple[int, int, int]]:
    """(start, rows, cols) of the encoder's one image feature grid; None when it has none or several (a box
    then names no single grid)."""
    grids = [(start, *grid) for (_, start, _), grid in zip(encoder_out.spans, encoder_out.grids) if grid is not None]
    return grids[0] if len(grids) == 1 else None


def edge_boxes(boxes: torch.Tensor, has_box: torch.Tensor) -> torch.Tensor:
    """Boxes [B, T, 4] of the steps writing a box's x0, y0, x1, y1 (runs of 4 where `has_box` [B, T]) -> at each
    step the zero-width strip along the edge its coordinate names (x0: the left edge, y0: the top, ...)."""
    steps = torch.arange(has_box.size(1), device=has_box.device).expand_as(has_box)
    last_without = torch.where(has_box, -1, steps).cummax(1).values
    coordinate = (steps - last_without - 1) % 4  # which of the four the step writes (consecutive boxes included)
    x0, y0, x1, y1 = boxes.unbind(-1)
    strips = torch.stack([torch.stack(edge, -1) for edge in
                          ((x0, y0, x0, y1), (x0, y0, x1, y0), (x1, y0, x1, y1), (x0, y1, x1, y1))], -2)
    return strips.gather(-2, coordinate[..., None, None].expand(*coordinate.shape, 1, 4)).squeeze(-2)


def box_attention_penalty(weights: list[torch.Tensor], encoder_out: Any, target_boxes: torch.Tensor,
                          region: str = "box") -> torch.Tensor:
    """Per target step [B, T]: 1 - the cross-attention mass (mean over layers and heads of weights [B, H, T, S]) on
    the image cells of the step's `region`, each cell counted by the share of it inside: `box` the step's box,
    `edge` the box's edge its coordinate names (a strip one cell wide), `box_and_edge` the mean of the two. Mass on
    the text counts as outside: while it writes a box the decoder should look at the box. 0 at steps without a box
    (NaN rows of `target_boxes` [B, T, 4]) and when the encoder has no single image grid."""
    batch, length, _ = target_boxes.shape
    grid = image_grid(encoder_out)
    if grid is None:
        return target_boxes.new_zeros(batch, length)
    start, rows, cols = grid
    has_box = ~target_boxes.isnan().any(-1)
    boxes = target_boxes.nan_to_num(0.0)
    areas = [boxes] if region != "edge" else []
    if region != "box":
        areas.append(edge_boxes(boxes, has_box))
    coverage = torch.stack([cell_coverage(area.flatten(0, 1), rows, cols) for area in areas]).mean(0)
    coverage = coverage.view(batch, length, -1)
    mass = torch.stack([w[..., start: start + rows * cols].float().mean(1) for w in weights]).mean(0)
    return (1 - (mass * coverage).sum(-1)).masked_fill(~has_box, 0.0)
