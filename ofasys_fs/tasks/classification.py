"""Classification as closed-set generation of the class name or answer, scored with accuracy: images
(ImageNet-1k), videos (Kinetics-400) and video question answering (MSR-VTT QA)."""
from ..registry import register_task
from .base import Task


class ClosedSetTask(Task):
    """An answer of the closed set: answers=[...] lists them all, or they are the distinct training targets."""

    default_metric = "accuracy"


@register_task("image_classify")
class ImageClassify(ClosedSetTask):
    """Image -> class name."""

    family = "image_text"
    default_instruction = "[IMAGE:image] what does the image describe? -> [TEXT:label_name,closed_set]"


@register_task("video_classify")
class VideoClassify(ClosedSetTask):
    """Video -> action class name."""

    family = "video"
    default_instruction = "[VIDEO:video] what is in the video? -> [TEXT:label_name,closed_set]"


@register_task("video_qa")
class VideoQA(ClosedSetTask):
    """Video + question -> an answer of the closed set."""

    family = "video"
    default_instruction = "[VIDEO:video] [TEXT:question] -> [TEXT:answer,closed_set]"
