"""The diffusion training loss on the predicted clean sample, as OFASys: the error of w x0_hat against w x0 with
w = sqrt(SNR(t) + 1) = 1 / sqrt(1 - alpha_bar_t), so nearly clean inputs (high SNR) weigh more; L1 by default.
`max_snr` caps the SNR in the weight (min-SNR-gamma, Hang et al. 2023): the nearly clean steps, where the prompt
hardly matters, then no longer dominate, and a small model learns the conditioning sooner."""
from __future__ import annotations

from typing import Optional

import torch

from .scheduler import DDIMScheduler, per_row


def corrupt(clean: torch.Tensor, scheduler: DDIMScheduler,
            generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, timesteps): one uniformly drawn timestep per row and Gaussian noise added to `clean` [B, ...]."""
    timesteps = torch.randint(0, scheduler.num_train_timesteps, (clean.size(0),), generator=generator,
                              device=clean.device)
    noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
    return scheduler.add_noise(clean, noise, timesteps), timesteps


def diffusion_loss(predicted: torch.Tensor, clean: torch.Tensor, timesteps: torch.Tensor, scheduler: DDIMScheduler,
                   padding_mask: Optional[torch.Tensor] = None, kind: str = "l1",
                   max_snr: Optional[float] = None) -> torch.Tensor:
    """Per-row loss [B] of predictions [B, T, D] against the clean targets: the SNR-weighted L1 (or squared,
    kind="l2") error averaged over features and over the row's valid frames (padding_mask [B, T], True = pad)."""
    if kind not in ("l1", "l2"):
        raise ValueError(f'diffusion_loss kind must be "l1" or "l2", got {kind!r}')
    snr = scheduler.snr(timesteps)
    weight = per_row((snr if max_snr is None else snr.clamp(max=max_snr)).add(1).sqrt(), predicted)
    error = weight * (predicted - clean)
    error = (error.abs() if kind == "l1" else error.square()).mean(dim=-1)
    valid = torch.ones_like(error) if padding_mask is None else (~padding_mask).to(error.dtype)
    return (error * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1)
