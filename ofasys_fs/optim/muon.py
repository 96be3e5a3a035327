"""The "muon" optimizer: Muon (momentum, then the update orthogonalised by a Newton-Schulz iteration) for the
weight matrices of the transformer layers, AdamW for everything else (embeddings, norms, biases, adaptors, heads).

Muon's update of an m x n matrix is scaled by 0.2 * sqrt(max(m, n)) so that its RMS matches AdamW's (Moonlight's
rule); `muon_lr_scale` multiplies the learning rate of the Muon part on top, so one `lr` and one schedule drive both.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import torch
from torch import nn
from torch.optim.adam import adam as adam_update  # torch's functional Adam(W), fused kernel included

from ..contracts import OptimizerFactory
from ..registry import register_optimizer
from .adamw import AdamWConfig, fused_kernel_takes, weight_decay_groups

# Coefficients of the quintic Newton-Schulz iteration that drives a matrix's singular values towards 1 in a few
# steps (Keller Jordan's Muon); five steps leave them in about [0.7, 1.2], which is what Muon needs.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


@dataclasses.dataclass
class MuonConfig(AdamWConfig):
    momentum: float = 0.95
    muon_lr_scale: float = 10.0  # Muon's learning rate over AdamW's (after the RMS matching above)
    ns_steps: int = 5

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"muon: momentum must be in [0, 1), got {self.momentum}")
        if self.muon_lr_scale <= 0 or self.ns_steps < 1:
            raise ValueError(f"muon: muon_lr_scale must be > 0 and ns_steps >= 1, got {self.muon_lr_scale}, "
                             f"{self.ns_steps}")


def orthogonalise(update: torch.Tensor, steps: int) -> torch.Tensor:
    """The matrix U V^T of update = U S V^T, approximately (Newton-Schulz on the normalised matrix)."""
    a, b, c = NEWTON_SCHULZ
    x = update / (update.norm() + 1e-7)
    wide = x.size(0) <= x.size(1)
    if not wide:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


def layer_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the nn.Linear modules inside the model's transformer layers (a module path through a
    `layers` or `*_layers` list): the hidden matrices Muon is meant for."""
    return [module.weight for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and module.weight.requires_grad
            and any(part.endswith("layers") for part in name.split(".")[:-1])]


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer (one state dict, one schedule) whose groups marked `muon` take Muon steps, the others AdamW."""

    def __init__(self, groups: list[dict], cfg: MuonConfig):
        defaults = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, muon=False)
        super().__init__(groups, defaults)
        self.cfg = cfg

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["muon"]:
                self.muon_step(group, params)
            elif params:
                self.adamw_step(group, params)
        return loss

    def muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        for param in params:
            buffer = self.state[param].setdefault("momentum_buffer", torch.zeros_like(param))
            buffer.mul_(self.cfg.momentum).add_(param.grad)
            update = param.grad.add(buffer, alpha=self.cfg.momentum)  # Nesterov
            lr = group["lr"] * self.cfg.muon_lr_scale * 0.2 * max(param.shape) ** 0.5
            param.mul_(1.0 - group["lr"] * group["weight_decay"])
            param.add_(orthogonalise(update, self.cfg.ns_steps), alpha=-lr)

    def adamw_step(self, group: dict, params: list[torch.Tensor]) -> None:
        fused = all(fused_kernel_takes(p) for p in params)
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=param.device if fused else None)
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
        states = [self.state[p] for p in params]
        adam_update(
            params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
            [s["step"] for s in states], fused=fused or None, foreach=None if fused else False,
            decoupled_weight_decay=True, amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1],
            lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


@register_optimizer("muon", dataclass=MuonConfig)
class Muon(OptimizerFactory):
    """Muon for the transformer layers' matrices, AdamW (fairseq's options, no decay on 1-D) for the rest."""

    def __init__(self, cfg: Optional[MuonConfig] = None):
        self.cfg = cfg or MuonConfig()

    def build(self, params: nn.Module | Iterable) -> torch.optim.Optimizer:
        if not isinstance(params, nn.Module):
            raise TypeError("muon: build() needs the model (it picks the transformer layers' matrices by module)")
        matrices = layer_matrices(params)
        if not matrices:
            raise ValueError("muon: the model has no nn.Linear inside a `layers` list; use optimizer adamw")
        if any(type(p) not in (torch.Tensor, nn.Parameter) for p in matrices):
            raise ValueError("muon: sharded parameters (FSDP) are not supported: Muon orthogonalises whole "
                             "matrices; use --ddp-backend ddp or optimizer adamw")
        chosen = {id(p) for p in matrices}
        rest = [p for p in params.parameters() if id(p) not in chosen]
        groups = [{"params": matrices, "muon": True, "weight_decay": self.cfg.weight_decay}]
        groups += weight_decay_groups(rest, self.cfg.weight_decay) if any(p.requires_grad for p in rest) else []
        return MuonAdamW(groups, self.cfg)
