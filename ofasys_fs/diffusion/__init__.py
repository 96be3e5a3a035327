"""Diffusion for continuous outputs (MOTION): the DDIM scheduler on a cosine schedule and the SNR-weighted loss
on the predicted clean sample, inpainting of known values, independent of any model (docs/design.md §11)."""
from .inpainting import inpainted
from .loss import corrupt, diffusion_loss
from .scheduler import DDIMScheduler

__all__ = ["DDIMScheduler", "corrupt", "diffusion_loss", "inpainted"]
