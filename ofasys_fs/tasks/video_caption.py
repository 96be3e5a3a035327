"""Task "video_caption": video captioning (MSR-VTT) with the seed README's instruction."""
from ..registry import register_task
from .base import Task
from .caption import CAPTION_DECODING


@register_task("video_caption")
class VideoCaption(Task):
    """Video (frames sampled per segment) -> caption; CIDEr-D, caption decoding."""

    family = "video"
    default_instruction = "[VIDEO:video] <BOS> what does the video describe? <EOS> -> <BOS> [TEXT:cap] <EOS>"
    default_metric = "cider"
    default_generation = CAPTION_DECODING
