"""Task "image_classify": image classification (ImageNet-1k) as closed-set generation of the class name."""
from ..registry import register_task
from .base import Task


@register_task("image_classify")
class ImageClassify(Task):
    """Image -> class name from the closed set (give answers=[...] for all classes, or they come from training)."""

    family = "image_text"
    default_instruction = "[IMAGE:image] what does the image describe? -> [TEXT:label_name,closed_set]"
    default_metric = "accuracy"
    default_generation = {"beam": 5}
