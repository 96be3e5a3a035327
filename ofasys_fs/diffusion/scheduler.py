"""DDIM (Song et al., 2021) on the cosine schedule of Nichol & Dhariwal (2021), with the network predicting the
clean sample x0 (as OFASys's motion decoder, diffusers' "squaredcos_cap_v2" and prediction_type="sample").

    alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi / 2),   beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), 0.999)
    alphas_cumprod[t] = prod_{i <= t} (1 - beta_i)          (= alpha_bar((t+1)/T) / alpha_bar(0) until the cap)
    x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps
    DDIM (eta = 0): x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps_hat,  eps_hat = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

COSINE_OFFSET = 0.008
MAX_BETA = 0.999
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t [B, ...], timesteps [B]) -> x0 [B, ...]


def cosine_alpha_bar(fraction: float) -> float:
    """Nichol & Dhariwal's cumulative signal level at diffusion time `fraction` in [0, 1]."""
    return math.cos((fraction + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


class DDIMScheduler:
    """The training noise levels (`alphas_cumprod`, float64) and deterministic DDIM sampling."""

    def __init__(self, num_train_timesteps: int = 1000):
        if num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
        self.num_train_timesteps = num_train_timesteps
        betas = [min(1 - cosine_alpha_bar((t + 1) / num_train_timesteps) / cosine_alpha_bar(t / num_train_timesteps),
                     MAX_BETA) for t in range(num_train_timesteps)]
        self.alphas_cumprod = torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), dim=0)

    def alpha_bar(self, timesteps: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod at integer timesteps; -1 (before the first step) is the clean signal, 1."""
        table = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod]).to(timesteps.device)
        return table[timesteps.long() + 1]

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) (float64)."""
        alpha_bar = self.alpha_bar(timesteps)
        return alpha_bar / (1 - alpha_bar)

    def add_noise(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t for each row's timestep: timesteps [B], clean and noise [B, ...]."""
        alpha_bar = per_row(self.alpha_bar(timesteps), clean)
        return alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise

    def predicted_noise(self, noisy: torch.Tensor, clean: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The noise that turns `clean` into `noisy` at the rows' timesteps."""
        alpha_bar = per_row(self.alpha_bar(timesteps), noisy)
        return (noisy - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()

    def timesteps(self, num_inference_steps: int) -> list[int]:
        """Evenly spaced timesteps from the noisiest, "leading" spacing as diffusers: 980, 960, ..., 0 for 50 of
        1000."""
        if not 1 <= num_inference_steps <= self.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in 1..{self.num_train_timesteps}, got {num_inference_steps}")
        ratio = self.num_train_timesteps // num_inference_steps
        return [step * ratio for step in reversed(range(num_inference_steps))]

    def step(self, noisy: torch.Tensor, clean: torch.Tensor, timestep: int, previous: int) -> torch.Tensor:
        """One deterministic DDIM step from `timestep` to `previous` (-1 after the last) given the predicted x0."""
        batch = noisy.size(0)
        now = torch.full((batch,), timestep, device=noisy.device)
        alpha_prev = per_row(self.alpha_bar(torch.full((batch,), previous, device=noisy.device)), noisy)
        noise = self.predicted_noise(noisy, clean, now)
        return alpha_prev.sqrt() * clean + (1 - alpha_prev).sqrt() * noise

    @torch.no_grad()
    def sample(self, predict_clean: Predictor, shape: tuple, num_inference_steps: int = 50,
               generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x0 from Gaussian noise of `shape` by DDIM; the same generator seed gives the same samples."""
        noisy = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        steps = self.timesteps(num_inference_steps)
        clean = noisy
        for timestep, previous in zip(steps, steps[1:] + [-1]):
            clean = predict_clean(noisy, torch.full((shape[0],), timestep, device=noisy.device, dtype=torch.long))
            noisy = self.step(noisy, clean, timestep, previous).to(dtype)
        return clean


def per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-row values [B] shaped to broadcast over `like` [B, ...], in its dtype."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
