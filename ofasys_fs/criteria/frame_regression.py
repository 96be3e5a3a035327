"""Criterion "frame_regression": the loss of a continuous output (text-to-speech mel frames): L1 + MSE between
predicted and target frames plus a binary cross-entropy on the stop logit, all masked on padded steps, and
optionally a guided-attention penalty that steers the cross-attention to the text's diagonal."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F

from ..contracts import Criterion, Model
from ..registry import register_criterion


@dataclasses.dataclass
class FrameRegressionConfig:
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    stop_weight: float = 1.0
    stop_pos_weight: float = 5.0  # the one last step of a row weighs this much more than the others (it is rare)
    # guided attention (DC-TTS): penalise cross-attention far from the diagonal of step / steps = position /
    # positions, by this weight per step (0: off), with a Gaussian of this width in those fractions
    guided_attention: float = 1.0  # the default of Trainer's guided_attention too
    guided_attention_sigma: float = 0.4

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) >= 0:
                raise ValueError(f"frame_regression: {field.name} must be >= 0, got {getattr(self, field.name)}")
        if not self.guided_attention_sigma > 0:
            raise ValueError(f"frame_regression: guided_attention_sigma must be > 0, got {self.guided_attention_sigma}")


def guided_attention_penalty(weights: list[torch.Tensor], step_padding: torch.Tensor, source_padding: torch.Tensor,
                             sigma: float) -> torch.Tensor:
    """Per step [B, T]: the cross-attention mass (mean over layers and heads of weights [B, H, T, S]) times
    1 - exp(-(s / S - t / T)^2 / (2 sigma^2)), summed over source positions s; T and S are each row's valid
    steps and positions (Tachibana et al. 2017)."""
    steps, positions = (~step_padding).sum(1, keepdim=True), (~source_padding).sum(1, keepdim=True)
    t = torch.arange(step_padding.size(1), device=steps.device)[None] / steps
    s = torch.arange(source_padding.size(1), device=steps.device)[None] / positions
    off_diagonal = 1 - torch.exp(-(s[:, None, :] - t[:, :, None]).pow(2) / (2 * sigma ** 2))
    mass = torch.stack([w.float().mean(1) for w in weights]).mean(0)
    return (mass * off_diagonal.masked_fill(source_padding[:, None, :], 0)).sum(-1)


def stop_targets(padding_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] True-where-padded -> float [B, T]: 1 at each row's last valid step, else 0."""
    lengths = (~padding_mask).sum(1)
    positions = torch.arange(padding_mask.size(1), device=padding_mask.device)
    return (positions[None, :] == (lengths - 1)[:, None]).float()


@register_criterion("frame_regression", dataclass=FrameRegressionConfig)
class FrameRegression(Criterion):
    """Per valid step: l1_weight x mean |error| + mse_weight x mean error^2 over the step's values, plus stop_weight
    x BCE(stop logit, last step); summed over steps, normalised by the number of steps, times the task weight.
    Logs the unweighted sums l1, mse, stop_bce and stop_correct (stop decided right at threshold 0.5)."""

    def __init__(self, cfg: Optional[FrameRegressionConfig] = None):
        super().__init__()
        self.cfg = cfg or FrameRegressionConfig()

    def forward(self, model: Model, sample: dict) -> tuple[torch.Tensor, float, dict]:
        guided = self.cfg.guided_attention > 0
        predictions, extra = model(sample, cross_attention=True) if guided else model(sample)
        piece = sample["net_input"].get("decoder")
        if piece is None or not isinstance(predictions, dict):
            raise ValueError(f"task {sample.get('task', '?')!r}: criterion frame_regression needs a continuous "
                             f"output (e.g. [AUDIO:wav,preprocess=audio_mel]); use label_smoothed_ce for tokens")
        target, valid = piece["frames"], ~piece["padding_mask"]
        error = (predictions["frames"].float() - target.float())[valid]
        l1, mse = error.abs().mean(-1).sum(), error.pow(2).mean(-1).sum()
        stop_logits = predictions["stop_logits"].float()[valid]
        stop_target = stop_targets(piece["padding_mask"])[valid]
        pos_weight = stop_logits.new_tensor(self.cfg.stop_pos_weight)
        stop = F.binary_cross_entropy_with_logits(stop_logits, stop_target, pos_weight=pos_weight, reduction="sum")
        loss = self.cfg.l1_weight * l1 + self.cfg.mse_weight * mse + self.cfg.stop_weight * stop
        guided_sum = loss.new_zeros(())
        if guided:
            guided_sum = guided_attention_penalty(extra["cross_attention"], piece["padding_mask"],
                                                  extra["encoder_out"].padding_mask,
                                                  self.cfg.guided_attention_sigma)[valid].sum()
            loss = loss + self.cfg.guided_attention * guided_sum
        correct = ((stop_logits > 0).float() == stop_target).sum()
        values = torch.stack([loss.detach(), l1.detach(), mse.detach(), stop.detach(), guided_sum.detach(),
                              correct]).tolist()
        steps = int(valid.sum())
        log = dict(zip(("loss", "l1", "mse", "stop_bce", "guided_attention", "stop_correct"), values))
        log.update(ntokens=steps, nsentences=target.size(0), sample_size=steps)
        return loss * sample.get("task_weight", 1.0), steps, log

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict]) -> dict[str, float]:
        """Per step: loss, l1, mse, stop_bce (nats) and the guided-attention penalty (0 when off), and
        stop_accuracy (%)."""
        steps = max(sum(log.get("sample_size", 0) for log in logging_outputs), 1)
        metrics = {key: sum(log.get(key, 0.0) for log in logging_outputs) / steps
                   for key in ("loss", "l1", "mse", "stop_bce", "guided_attention")}
        metrics["stop_accuracy"] = 100.0 * sum(log.get("stop_correct", 0) for log in logging_outputs) / steps
        return metrics
