"""The fairseq model `ofasys`: the GeneralistModel itself (so fairseq's and ofasys_fs's checkpoints hold the same
state dict keys), with one fairseq arch per ofasys_fs arch (`--arch micro`, ... plugin archs included)."""
from __future__ import annotations

import logging
from typing import Any, Iterable, Optional

from fairseq.models import ARCH_MODEL_NAME_REGISTRY, BaseFairseqModel, register_model, register_model_architecture

from ofasys_fs.hub import described_model
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.registry import ARCH_MODEL, ARCH_REGISTRY, load_builtins

from .config_mirror import mirrored_dataclass, ours_from

logger = logging.getLogger(__name__)

MODEL_NAME = "ofasys"
SET_WHEN_BUILT = ("arch", "ctc_phone_start", "ctc_num_phones")  # fields the arch name or the build decides

OfasysModelConfig = mirrored_dataclass("OfasysModelConfig", ModelConfig, exclude=SET_WHEN_BUILT)


@register_model(MODEL_NAME, dataclass=OfasysModelConfig)
class OfasysModel(BaseFairseqModel, GeneralistModel):
    """GeneralistModel as a fairseq model; `--arch ofasys` means ofasys_fs's default arch."""

    def __init__(self, cfg: ModelConfig, vocab_size: Optional[int] = None,
                 adaptor_names: Optional[Iterable[Optional[str]]] = None):
        GeneralistModel.__init__(self, cfg, vocab_size, adaptor_names)
        self._is_generation_fast = False  # what BaseFairseqModel.__init__ would set

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "OfasysModel":
        """The model the `ofasys` task describes: a checkpoint's stored one, else one built from the flags for the
        task's vocabulary and tasks."""
        stored = task.stored_model_description()
        if stored is not None:
            model = described_model(stored, "the checkpoint's ofasys task state", cls)
        else:
            arch = cfg._name if cfg._name in ARCH_REGISTRY else ModelConfig().arch
            model = cls(ours_from(cfg, ModelConfig, arch=arch)).build_for_tasks(task.vocab, task.tasks)
        task.model_built(model)
        return model


def keep_flags(cfg: Any) -> None:
    """The fairseq side of an ofasys_fs arch: nothing to fill, the arch's preset fills the sizes left unset when
    the model is built (models/archs.py)."""


def register_archs() -> list[str]:
    """Register every generalist arch of ofasys_fs (built-in and from plugins imported so far) as a fairseq arch
    of the model `ofasys`; idempotent. Returns the names registered by this call."""
    load_builtins()
    added = []
    for name in sorted(ARCH_REGISTRY):
        if ARCH_MODEL[name] != "generalist" or ARCH_MODEL_NAME_REGISTRY.get(name) == MODEL_NAME:
            continue
        if name in ARCH_MODEL_NAME_REGISTRY:
            logger.warning("ofasys_fs arch %r is not available in fairseq: fairseq's model %r has an arch of that "
                           "name", name, ARCH_MODEL_NAME_REGISTRY[name])
            continue
        register_model_architecture(MODEL_NAME, name)(keep_flags)
        added.append(name)
    return added
