"""`convert_ofa`: an OFA / OFASys checkpoint -> an ofasys_fs checkpoint that `OFASys.from_pretrained` loads and
`ofasys-train --finetune-from-model` starts from (docs/pretrained.md). `ofasys-convert-ofa` is its command line."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import torch

from .. import __version__
from ..checkpoint import CHECKPOINT_VERSION, model_description, save_checkpoint
from ..models.archs import resolve_config
from ..models.config import ModelConfig
from ..models.generalist import GeneralistModel
from ..preprocess.config import DataConfig
from ..vocab import Vocabulary
from .ofa_sources import OFASource, read_source
from .ofa_vocab import ofasys_rows, source_vocabulary
from .ofa_weights import check_against_model, infer_config, map_weights, ofa_name

MODEL_FIELDS = ("embed_dim", "ffn_embed_dim", "attention_heads", "encoder_layers", "decoder_layers",
                "max_source_positions", "max_target_positions", "text_rel_buckets", "text_rel_max_distance",
                "image_rel_buckets", "resnet_depth", "image_size", "type_embedding", "scale_heads", "scale_attn",
                "scale_fc", "entangle_decoder_positions")  # what a converted model may set apart from its arch


@dataclasses.dataclass
class ConversionReport:
    """What a conversion wrote and what of the source it could not map (source name -> reason)."""

    source: str
    layout: str
    out: str
    config: ModelConfig
    vocab: Vocabulary
    source_tensors: int
    unmapped: dict[str, str]

    def train_flags(self) -> list[str]:
        """The ofasys-train model flags that build this model: its arch plus the fields that differ from it."""
        preset = resolve_config(ModelConfig(arch=self.config.arch))
        flags = ["--arch", self.config.arch]
        for name in MODEL_FIELDS:
            value, flag = getattr(self.config, name), name.replace("_", "-")
            if value != getattr(preset, name):
                flags += [f"--{flag}"] if value is True else [f"--no-{flag}"] if value is False else [f"--{flag}",
                                                                                                      str(value)]
        return flags

    def lines(self) -> list[str]:
        sizes = ", ".join(f"{kind} {len(self.vocab.range(kind))}" for kind in ("text", "code", "bin", "phone")
                          if len(self.vocab.range(kind)))
        lines = [f"converted {self.source} ({self.layout} layout, {self.source_tensors} tensors) -> {self.out}",
                 f"model: arch {self.config.arch}, image_size {self.config.image_size}; vocabulary: {len(self.vocab)} "
                 f"ids ({sizes})"]
        if self.unmapped:
            lines.append(f"not mapped ({len(self.unmapped)} tensors or rows):")
            lines += [f"  {name}: {reason}" for name, reason in sorted(self.unmapped.items())]
        lines.append(f"fine-tune: ofasys-train ... --finetune-from-model {self.out} (this model; to name its arch "
                     f"instead: {' '.join(self.train_flags())})")
        return lines


def convert_ofa(src: str, out: str, bpe_dir: Optional[str] = None, image_size: Optional[int] = None,
                use_ema: bool = False) -> ConversionReport:
    """Convert OFA's fairseq checkpoint, Hugging Face folder or OFASys multitask.pt at `src` into the ofasys_fs
    checkpoint `out` (written atomically). `bpe_dir`: OFA's encoder.json, vocab.bpe, dict.txt (fairseq and OFASys
    files); `image_size`: the image side to preprocess to (default: the one the source was trained with);
    `use_ema`: take a fairseq checkpoint's EMA weights (OFA's --ema-eval). CheckpointError names what does not fit."""
    source = read_source(src, use_ema)
    vocab, text_ids = source_vocabulary(source, bpe_dir)
    weights, unmapped = reorder_rows(source, vocab, text_ids)
    cfg = infer_config(weights, source.settings, image_size)
    mapped = map_weights(weights, cfg)
    adaptors = ["text"] + (["image_resnet"] if cfg.resnet_depth else [])
    with torch.device("meta"):  # shapes only: the source's tensors become the weights (no second copy)
        model = GeneralistModel.from_config(cfg, len(vocab), adaptors)
    state = check_against_model(mapped.state, model.state_dict(), ofa_name)
    model.load_state_dict(state, strict=True, assign=True)
    unmapped.update(mapped.unmapped)
    save_checkpoint(checkpoint_state(model, vocab, source, unmapped), out)
    return ConversionReport(src, source.layout, out, model.cfg, vocab, source.tensors, unmapped)


def reorder_rows(source: OFASource, vocab: Vocabulary,
                 text_ids: list[Optional[int]]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The source's weights with OFASys's embedding rows in our id order (other layouts: as they are)."""
    weights, unmapped = dict(source.weights), dict(source.unmapped)
    if source.token_rows is None:
        return weights, unmapped
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        if key in weights:
            weights[key], unused = ofasys_rows(weights[key], source.token_rows, vocab, text_ids)
    for name in unused:
        unmapped[f"embedding row {name}"] = "a token that ofasys_fs's vocabulary has no id for"
    return weights, unmapped


def checkpoint_state(model: GeneralistModel, vocab: Vocabulary, source: OFASource, unmapped: dict[str, str]) -> dict:
    """A checkpoint (docs/design.md §14) with the converted weights and no training state."""
    return {
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "ema": None,
        "optimizer": None,
        "lr_scheduler": {},
        "sampler": None,
        "rng": {"torch": torch.get_rng_state()},
        "vocab": vocab.to_dict(),
        "config": {"train": {}, **model_description(model, DataConfig.for_model(model.cfg))},
        "tasks": [],
        "user_dirs": [],
        "train_meta": {
            "num_updates": 0, "best_weights": "model",
            "converted_from": {"path": os.path.abspath(source.path), "layout": source.layout,
                               "unmapped": dict(sorted(unmapped.items()))},
            "ofasys_fs_version": __version__, "torch_version": str(torch.__version__),
        },
    }
