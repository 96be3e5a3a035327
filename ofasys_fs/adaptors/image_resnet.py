"""Adaptor "image_resnet": OFA's image path, the stem and stages 1-3 of a ResNet (output stride 16,
1024 channels) -> one embedding per feature-grid cell (480 px -> 30 x 30 = 900 tokens)."""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..models.config import RESNET_STAGE_BLOCKS, ModelConfig
from ..models.layers import DropPath, drop_path_rates, type_vector
from ..models.task_batch_norm import TaskBatchNorm2d, is_task_statistic
from ..registry import register_adaptor
from .image_grid import grid_output, grid_positions, image_tensor

STEM_CHANNELS = 64
STAGE_PLANES = (64, 128, 256)  # bottleneck widths of layer1..layer3
EXPANSION = 4  # a bottleneck outputs 4x its width
OUTPUT_CHANNELS = STAGE_PLANES[-1] * EXPANSION  # 1024
OUTPUT_STRIDE = 16
TRUNK_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")  # torchvision state_dict keys kept


def batch_norm(channels: int) -> TaskBatchNorm2d:
    """BatchNorm with statistics per task (models/task_batch_norm.py), plain BatchNorm's kernel in one process."""
    return TaskBatchNorm2d(channels, local_kernel=True)


def resnet_grid_side(image_side: int) -> int:
    """Feature-grid side for an image side: each of the four padded stride-2 steps rounds up."""
    return -(-image_side // OUTPUT_STRIDE)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand, each with BatchNorm (statistics per task), plus the
    shortcut; ReLU after the sum (the residual branch through drop-path). Written here (names as torchvision's) so
    that importing the model does not import torchvision."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 drop_path: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = batch_norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = batch_norm(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, task: Optional[str] = None) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample[1](self.downsample[0](x), task)
        out = self.relu(self.bn1(self.conv1(x), task))
        out = self.relu(self.bn2(self.conv2(out), task))
        return self.relu(self.drop_path(self.bn3(self.conv3(out), task)) + shortcut)


def resnet_stage(in_channels: int, planes: int, blocks: int, stride: int, drop_path: float = 0.0) -> nn.Sequential:
    """`blocks` bottlenecks; the first changes stride/width through a 1x1 conv + BN shortcut (torchvision layout).
    Drop-path rises linearly to `drop_path` over the stage; the first block has none (OFA's ResNet)."""
    out_channels = planes * EXPANSION
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                 batch_norm(out_channels))
    first = Bottleneck(in_channels, planes, stride=stride, downsample=shortcut)
    rates = drop_path_rates(drop_path, blocks)
    return nn.Sequential(first, *(Bottleneck(out_channels, planes, drop_path=rates[i]) for i in range(1, blocks)))


class ResNetTrunk(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) + layer1..layer3 of ResNet-50/101/152; parameter names
    match torchvision's ResNet so its state_dict loads directly."""

    def __init__(self, depth: int, drop_path: float = 0.0):
        super().__init__()
        if depth not in RESNET_STAGE_BLOCKS:
            raise ValueError(f"image_resnet: resnet_depth must be one of {tuple(RESNET_STAGE_BLOCKS)}, got {depth}")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = batch_norm(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = STEM_CHANNELS
        for index, (planes, blocks) in enumerate(zip(STAGE_PLANES, RESNET_STAGE_BLOCKS[depth])):
            stage = resnet_stage(in_channels, planes, blocks, stride=1 if index == 0 else 2, drop_path=drop_path)
            self.add_module(f"layer{index + 1}", stage)
            in_channels = planes * EXPANSION
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, image: torch.Tensor, task: Optional[str] = None) -> torch.Tensor:
        """[B, 3, H, W] of one task's rows (None: statistics of all tasks) -> [B, 1024, ceil(H / 16), ceil(W / 16)]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(image), task)))
        for stage in (self.layer1, self.layer2, self.layer3):
            for block in stage:
                x = block(x, task)
        return x

    def load_torchvision_weights(self, path: str) -> None:
        """Load the stem and layer1-3 from a torchvision ResNet state_dict file (layer4 and fc are ignored);
        any missing, unexpected or mis-shaped trunk key is a ValueError listing them."""
        where = f"image_backbone_weights {path!r}"
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{where}: no such file (expected a torchvision ResNet-{self.depth} state_dict .pth)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # weights_only runs no code from the file; damaged files raise many types
            text = " ".join(str(err).split())
            reason = (text.partition("WeightsUnpickler error:")[2] or text).split(" Please ")[0].strip()[:200]
            raise ValueError(f"{where}: not loadable as a state_dict of tensors (damaged, or holding objects that "
                             f"could run code; nothing in it was run): {reason}") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{where}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
        trunk_state = {key: value for key, value in state.items() if key.startswith(TRUNK_PREFIXES)}
        own = self.state_dict()
        # BatchNorm counters are absent from old torchvision files and do not affect the outputs; statistics per
        # task are ours (they start empty).
        missing = [key for key in own if key not in trunk_state and not key.endswith("num_batches_tracked")
                   and not is_task_statistic(key)]
        unexpected = [key for key in trunk_state if key not in own]
        mismatched = [f"{key} {list(value.shape)} (model: {list(own[key].shape)})"
                      for key, value in trunk_state.items() if key in own and value.shape != own[key].shape]
        problems = [f"{label}: {len(keys)} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})"
                    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                        ("shape mismatches", mismatched)) if keys]
        if problems:
            raise ValueError(f"{where} does not hold the stem + layer1-3 of a torchvision ResNet-{self.depth} "
                             f"(model resnet_depth={self.depth}): " + "; ".join(problems))
        self.load_state_dict(trunk_state, strict=False)


@register_adaptor("image_resnet")
class ImageResNetAdaptor(Adaptor):
    """Image [B, 3, H, W] -> ResNet stages 1-3 -> 1x1 projection to embed_dim (+ a type vector with type_embedding)
    + layer norm, one token per 16 x 16 px cell; 2-D position vectors and relative bias per encoder layer in the
    image_positions style.

    `freeze_backbone()` (the trainer's --freeze-image-backbone) stops the trunk's gradients and keeps its
    BatchNorm layers in eval mode, also across later `model.train()` calls.
    """

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        if model_cfg.resnet_depth is None:
            raise ValueError(f'image_resnet adaptor: model config "resnet_depth" is not set (arch "{model_cfg.arch}"); '
                             f"use one of {tuple(RESNET_STAGE_BLOCKS)}")
        self.image_size = model_cfg.image_size
        self.backbone = ResNetTrunk(model_cfg.resnet_depth, model_cfg.resnet_drop_path_rate)
        if model_cfg.image_backbone_weights:
            self.backbone.load_torchvision_weights(model_cfg.image_backbone_weights)
        self.proj = nn.Conv2d(OUTPUT_CHANNELS, model_cfg.embed_dim, kernel_size=1)
        self.layer_norm = nn.LayerNorm(model_cfg.embed_dim)
        self.positions = grid_positions(resnet_grid_side(self.image_size), model_cfg, owner="image_resnet adaptor")
        self.type_embedding = type_vector(model_cfg.embed_dim) if model_cfg.type_embedding else None
        self.backbone_frozen = False

    def freeze_backbone(self) -> None:
        """No gradients for the trunk and BatchNorm statistics fixed (eval mode) from now on."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode: bool = True) -> "ImageResNetAdaptor":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        image = image_tensor(batch, "image_resnet adaptor")
        height, width = image.shape[-2:]
        if max(height, width) > self.image_size:
            raise ValueError(f"image_resnet adaptor: got {height}x{width} px images; expected sides of at most "
                             f"image_size={self.image_size} (model config)")
        features = self.proj(self.backbone(image, batch.get("task")))  # [B, D, rows, cols]
        return grid_output(features, self.layer_norm, self.positions, self.type_embedding)
