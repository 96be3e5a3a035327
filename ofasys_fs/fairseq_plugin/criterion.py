"""The fairseq criterion `ofasys_ce`: each task's own ofasys_fs criterion (label-smoothed cross-entropy with forced
prefixes, constraint masks and task weights by default; a task may name another, e.g. with CTC), with fairseq's
logging of loss and nll_loss in base 2."""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import torch
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.logging import metrics

from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCEConfig
from ofasys_fs.registry import CRITERION_REGISTRY

from .config_mirror import mirrored_dataclass

CRITERION_NAME = "ofasys_ce"
CriterionConfig = mirrored_dataclass("OfasysCriterionConfig", LabelSmoothedCEConfig,
                                     shared={"sentence_avg": "optimization.sentence_avg"})


@register_criterion(CRITERION_NAME, dataclass=CriterionConfig)
class OfasysCriterion(FairseqCriterion):
    """Runs the criterion of the batch's task (built per task from the task's `criterion` name with the options
    that criterion declares)."""

    def __init__(self, task: Any, cfg: Any):
        super().__init__(task)
        options = {field.name: getattr(cfg, field.name) for field in dataclasses.fields(LabelSmoothedCEConfig)}
        self.criteria = torch.nn.ModuleDict({
            one.name: CRITERION_REGISTRY.build_with(one.criterion, options) for one in task.tasks})
        self.criterion_names = {one.name: one.criterion for one in task.tasks}

    def forward(self, model: Any, sample: dict, reduce: bool = True) -> tuple[torch.Tensor, float, dict]:
        task = sample["task"]
        rows = {**sample, "id": sample["id"] - sample["id_offset"]}  # ofasys_fs names rows by their task's index
        loss, sample_size, log = self.criteria[task](model, rows)
        return loss, sample_size, {**log, "task": task, "criterion": self.criterion_names[task]}

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False  # they name their task and criterion

    @classmethod
    def reduce_metrics(cls, logging_outputs: list[dict]) -> None:
        """Each criterion's own metrics (weighted by its sample size; ppl derived from nll_loss), and each task's
        loss as `loss_<task>`. Dummy batches log nothing (an empty dict)."""
        by_criterion, by_task = defaultdict(list), defaultdict(list)
        for log in filter(None, logging_outputs):
            by_criterion[log["criterion"]].append(log)
            by_task[log["task"]].append(log)
        for name, logs in by_criterion.items():
            log_values(CRITERION_REGISTRY.get(name).cls.reduce_metrics(logs), logs)
        for task, logs in by_task.items():
            values = CRITERION_REGISTRY.get(logs[0]["criterion"]).cls.reduce_metrics(logs)
            metrics.log_scalar(f"loss_{task}", values["loss"], weight_of(logs), round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))


def weight_of(logs: list[dict]) -> float:
    return sum(log.get("sample_size", 0) for log in logs)


def log_values(values: dict, logs: list[dict]) -> None:
    for key, value in values.items():
        if key != "ppl":
            metrics.log_scalar(key, value, weight_of(logs), round=3)
