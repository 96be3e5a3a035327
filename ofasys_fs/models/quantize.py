"""Optional int8 decoding on CPU: dynamic quantisation of the model's linear layers (docs/inference.md, "int8").

Each nn.Linear (also cpu_linear.Linear) and each decoder's output projection over the shared embedding
table (`Decoder.output_projection`: the largest product of a decoding step) become `Int8Linear`s: the weight
quantised once to int8, per output row and symmetric (scale = max |w| / 127), the input quantised per call
from the call's own range (dynamic, per tensor), the product in int8 by PyTorch's quantized CPU kernels
(fbgemm / oneDNN), the bias and output in fp32. The input gets 8 bits on CPUs with VNNI and 7 without
(`REDUCE_RANGE`: there the kernels sum pairs of products in int16, which 8 bits could overflow); 7 bits
doubled the error of a layer and changed 4 of the 12 captions of the tests' micro model, 8 bits none. What
torch.ao.quantization.quantize_dynamic does with a per-channel qconfig, without its module type checks (which
refuse nn.Linear subclasses) and its deprecated API. Embeddings, layer norms and attention stay fp32. The
result is for inference only (no gradients, CPU only); the weights of a quantised model are a snapshot:
quantise again after loading new ones.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError

QUANTIZE_CHOICES = ("int8",)


@functools.cache
def cpu_has_vnni() -> bool:
    """Whether the CPU has int8 dot products into int32 (AVX512-VNNI or AVX-VNNI; read from Linux's cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def reduce_range() -> bool:
    """7-bit inputs where 8 bits could overflow the kernels' int16 sums (no VNNI)."""
    return not cpu_has_vnni()


def has_int8_kernels() -> bool:
    """Whether this torch build has the quantized CPU linear kernels."""
    return hasattr(torch.ops.quantized, "linear_dynamic") and torch.backends.quantized.engine != "none"


class Int8Linear(nn.Module):
    """F.linear(x, weight, bias) with an int8 copy of `weight` (per output row) and the input quantised per call."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None):
        super().__init__()
        weight = weight.detach().to("cpu", torch.float32)
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        zero_points = torch.zeros(weight.size(0), dtype=torch.long)
        quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        bias = None if bias is None else bias.detach().to("cpu", torch.float32)
        self.out_features, self.in_features = weight.shape
        self.packed = torch.ops.quantized.linear_prepack(quantized, bias)
        self.reduce_range = reduce_range()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.contiguous(), self.packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weight=int8 per row"


def quantize_linear_layers(model: nn.Module, kind: str) -> int:
    """Replace every nn.Linear of `model` (in place, CPU) and every decoder's output projection by its `kind`
    ("int8") version; returns how many.
    A ConfigError for an unknown kind, a model off the CPU or a torch without the kernels."""
    if kind not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize={kind!r}: expected one of {list(QUANTIZE_CHOICES)}")
    devices = {parameter.device.type for parameter in model.parameters()}
    if devices - {"cpu"}:
        raise ConfigError(f"quantize={kind!r} decodes on CPU only (dynamic int8 kernels); the model is on "
                         f"{sorted(devices)}: load it with device='cpu'")
    if not has_int8_kernels():
        raise ConfigError(f"quantize={kind!r}: this torch build ({torch.__version__}) has no quantized CPU kernels")
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child.weight, child.bias))
    decoders = [module for module in model.modules() if hasattr(module, "output_projection")]
    for decoder in decoders:
        decoder.output_projection = Int8Linear(decoder.tokens.embed_tokens.weight)
    model.eval()
    return len(targets) + len(decoders)
