"""Image tokenizer "vqgan": taming-transformers' VQGAN, the tokenizer OFASys generates images with (a Gumbel
quantiser, 8192 codes, 256 px -> 32 x 32 codes), or its nearest-neighbour variant (VQModel).

No VQGAN weights can be installed offline, so a user brings theirs in taming's layout, a checkpoint and its
YAML config: `VQGANTokenizer.from_taming(ckpt, yaml)` (or `ofasys-train-image-tokenizer --from-vqgan CKPT
--vqgan-config YAML --out tok.pt`) converts them to an ofasys_fs tokenizer file. Codes are read without
sampling: the argmax of the Gumbel logits, or the nearest codebook vector.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
import yaml
from torch import nn

from ..checkpoint import load_torch_file
from ..contracts import ImageTokenizer
from ..errors import CheckpointError, ConfigError
from ..options import at_least, check_fields, option
from ..registry import register_image_tokenizer
from .vqgan_layers import Decoder, Encoder

DDCONFIG_KEYS = ("ch", "out_ch", "ch_mult", "num_res_blocks", "attn_resolutions", "in_channels", "resolution",
                 "z_channels")
# the Gumbel VQGAN OFASys generates with (taming's vqgan_gumbel_f8: 256 px -> 32 x 32 codes of 8192)
OFASYS_DDCONFIG = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                   "ch_mult": [1, 1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [32], "dropout": 0.0}
WEIGHT_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.")  # the rest: losses


@dataclasses.dataclass
class VQGANConfig:
    """taming's `model.params`: the encoder/decoder `ddconfig`, the codebook size and width, the quantiser."""

    ddconfig: dict[str, Any] = option(dict(OFASYS_DDCONFIG), "taming's ddconfig (ch, ch_mult, num_res_blocks, "
                                                             "attn_resolutions, in_channels, out_ch, resolution, "
                                                             "z_channels, dropout); default: OFASys's")
    n_embed: int = option(8192, "codebook size (codes)", check=at_least(1))
    embed_dim: int = option(256, "codebook vector width", check=at_least(1))
    quantizer: Literal["gumbel", "nearest"] = option("gumbel", "gumbel (GumbelVQ, OFASys's) or nearest (VQModel)")

    def __post_init__(self) -> None:
        check_fields(self, "vqgan tokenizer config")
        missing = [key for key in DDCONFIG_KEYS if key not in self.ddconfig]
        if missing:
            raise ConfigError(f"vqgan tokenizer: ddconfig lacks {missing} (taming's model.params.ddconfig)")
        if self.quantizer == "gumbel" and self.ddconfig["z_channels"] != self.embed_dim:
            raise ConfigError(f"vqgan tokenizer: a Gumbel VQGAN has z_channels = embed_dim, got "
                              f"{self.ddconfig['z_channels']} and {self.embed_dim}")


class GumbelCodes(nn.Module):
    """taming's GumbelQuantize without sampling: codes are the argmax of its logits."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.ddconfig["z_channels"], cfg.n_embed, 1)
        self.embed = nn.Embedding(cfg.n_embed, cfg.embed_dim)

    def codes(self, latents: torch.Tensor) -> torch.Tensor:
        return self.proj(latents).argmax(dim=1)

    def vectors(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embed(codes).permute(0, 3, 1, 2)


class NearestCodes(nn.Module):
    """taming's VectorQuantizer2: the nearest codebook vector."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.n_embed, cfg.embed_dim)

    def codes(self, latents: torch.Tensor) -> torch.Tensor:
        flat = latents.permute(0, 2, 3, 1)
        distances = torch.cdist(flat.reshape(1, -1, flat.size(-1)), self.embedding.weight[None])[0]
        return distances.argmin(dim=1).view(flat.shape[:3])

    def vectors(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embedding(codes).permute(0, 3, 1, 2)


@register_image_tokenizer("vqgan", dataclass=VQGANConfig)
class VQGANTokenizer(ImageTokenizer):
    """taming's VQModel / GumbelVQ: images in [0, 1] (taming's [-1, 1] inside) <-> codes."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.cfg = cfg
        dd = cfg.ddconfig
        side = dd["resolution"] // 2 ** (len(dd["ch_mult"]) - 1)
        self.num_codes, self.grid = cfg.n_embed, (side, side)
        self.image_size, self.channels = dd["resolution"], dd["in_channels"]
        self.encoder, self.decoder = Encoder(**dd), Decoder(**dd)
        self.quant_conv = nn.Conv2d(dd["z_channels"], cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, dd["z_channels"], 1)
        self.quantize = GumbelCodes(cfg) if cfg.quantizer == "gumbel" else NearestCodes(cfg)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.quantize.codes(self.quant_conv(self.encoder(images * 2 - 1)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        decoded = self.decoder(self.post_quant_conv(self.quantize.vectors(codes)))
        return ((decoded + 1) / 2).clamp(0, 1)

    @classmethod
    def from_taming(cls, checkpoint: str, config: str) -> "VQGANTokenizer":
        """A taming-transformers VQGAN from its checkpoint (`state_dict`) and YAML config (`model.params`)."""
        tokenizer = cls(taming_config(config))
        weights = {key: value for key, value in taming_weights(checkpoint).items() if key.startswith(WEIGHT_PREFIXES)}
        try:
            tokenizer.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"VQGAN checkpoint {checkpoint} does not fit its config {config}: "
                                  f"{' '.join(str(err).split())[:300]}") from err
        return tokenizer.eval().requires_grad_(False)


def taming_config(path: str) -> VQGANConfig:
    """VQGANConfig from taming's YAML: `model.target` (GumbelVQ or VQModel) and `model.params`."""
    try:
        with open(path, encoding="utf-8") as handle:
            model = (yaml.safe_load(handle) or {}).get("model") or {}
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise ConfigError(f"VQGAN config {path}: not a readable taming YAML file ({err})") from err
    params = model.get("params") if isinstance(model, dict) else None
    if not isinstance(params, dict) or "ddconfig" not in params:
        raise ConfigError(f"VQGAN config {path}: expected taming's layout, model: {{target, params: {{ddconfig, "
                          f"n_embed, embed_dim}}}}")
    target = str(model.get("target", ""))
    quantizer = "gumbel" if target.endswith("GumbelVQ") else "nearest" if target.endswith("VQModel") else None
    if quantizer is None:
        raise ConfigError(f"VQGAN config {path}: model.target {target!r} is neither taming.models.vqgan.GumbelVQ "
                          f"nor taming.models.vqgan.VQModel")
    dd = {key: list(value) if isinstance(value, (list, tuple)) else value for key, value in params["ddconfig"].items()}
    return VQGANConfig(ddconfig=dd, n_embed=int(params.get("n_embed", 0)), embed_dim=int(params.get("embed_dim", 0)),
                       quantizer=quantizer)


def taming_weights(path: str) -> dict:
    """The `state_dict` of a taming (PyTorch Lightning) checkpoint, loaded without running code."""
    state = load_torch_file(path, "VQGAN checkpoint")
    weights = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not any(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"VQGAN checkpoint {path}: expected a dict of tensors under 'state_dict'")
    return weights
