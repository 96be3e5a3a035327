"""Task: a named instruction (or several templates) with its data, metric, criterion and decoding defaults."""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, Optional, Union

from ..contracts import BaseTask
from ..data.rows import PreparedRows, RowSource, as_row_source
from ..errors import ConfigError
from ..generators.config import GenerationConfig
from ..instruction import Instruction, parse_templates
from ..registry import PREPROCESSOR_REGISTRY

SPLITS = ("train", "valid", "test")


class Task(BaseTask):
    """One task of the generalist. Built-in tasks subclass it and set the class-level defaults.

    `Task(instruction=...)` alone is enough (the name then comes from the target column); data is
    added per split with `add_dataset`.
    """

    default_instruction: Union[str, list, None] = None
    default_metric: Optional[str] = None
    default_references: Optional[str] = None
    default_criterion: Optional[str] = None  # None: label_smoothed_ce, or a continuous output's own criterion
    # the task's decoding defaults; a plugin task may give a dict naming its own generator and that one's options
    default_generation: Union[GenerationConfig, dict] = GenerationConfig()
    family: Optional[str] = None  # docs page of a built-in task (docs/tasks/<family>.md)

    def __init__(
        self,
        name: Optional[str] = None,
        instruction: Union[str, list, None] = None,
        metric: Optional[str] = None,
        references: Optional[str] = None,
        answers: Optional[list] = None,
        weight: float = 1.0,
        batch_size: Optional[int] = None,
        criterion: Optional[str] = None,
        generation: Optional[dict] = None,
    ):
        instruction = instruction if instruction is not None else self.default_instruction
        if instruction is None:
            raise ConfigError(f"Task {name or ''!r}: give an instruction, e.g. '[IMAGE:img] what does the image "
                             f"describe? -> [TEXT:cap]', or the name of a built-in task")
        self.templates: list[Instruction] = parse_templates(instruction)
        self.name = name or getattr(type(self), "registered_name", None) or default_task_name(self.templates[0])
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", self.name):
            raise ConfigError(f"task name {self.name!r}: use letters, digits, '_' and '-' (it names log keys and files)")
        if not isinstance(weight, numbers.Real) or isinstance(weight, bool) or not 0 < weight < math.inf:
            raise ConfigError(f"task {self.name!r}: weight must be a positive number, got {weight!r}")
        if batch_size is not None and (not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool)
                                       or batch_size < 1):
            raise ConfigError(f"task {self.name!r}: batch_size must be an integer of at least 1, got {batch_size!r}")
        if answers is not None and not isinstance(answers, (list, tuple)):
            raise ConfigError(f"task {self.name!r}: answers must be a list of the closed set's answers, got "
                             f"{type(answers).__name__} {answers!r:.80}")
        self.metric = metric or self.default_metric
        self.references = references or self.default_references or self.target_column()
        self.answers = list(answers) if answers is not None else None
        self.weight, self.batch_size = float(weight), batch_size
        self.criterion = criterion or self.default_criterion or output_criterion(self.templates[0])
        defaults = self.default_generation
        self.generation = {**(defaults.given() if isinstance(defaults, GenerationConfig) else defaults),
                           **(generation or {})}
        self.datasets: dict[str, RowSource] = {}

    @property
    def instruction(self) -> Instruction:
        return self.templates[0]

    def target_column(self) -> Optional[str]:
        names = [s.name for s in self.instruction.decoder if s.name and not s.no_loss]
        return names[0] if names else None

    def add_dataset(self, source: Any, split: str = "train") -> "Task":
        """Attach rows for a split: a list of dicts, HF Dataset, torch Dataset, file path or shard folder."""
        if split not in SPLITS:
            raise ConfigError(f"task {self.name!r}: split must be one of {SPLITS}, got {split!r}")
        self.datasets[split] = self.prepared_rows(source, split)
        return self

    def prepared_rows(self, source: Any, split: str = "train") -> RowSource:
        """`source` as a RowSource whose rows went through `prepare_row` (what add_dataset stores); readers of
        rows outside `datasets` (ofasys-generate's data, inference rows) use it too."""
        rows = as_row_source(source, split)
        return rows if type(self).prepare_row is Task.prepare_row else PreparedRows(rows, self.prepare_row)

    def prepare_row(self, row: dict, base_dir: Optional[str]) -> dict:
        """Hook for a task's own fix-up of a raw row before binding (fill a column from a file, map integer
        labels to words); every reader of the task's datasets sees the result. Return a new dict."""
        return row

    def closed_set_answers(self) -> list[str]:
        """The closed answer set: given answers, else the distinct training targets in first-seen order."""
        if self.answers is not None:
            return self.answers
        column = self.target_column()
        if "train" not in self.datasets or column is None:
            raise ConfigError(f"task {self.name!r}: closed_set needs answers=[...] or training data to collect them")
        seen: dict[str, None] = {}
        rows = self.datasets["train"]
        for i in range(len(rows)):
            value = rows[i].get(column)
            for answer in value if isinstance(value, list) else [value]:
                seen.setdefault(str(answer), None)
        self.answers = list(seen)
        return self.answers

    def to_dict(self) -> dict:
        """What a checkpoint stores so that inference can rebuild the task without its data."""
        return {
            "name": self.name,
            "class": getattr(type(self), "registered_name", None),
            "instructions": [t.text for t in self.templates],
            "metric": self.metric,
            "references": self.references,
            "answers": self.answers,
            "weight": self.weight,
            "batch_size": self.batch_size,
            "criterion": self.criterion,
            "generation": dict(self.generation),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(
            name=d["name"], instruction=d["instructions"], metric=d.get("metric"),
            references=d.get("references"), answers=d.get("answers"), weight=d.get("weight", 1.0),
            batch_size=d.get("batch_size"), criterion=d.get("criterion"), generation=d.get("generation"),
        )

    def __repr__(self) -> str:
        splits = {k: len(v) for k, v in self.datasets.items()}
        return f"Task({self.name!r}, {self.instruction.text!r}, rows={splits})"


def output_criterion(template: Instruction) -> str:
    """The criterion a decoder implies: a continuous output's preprocessor names its own (audio_mel:
    frame_regression), tokens take label_smoothed_ce."""
    if template.output_modality != "TEXT":
        preprocessor = PREPROCESSOR_REGISTRY.get(template.decoder[0].preprocess).cls
        if getattr(preprocessor, "criterion", None):
            return preprocessor.criterion
    return "label_smoothed_ce"


def default_task_name(instruction: Instruction) -> str:
    names = [s.name for s in instruction.decoder if s.name]
    base = names[0].replace(".", "_") if names else instruction.output_modality.lower()
    return re.sub(r"[^A-Za-z0-9_]", "_", base)
