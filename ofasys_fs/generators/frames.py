"""Generator "autoregressive_frames": continuous outputs (speech mel frames) one decoder step at a time with the
K/V cache, each row stopping when its stop probability passes a threshold or at its maximum length
(docs/design.md §17)."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..errors import ConfigError
from ..registry import register_generator
from .continuous import ContinuousOutputGenerator


@dataclasses.dataclass
class FrameGenerationConfig:
    """The options of GenerationConfig this generator reads (same names and meaning, in decoder steps)."""

    max_len_a: float = 0.0  # steps allowed = max_len_a x source length + max_len_b, within max_target_positions
    max_len_b: int = 200
    min_len: int = 1  # no stop before this many steps
    stop_threshold: float = 0.5
    sampling_seed: Optional[int] = None  # draws the adaptor's decoding noise (prenet dropout); None: torch's global RNG

    def __post_init__(self):
        if self.max_len_a < 0 or self.max_len_b < 0 or self.min_len < 0 or not 0 <= self.stop_threshold < 1:
            raise ConfigError(f"autoregressive_frames: expected max_len_a, max_len_b, min_len >= 0 and stop_threshold "
                              f"in [0, 1), got {self}")


@register_generator("autoregressive_frames", dataclass=FrameGenerationConfig)
class AutoregressiveFrames(ContinuousOutputGenerator):
    """Needs an output adaptor with `step_dim` whose `project` gives {"frames": [B, T, step_dim], "stop_logits":
    [B, T]} and whose position t sees only the steps before t (the audio_mel adaptor). Returns per row one
    hypothesis {"frames": [steps, step_dim] on CPU, "stopped": whether the stop fired, "score": None}."""

    outputs = "continuous outputs such as speech"

    @staticmethod
    def max_steps(model, encoder_out, cfg: FrameGenerationConfig) -> torch.Tensor:
        source = (~encoder_out.padding_mask).sum(dim=1)
        wanted = (cfg.max_len_a * source).long() + cfg.max_len_b
        return wanted.clamp(min=1, max=model.cfg.max_target_positions)

    def decode(self, model, sample: dict, cfg: FrameGenerationConfig) -> list[list[dict]]:
        encoder_out = model.encoder(sample["net_input"]["encoder"])
        name = sample["net_input"]["decoder"]["adaptor"]
        adaptor = model.output_adaptor({"adaptor": name})
        rows = encoder_out.x.size(0)
        limits = self.max_steps(model, encoder_out, cfg)
        steps = encoder_out.x.new_zeros(rows, 0, adaptor.step_dim)
        lengths = torch.zeros(rows, dtype=torch.long, device=steps.device)
        stopped = torch.zeros(rows, dtype=torch.bool, device=steps.device)
        running = torch.ones(rows, dtype=torch.bool, device=steps.device)
        state: dict = {}
        noise = {} if cfg.sampling_seed is None else {
            "dropout_generator": torch.Generator(device=steps.device).manual_seed(cfg.sampling_seed)}
        for _ in range(int(limits.max())):  # finished rows stay in the batch; their extra steps are cut below
            placeholder = steps.new_zeros(rows, 1, adaptor.step_dim)
            piece = {"adaptor": name, "frames": torch.cat([steps, placeholder], dim=1), **noise}
            predictions, _ = model.decode_features(piece, encoder_out, state)
            steps = torch.cat([steps, predictions["frames"][:, -1:].to(steps.dtype)], dim=1)
            lengths = lengths + running.long()
            fires = torch.sigmoid(predictions["stop_logits"][:, -1].float()) > cfg.stop_threshold
            stopped |= running & fires & (lengths >= cfg.min_len)
            running = ~stopped & (lengths < limits)
            if not bool(running.any()):
                break
        frames = steps.float().cpu()
        return [[{"frames": frames[row, :int(lengths[row])], "stopped": bool(stopped[row]), "score": None}]
                for row in range(rows)]

