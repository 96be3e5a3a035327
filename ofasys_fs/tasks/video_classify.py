"""Task "video_classify": action classification (Kinetics-400) as closed-set generation of the class name."""
from ..registry import register_task
from .base import Task


@register_task("video_classify")
class VideoClassify(Task):
    """Video -> class name from the closed set; accuracy."""

    family = "video"
    default_instruction = "[VIDEO:video] what is in the video? -> [TEXT:label_name,closed_set]"
    default_metric = "accuracy"
    default_generation = {"beam": 5}
