"""GLUE-style sentence(-pair) classification, OFA style: the input is echoed as a decoder prompt and the
label word is chosen from a closed set. Tasks: cola (MCC), sst2, mrpc, qqp, mnli, qnli, rte (accuracy).

Hugging Face's `glue` datasets give integer labels; they are mapped to each task's label words
(-1, GLUE's "no label" of the test splits, becomes a missing target).
"""
from __future__ import annotations

import numbers
import re
from typing import Any, Optional

from ..registry import register_task
from .base import Task


class GlueTask(Task):
    """Shared behaviour: answers default to `label_words`; integer labels i map to label_words[i]."""

    family = "glue"
    default_metric = "accuracy"
    default_generation = {"beam": 5}
    label_words: tuple = ()

    def __init__(self, *args: Any, answers: Optional[list] = None, **kwargs: Any):
        super().__init__(*args, answers=list(self.label_words) if answers is None else answers, **kwargs)

    def prepare_row(self, row: dict, base_dir: Optional[str]) -> dict:
        label = row.get("label")
        if not isinstance(label, numbers.Integral) or isinstance(label, bool):
            return row
        if label == -1:
            return {**row, "label": None}
        if not 0 <= label < len(self.label_words):
            raise ValueError(f"task {self.name!r}: column 'label' is {label}; integer labels must be in "
                             f"0..{len(self.label_words) - 1} (meaning {list(self.label_words)}) or -1 (no label)")
        return {**row, "label": self.label_words[label]}


def echoed(prompt: str) -> str:
    """OFA's GLUE instruction: the decoder repeats `prompt` (its text slots without loss), then the label word."""
    echo = re.sub(r"\[TEXT:(\w+)\]", r"[TEXT:\1,no_loss]", prompt)
    return f"{prompt} -> {echo} [TEXT:label,closed_set]"


@register_task("cola")
class CoLA(GlueTask):
    """Is the sentence grammatical? 0 = no, 1 = yes; Matthews correlation."""

    default_instruction = echoed('is the text " [TEXT:sentence] " grammatically correct?')
    default_metric = "mcc"
    label_words = ("no", "yes")


@register_task("sst2")
class SST2(GlueTask):
    """Sentiment of a sentence: 0 = negative, 1 = positive."""

    default_instruction = echoed('is the sentiment of text " [TEXT:sentence] " positive or negative?')
    label_words = ("negative", "positive")


@register_task("mrpc")
class MRPC(GlueTask):
    """Are two sentences paraphrases? 0 = no, 1 = yes."""

    default_instruction = echoed('does text1 " [TEXT:sentence1] " and text2 " [TEXT:sentence2] " have the same '
                                 'semantics?')
    label_words = ("no", "yes")


@register_task("qqp")
class QQP(GlueTask):
    """Are two questions duplicates? 0 = no, 1 = yes."""

    default_instruction = echoed('is question " [TEXT:question1] " and question " [TEXT:question2] " equivalent?')
    label_words = ("no", "yes")


@register_task("mnli")
class MNLI(GlueTask):
    """Premise -> hypothesis: 0 = entailment (yes), 1 = neutral (maybe), 2 = contradiction (no)."""

    default_instruction = echoed('can text1 " [TEXT:premise] " imply text2 " [TEXT:hypothesis] "?')
    label_words = ("yes", "maybe", "no")


@register_task("qnli")
class QNLI(GlueTask):
    """Does the sentence answer the question? 0 = entailment (yes), 1 = not (no)."""

    default_instruction = echoed('does " [TEXT:sentence] " contain the answer to question " [TEXT:question] "?')
    label_words = ("yes", "no")


@register_task("rte")
class RTE(GlueTask):
    """Does sentence1 entail sentence2? 0 = entailment (yes), 1 = not (no)."""

    default_instruction = echoed('can text1 " [TEXT:sentence1] " imply text2 " [TEXT:sentence2] "?')
    label_words = ("yes", "no")
