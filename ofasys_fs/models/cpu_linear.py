"""fp32 linear layers on CPU through oneDNN instead of PyTorch's default BLAS, forward and backward.

PyTorch's CPU matmul goes to MKL, which takes a slow (AVX2) path on AMD CPUs; oneDNN picks its kernels
from the CPU's instruction set and ran the model's matmuls about 2x faster there (run_scripts/bench/
RESULTS.md). Results are fp32 matmuls like MKL's, up to summation order. Calls without gradients skip the
autograd wrapper and keep the largest weights in oneDNN's layout. Everything else (other devices and
dtypes, CPU autocast, torch.compile) uses F.linear. Set OFASYS_FS_CPU_LINEAR=aten to turn it off.
"""
from __future__ import annotations

import os
import weakref
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

ONEDNN = (os.environ.get("OFASYS_FS_CPU_LINEAR", "onednn") != "aten" and torch.backends.mkldnn.is_available()
          and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))
PACK_MIN_ELEMENTS = 2**22  # weights kept laid out for oneDNN between calls without gradients: the output projection
PACKED: dict[int, tuple] = {}  # id(weight) -> (weakref to it, (version, data pointer) when laid out, laid-out copy)


def prefers_onednn(rows: int, inner: int, outer: int) -> bool:
    """Whether oneDNN beats the default BLAS on [rows, inner] @ [inner, outer] (measured on this project's
    CPUs: its fixed cost per call loses on small products, and it is slower with few rows and inner > outer)."""
    return rows * inner * outer >= 2**21 and (rows >= 64 or inner <= outer)


def onednn_matmul(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [M, K] @ weight [N, K]^T (+ bias [N]) -> [M, N] by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ b [K, N], by oneDNN where it is faster."""
    if prefers_onednn(a.size(0), a.size(1), b.size(1)):
        return onednn_matmul(a.contiguous(), b.t().contiguous())
    return torch.mm(a, b)


class OneDNNLinear(torch.autograd.Function):
    """F.linear's maths with the output, input-gradient and weight-gradient matmuls in oneDNN where faster."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        flat = x.reshape(-1, x.size(-1)).contiguous()
        ctx.save_for_backward(flat, weight)
        ctx.input_shape, ctx.has_bias = x.shape, bias is not None
        return onednn_matmul(flat, weight, bias).view(*x.shape[:-1], weight.size(0))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        flat, weight = ctx.saved_tensors
        grad = grad.reshape(-1, weight.size(0))
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = product(grad, weight).view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            grad_weight = product(grad.t(), flat)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=0)
        return grad_x, grad_weight, grad_bias


def inference_weight(weight: torch.Tensor) -> torch.Tensor:
    """A large weight in oneDNN's blocked layout, kept until the weight changes, for calls without gradients:
    oneDNN otherwise re-lays it out at every call (0.7 ms for the tiny arch's output projection)."""
    if weight.numel() < PACK_MIN_ELEMENTS or weight.is_inference():  # inference tensors have no version counter
        return weight
    key = (weight._version, weight.data_ptr())
    cached = PACKED.get(id(weight))
    if cached is None or cached[0]() is not weight or cached[1] != key:
        if cached is None:
            weakref.finalize(weight, PACKED.pop, id(weight), None)
        cached = PACKED[id(weight)] = (weakref.ref(weight), key,
                                       torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1))
    return cached[2]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """F.linear, through oneDNN for fp32 CPU tensors (outside autocast and torch.compile) where it is faster."""
    if not (ONEDNN and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and prefers_onednn(x.numel() // x.size(-1) if x.size(-1) else 0, weight.size(1), weight.size(0))
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return OneDNNLinear.apply(x, weight, bias)
    flat = x.reshape(-1, x.size(-1)).contiguous()
    return onednn_matmul(flat, inference_weight(weight), bias).view(*x.shape[:-1], weight.size(0))


class Linear(nn.Linear):
    """nn.Linear (same parameters and state dict) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
