"""Validation during training: each task's loss on its valid rows (batched as training validates), the generated
outputs' metric, and which value is the best so far (`TrainerValidation`, a mixin of engine.trainer.Trainer)."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import torch

from ..data.encode import RowEncoder
from ..devices import move_to
from ..errors import ConfigError
from ..inference.evaluate import evaluate
from .batches import valid_loader

# Criterion statistics whose direction is known: a lower loss is better, a higher token accuracy is.
STATISTIC_DIRECTIONS = {"loss": False, "nll_loss": False, "ppl": False, "token_accuracy": True}


@torch.no_grad()
def valid_loss(model: torch.nn.Module, criterion: torch.nn.Module, task: Any, encoder: RowEncoder, cfg: Any,
               autocast: Callable = nullcontext) -> dict[str, float]:
    """The criterion's reduced statistics (loss, nll_loss, ppl, token_accuracy, ...) on the task's valid split,
    batched as training validates (`cfg`: the TrainConfig; batch_size, max_valid_samples)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logs = []
    try:
        for sample in valid_loader(task, encoder, cfg):
            sample = move_to({**sample, "task": task.name, "task_weight": 1.0}, device)
            with autocast():
                logs.append(criterion(model, sample)[2])
    finally:
        model.train(was_training)
    return type(criterion).reduce_metrics(logs)


class TrainerValidation:
    """The Trainer's validation: what it scores and which checkpoint is the best. Reads the Trainer's cfg, model,
    ema, tasks, criteria, encoders, dist, strategy, best and metric_directions."""

    @torch.no_grad()
    def validate(self) -> dict[str, dict[str, float]]:
        """Loss statistics of every task with a valid split ({task: {"loss", "nll_loss", "ppl", "token_accuracy",
        ...}}), plus for a task with a metric the generated outputs' score ({"cider": ...}; docs/inference.md).
        With EMA the averaged weights are scored."""
        results = {}
        with self.ema.apply_to(self.model) if self.ema is not None else nullcontext():
            for task in self.tasks:
                if "valid" in task.datasets:
                    results[task.name] = valid_loss(self.model, self.criteria[task.name], task,
                                                    self.encoders[task.name], self.cfg, self.autocast)
                    if task.metric:
                        results[task.name].update(self.generation_metrics(task))
        return results

    def generation_metrics(self, task: Any) -> dict[str, float]:
        """Decode the task's valid rows (at most max_valid_samples) and score them with its metric."""
        cfg = self.cfg
        with self.autocast():
            evaluation = evaluate(self.model, task, "valid", encoder=self.encoders[task.name],
                                  max_samples=cfg.validation.max_valid_samples,
                                  options=cfg.generation.given(),
                                  batch_size=task.batch_size or cfg.dataset.batch_size,
                                  num_workers=cfg.dataset.num_workers, seed=cfg.common.seed,
                                  gather=self.dist.gather_to_main, **self.strategy.validation_shard())
        for key in evaluation.metrics:
            self.metric_directions[key] = self.metric_directions[f"{task.name}.{key}"] = evaluation.higher_is_better
        return evaluation.metrics

    def score(self, results: dict[str, dict[str, float]]) -> float:
        """The best_checkpoint_metric: "TASK.METRIC", or a metric name averaged over the tasks (default loss)."""
        name = self.cfg.checkpoint.best_checkpoint_metric
        task, dot, metric = name.rpartition(".")
        if dot:
            if metric not in results.get(task, {}):
                raise ConfigError(f"best_checkpoint_metric {name!r}: validation gave {metric_names(results)}")
            return results[task][metric]
        values = [stats[name] for stats in results.values() if name in stats]
        if not values:
            raise ConfigError(f"best_checkpoint_metric {name!r}: validation gave {metric_names(results)}")
        return sum(values) / len(values)

    def higher_is_better(self) -> bool:
        """The direction of best_checkpoint_metric: as maximize_best_checkpoint_metric says when it is set, else
        the metric's own (a generation metric knows it; loss, nll_loss and ppl are minimised, token_accuracy
        maximised)."""
        ckpt = self.cfg.checkpoint
        if ckpt.maximize_best_checkpoint_metric is not None:
            return ckpt.maximize_best_checkpoint_metric
        name = ckpt.best_checkpoint_metric
        known = self.metric_directions.get(name, STATISTIC_DIRECTIONS.get(name.rpartition(".")[2]))
        if known is None:
            raise ConfigError(f"best_checkpoint_metric {name!r}: cannot tell whether higher is better; set "
                              f"maximize_best_checkpoint_metric (--maximize-best-checkpoint-metric or "
                              f"--no-maximize-best-checkpoint-metric)")
        return known

    def improved(self, value: float) -> bool:
        """Better than the best so far, in the metric's direction."""
        if self.best is None:
            return True
        return value > self.best if self.higher_is_better() else value < self.best


def metric_names(results: dict) -> list[str]:
    return [f"{task}.{metric}" for task, stats in results.items() for metric in stats]
