"""The second input of classifier-free guidance: the same rows with their encoder TEXT slots empty (the caption
dropped), encoded and collated as the rows themselves, given to the generator as sample["unconditional"]."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

from ..contracts import SampleContext
from ..errors import ConfigError

GUIDANCE_OPTION = "guidance_scale"  # 1 (or unset) means no guidance


def guided(options: dict) -> bool:
    """Whether the generate options ask for classifier-free guidance."""
    return options.get(GUIDANCE_OPTION) not in (None, 1, 1.0)


class UnconditionalInput:
    """`net_input(examples, ctx)`: the encoder input of the examples' rows with every encoder TEXT column empty.

    `encoder` encodes a row without its targets (the Predictor's TargetFreeEncoder); `collate` batches Examples.
    """

    def __init__(self, encoder: Any, collate: Any, templates: Sequence[Any]):
        self.encoder, self.collate = encoder, collate
        self.columns = sorted({slot.name for template in templates for slot in template.encoder
                               if slot.modality == "TEXT" and slot.name})
        if not self.columns or any("." in column for column in self.columns):
            what = "nested columns" if self.columns else "no encoder TEXT slot"
            raise ConfigError(f"{GUIDANCE_OPTION} needs an encoder TEXT column to leave empty (the caption), and "
                              f"{templates[0].text!r} has {what}; drop the option")

    def net_input(self, examples: Sequence[Any], ctx: SampleContext, base_dir: Optional[str]) -> dict:
        blank = {column: "" for column in self.columns}
        empty = [self.encoder.encode({**example.row, **blank},
                                     dataclasses.replace(ctx, row_index=example.index, base_dir=base_dir))
                 for example in examples]
        return self.collate(empty)["net_input"]
