"""Task "snli_ve": visual entailment (SNLI-VE), OFA style: the premise and hypothesis are echoed as a
decoder prompt and the label is chosen from the closed set."""
from ..registry import register_task
from .base import Task


@register_task("snli_ve")
class SNLIVE(Task):
    """Image (+ caption) and hypothesis -> entailment / neutral / contradiction (the labels seen in training)."""

    family = "image_text"
    default_instruction = ('[IMAGE:img] can image and text1 " [TEXT:cap] " imply text2 " [TEXT:hyp] "? -> '
                           'can image and text1 " [TEXT:cap,no_loss] " imply text2 " [TEXT:hyp,no_loss] "? '
                           '[TEXT:label,closed_set]')
    default_metric = "accuracy"
