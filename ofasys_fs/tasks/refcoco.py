"""Task "refcoco": visual grounding (RefCOCO/+/g): image + referring expression -> one box."""
from typing import Optional

from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("refcoco")
class RefCOCO(Task):
    """Image + text -> the 4 `<bin>` tokens of a box, in pixels of the image; scored with Acc@0.5 IoU.

    `patch_boxes` is "x0,y0,x1,y1" or 4 numbers in pixels of `img`; a string is parsed into numbers so that
    acc_iou can read it as the reference.
    """

    family = "grounding"
    default_instruction = ('[IMAGE:img] <BOS> which region does the text " [TEXT:cap] " describe? <EOS> -> '
                           '[BOX:patch_boxes,add_bos,add_eos]')
    default_metric = "acc_iou"
    default_generation = GenerationConfig(min_len=4, max_len_a=0, max_len_b=4)  # exactly 4 bins

    def prepare_row(self, row: dict, base_dir: Optional[str]) -> dict:
        box = row.get("patch_boxes")
        return {**row, "patch_boxes": parse_box(box)} if isinstance(box, str) else row


def parse_box(text: str) -> list[float]:
    """"x0,y0,x1,y1" -> [x0, y0, x1, y1]; anything else is a ValueError naming the column."""
    parts = text.replace(" ", "").split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"column 'patch_boxes': expected a box \"x0,y0,x1,y1\" (4 numbers in pixels), got {text!r}")
    return values
