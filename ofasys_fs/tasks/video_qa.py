"""Task "video_qa": video question answering (MSR-VTT QA) over the closed answer set."""
from ..registry import register_task
from .base import Task


@register_task("video_qa")
class VideoQA(Task):
    """Video + question -> an answer of the closed set (the training answers unless answers=[...]); accuracy."""

    family = "video"
    default_instruction = "[VIDEO:video] [TEXT:question] -> [TEXT:answer,closed_set]"
    default_metric = "accuracy"
    default_generation = {"beam": 5}
