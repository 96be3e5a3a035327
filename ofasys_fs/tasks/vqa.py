"""Tasks "vqa" (answers restricted to the closed answer set) and "vqa_gen" (free generation): VQA v2."""
from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("vqa")
class VQA(Task):
    """Image + question -> one answer of the closed set (trie-constrained beam search).

    `answer` may be the list of human answers: training draws one per sample, vqa_score scores against all,
    and the closed set (unless answers=[...] is given) collects every answer seen in training.
    """

    family = "image_text"
    default_instruction = "[IMAGE:image] [TEXT:question] -> [TEXT:answer,closed_set]"
    default_metric = "vqa_score"


@register_task("vqa_gen")
class VQAGen(VQA):
    """Image + question -> a generated answer (no closed set), scored with vqa_score like "vqa"."""

    default_instruction = "[IMAGE:image] [TEXT:question] -> [TEXT:answer]"
    default_generation = GenerationConfig(max_len_b=10)
