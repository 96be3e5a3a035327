"""The shared front of the generators of continuous outputs (autoregressive_frames, ddim): per-call options are
checked against the generator's config, merged into it, and decoding runs in eval mode without gradients."""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Optional

from ..contracts import Generator
from ..errors import ConfigError
from .sequence import eval_mode


class ContinuousOutputGenerator(Generator):
    """Subclasses are registered with a config dataclass (`config_class`), name what they decode in `outputs`,
    and implement `decode(model, sample, cfg)`."""

    config_class: ClassVar[type]
    outputs: ClassVar[str] = "continuous outputs"

    def __init__(self, cfg: Optional[Any] = None):
        self.cfg = cfg or self.config_class()

    def generate(self, model, sample: dict, **options) -> list[list[dict]]:
        known = [field.name for field in dataclasses.fields(self.config_class)]
        unknown = sorted(set(options) - set(known))
        if unknown:  # e.g. --beam given for a speech or motion output: a user's choice, not a bug
            raise ConfigError(f"generation options {unknown} do not apply to {self.registered_name} ({self.outputs});"
                              f" its options: {', '.join(known)}")
        cfg = dataclasses.replace(self.cfg, **options)
        with eval_mode(model):
            return self.decode(model, sample, cfg)

    @abc.abstractmethod
    def decode(self, model, sample: dict, cfg: Any) -> list[list[dict]]:
        """Per row, its hypotheses (dicts with the generated "frames") under the merged config `cfg`."""
