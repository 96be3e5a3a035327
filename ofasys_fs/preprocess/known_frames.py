"""The known frames of a MOTION output for in-betweening (MDM's "in_between" edit): which frames of the row's
motion window are given and kept while the others are generated. Written on the output slot as `known=K` (the
first and last K frames) or `known_mask=COLUMN` (each row's COLUMN holds max_length values, 1 = given)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..contracts import SampleContext
from ..instruction import column_value


class KnownFrames:
    """`mask(ctx)` -> BoolTensor [window], True at the given frames; ValueError naming what was expected."""

    def __init__(self, known: Optional[int], column: Optional[str], window: int):
        if known is not None and column is not None:
            raise ValueError("give known=K (the first and last K frames) or known_mask=COLUMN (a frame mask per "
                             "row), not both")
        if known is not None and 2 * known >= window:
            raise ValueError(f"known={known} gives the first and last {known} frames of the max_length={window} "
                             f"window, which leaves none to generate; expected 2 x known < max_length")
        self.known, self.column, self.window = known, column, window

    def mask(self, ctx: SampleContext) -> torch.Tensor:
        if self.known is not None:
            mask = torch.zeros(self.window, dtype=torch.bool)
            mask[:self.known] = mask[-self.known:] = True
            return mask
        return torch.from_numpy(self.row_mask(column_value(ctx.row or {}, self.column)))

    def row_mask(self, value: Any) -> np.ndarray:
        expected = (f"expected {self.window} values of 0 or 1, one per frame of the max_length={self.window} "
                    f"window (1: the frame is given)")
        where = f"the known_mask column {self.column!r}"
        if value is None:
            raise ValueError(f"{where} has no value; {expected}")
        if not isinstance(value, (list, tuple, np.ndarray)) or np.asarray(value, dtype=object).ndim != 1:
            raise ValueError(f"{where} holds {value!r:.60}; {expected}")
        values = list(value)
        if len(values) != self.window:
            raise ValueError(f"{where} has {len(values)} values; {expected}")
        wrong = [index for index, flag in enumerate(values) if flag not in (0, 1)]  # True/False equal 1/0
        if wrong:
            raise ValueError(f"{where} holds {values[wrong[0]]!r} at frame {wrong[0]}; {expected}")
        mask = np.array(values, dtype=bool)
        if not mask.any():
            raise ValueError(f"{where} gives no frame; in-betweening needs at least one known frame (without "
                             f"any, drop known_mask: that is text-to-motion)")
        if mask.all():
            raise ValueError(f"{where} gives all {self.window} frames, which leaves none to generate")
        return mask
