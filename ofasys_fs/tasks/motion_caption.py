"""Task "motion_caption": motion capture -> text (MOTION -> TEXT), OFASys's motion input with a text decoder."""
from ..registry import register_task
from .base import Task
from .caption import CAPTION_DECODING


@register_task("motion_caption")
class MotionCaption(Task):
    """A window of motion (BVH, frame arrays or spans of a long take) -> caption; CIDEr-D, caption decoding."""

    family = "motion"
    default_instruction = "[MOTION:motion,max_length=60] what is the person doing? -> [TEXT:caption]"
    default_metric = "cider"
    default_generation = CAPTION_DECODING
