"""Task "grounded_caption": describe the image region a box marks (the inverse of visual grounding)."""
from ..registry import register_task
from .base import Task
from .caption import CAPTION_DECODING


@register_task("grounded_caption")
class GroundedCaption(Task):
    """Image + box (pixels of `img`) -> the region's description; CIDEr-D, caption decoding."""

    family = "grounding"
    default_instruction = "[IMAGE:img] what does the region describe? region: [BOX:patch_boxes] -> [TEXT:cap]"
    default_metric = "cider"
    default_generation = CAPTION_DECODING
