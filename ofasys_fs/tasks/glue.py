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


# name: (what it asks, the class name, the input prompt, label words in Hugging Face's label order, metric)
GLUE_TASKS = {
    "cola": ("Is the sentence grammatical? 0 = no, 1 = yes; Matthews correlation.", "CoLA",
             'is the text " [TEXT:sentence] " grammatically correct?', ("no", "yes"), "mcc"),
    "sst2": ("Sentiment of a sentence: 0 = negative, 1 = positive.", "SST2",
             'is the sentiment of text " [TEXT:sentence] " positive or negative?', ("negative", "positive"), "accuracy"),
    "mrpc": ("Are two sentences paraphrases? 0 = no, 1 = yes.", "MRPC",
             'does text1 " [TEXT:sentence1] " and text2 " [TEXT:sentence2] " have the same semantics?', ("no", "yes"),
             "accuracy"),
    "qqp": ("Are two questions duplicates? 0 = no, 1 = yes.", "QQP",
            'is question " [TEXT:question1] " and question " [TEXT:question2] " equivalent?', ("no", "yes"),
            "accuracy"),
    "mnli": ("Premise -> hypothesis: 0 = entailment (yes), 1 = neutral (maybe), 2 = contradiction (no).", "MNLI",
             'can text1 " [TEXT:premise] " imply text2 " [TEXT:hypothesis] "?', ("yes", "maybe", "no"), "accuracy"),
    "qnli": ("Does the sentence answer the question? 0 = entailment (yes), 1 = not (no).", "QNLI",
             'does " [TEXT:sentence] " contain the answer to question " [TEXT:question] "?', ("yes", "no"), "accuracy"),
    "rte": ("Does sentence1 entail sentence2? 0 = entailment (yes), 1 = not (no).", "RTE",
            'can text1 " [TEXT:sentence1] " imply text2 " [TEXT:sentence2] "?', ("yes", "no"), "accuracy"),
}

for _name, (_doc, _class_name, _prompt, _words, _metric) in GLUE_TASKS.items():
    globals()[_class_name] = register_task(_name)(type(_class_name, (GlueTask,), {
        "__doc__": _doc, "__module__": __name__, "__qualname__": _class_name,
        "default_instruction": echoed(_prompt), "label_words": _words, "default_metric": _metric,
    }))
