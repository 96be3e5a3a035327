"""Inpainting during DDIM sampling, the training-free in-betweening of MDM (Tevet et al., 2023): at every step the
predicted clean sample takes the given values where they are known, so the next x_t carries them (noised as
DDIM noises its prediction), the model's other predictions adapt to them, and the result keeps them exactly."""
from __future__ import annotations

import torch

from .scheduler import Predictor


def inpainted(predict_clean: Predictor, given: torch.Tensor, known: torch.Tensor) -> Predictor:
    """`predict_clean` whose predictions [B, T, D] are `given` [B, T, D] at the known frames (known [B, T], True =
    given)."""
    mask = known.to(given.device)[..., None]

    def predict(noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        predicted = predict_clean(noisy, timesteps)
        return torch.where(mask, given.to(predicted.dtype), predicted)

    return predict
