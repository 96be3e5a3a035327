"""Task "detection": object detection as a repeated (box, label) sequence, decoded under its grammar."""
from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("detection")
class Detection(Task):
    """Image -> every object as 4 `<bin>` tokens and its label, in list order. `objs` is a list of
    {"box": [x0, y0, x1, y1] in pixels, "label": str}. No metric: ofasys_fs has no detection mAP yet."""

    family = "grounding"
    default_instruction = "[IMAGE:img] what are the objects in the image? -> ( [BOX:objs.box] [TEXT:objs.label] )*"
    default_references = "objs"
    default_generation = GenerationConfig(max_len_b=256, no_repeat_ngram_size=0)
