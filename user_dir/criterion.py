"""Criterion "focal_ce": focal loss (Lin et al. 2017) on top of label-smoothed cross-entropy."""
import dataclasses

import torch

from ofasys_fs import register_criterion
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig


@dataclasses.dataclass
class FocalCEConfig(LabelSmoothedCEConfig):
    gamma: float = 2.0  # focusing strength: 0 gives plain label-smoothed cross-entropy


@register_criterion("focal_ce", dataclass=FocalCEConfig)
class FocalCE(LabelSmoothedCE):
    """Down-weights tokens the model already predicts well by (1 - p_target) ** gamma."""

    def token_losses(self, lprobs, target, allowed):
        loss, nll = super().token_losses(lprobs, target, allowed)
        p_target = torch.exp(-nll.detach())
        return (1.0 - p_target) ** self.cfg.gamma * loss, nll
