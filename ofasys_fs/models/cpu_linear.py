"""fp32 linear layers on CPU through oneDNN where that is faster than PyTorch's default BLAS, forward and backward.

Which kernel is faster depends on the machine: on one AMD EPYC, MKL took a slow (AVX2) path and oneDNN ran the
model's matmuls about 2x faster; on another machine of the same kind torch.mm won and the oneDNN path cost
10-14% of training (run_scripts/bench/RESULTS.md). So the choice is measured on first use at each thread
count (`onednn_pays`: a linear layer's forward and backward timed both ways) unless OFASYS_FS_CPU_LINEAR says
`onednn` (always) or `aten` (never). Results are fp32 matmuls either way, equal up to summation order. Calls without gradients skip
the autograd wrapper. Everything else (other devices and dtypes, CPU autocast, torch.compile) uses F.linear.

Large weights are kept in oneDNN's blocked layout only inside `weights_held_constant()` (a decoding call,
which reads the same weights at every step and changes none); this pays on both kinds of machine (decoding's
output projection), so it is used unless the path is set to `aten`. Outside it every call reads the weight as
it is, so a weight changed in place (also through `.data` or numpy, which torch does not count), loaded
by load_state_dict or moved by `.to()` is always followed.

The oneDNN ops are private to torch (`torch.ops.mkldnn._linear_pointwise`, `_reorder_linear_weight`):
checked on torch 2.11.0 (this project's pin; tests/test_cpu_linear.py). A probe on first use compares
them with F.linear, and the path turns itself off with a warning on a torch where they fail or disagree.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import time
import warnings
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

SETTING = os.environ.get("OFASYS_FS_CPU_LINEAR", "auto")  # auto (timed on first use), onednn or aten
ONEDNN = (SETTING != "aten" and torch.backends.mkldnn.is_available()
          and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))
PACK_MIN_ELEMENTS = 2**22  # weights kept laid out for oneDNN within a decoding call: the output projection
# id(weight) -> (weight, its fingerprint when laid out, laid-out copy); None outside weights_held_constant()
LAID_OUT: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("ofasys_fs_laid_out_weights", default=None)


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


@contextlib.contextmanager
def weights_held_constant() -> Iterator[None]:
    """Within the block, weights of PACK_MIN_ELEMENTS+ elements used without gradients are laid out for oneDNN
    once and reused (oneDNN otherwise re-lays them out at every call: 0.7 ms for the tiny arch's output
    projection). For code that changes no weight inside the block, such as one decoding call; a weight that is
    replaced, moved or changed in place (counted by torch) is still laid out again. Nested blocks share one."""
    if LAID_OUT.get() is not None:
        yield
        return
    token = LAID_OUT.set({})
    try:
        yield
    finally:
        LAID_OUT.reset(token)


def fingerprint(weight: torch.Tensor) -> tuple:
    """What changes when a weight is replaced, moved or updated in place through autograd's view of it."""
    version = 0 if weight.is_inference() else weight._version  # inference tensors have no version counter
    return weight.data_ptr(), version, weight.dtype, tuple(weight.shape), weight.stride()


def inference_weight(weight: torch.Tensor) -> torch.Tensor:
    """A large weight in oneDNN's blocked layout inside `weights_held_constant()`, else the weight itself."""
    laid_out = LAID_OUT.get()
    if laid_out is None or weight.numel() < PACK_MIN_ELEMENTS:
        return weight
    key = fingerprint(weight)
    entry = laid_out.get(id(weight))
    if entry is None or entry[0] is not weight or entry[1] != key:
        entry = laid_out[id(weight)] = (weight, key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1))
    return entry[2]


@functools.cache
def onednn_works() -> bool:
    """Whether this torch's private oneDNN ops give F.linear's result (checked once, on first use)."""
    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(shape, generator=generator) for shape in ((8, 16), (24, 16), (24,)))
    try:
        with torch.no_grad():
            plain = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
            laid_out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        expected = F.linear(x, weight, bias)
        works = all(torch.allclose(got, expected, atol=1e-4, rtol=1e-4) for got in (plain, laid_out))
        problem = "its result differs from F.linear's"
    except (RuntimeError, TypeError) as err:
        works, problem = False, f"it failed: {err}"
    if not works:
        warnings.warn(f"ofasys_fs: the oneDNN linear path is off on torch {torch.__version__} ({problem}); linear "
                      f"layers use F.linear (models/cpu_linear.py)", stacklevel=3)
    return works


def onednn_pays() -> bool:
    """Whether oneDNN runs a training linear layer (forward and backward) faster than F.linear on this machine
    at the current thread count (measured once per count: the answer differs between 1 and 2 threads on a
    machine whose other core is busy). OFASYS_FS_CPU_LINEAR=onednn answers yes without measuring."""
    return SETTING == "onednn" or onednn_wins(torch.get_num_threads())


@functools.cache
def onednn_wins(threads: int) -> bool:
    """Times [1024, 256] -> 512, forward and backward, both ways (best of 5 interleaved calls each, in a fraction
    of a second); oneDNN wins by 5%+ or not at all. `threads` keys the cache: it is torch's current count."""
    generator = torch.Generator().manual_seed(0)
    best = {F.linear: float("inf"), OneDNNLinear.apply: float("inf")}
    with torch.inference_mode(False), torch.enable_grad():  # first use may be inside a decoding call
        x, weight, bias = (torch.randn(shape, generator=generator).requires_grad_()
                           for shape in ((1024, 256), (512, 256), (512,)))
        gradient = torch.randn(1024, 512, generator=generator)
        for counted in (False, *[True] * 5):  # the first round warms both up
            for function in best:
                start = time.perf_counter()
                function(x, weight, bias).backward(gradient)
                if counted:
                    best[function] = min(best[function], time.perf_counter() - start)
    return best[OneDNNLinear.apply] < 0.95 * best[F.linear]


def kernel_choice() -> str:
    """What the linear layers use on this machine, for logs and benchmarks."""
    if not (ONEDNN and onednn_works()):
        return "F.linear (oneDNN path off)"
    if onednn_pays():
        return "oneDNN (faster here" + (")" if SETTING == "auto" else ", set by OFASYS_FS_CPU_LINEAR)")
    return "F.linear in training, oneDNN only for decoding's laid-out weights (F.linear faster here)"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """F.linear, through oneDNN for fp32 CPU tensors (outside autocast and torch.compile) where it is faster."""
    if not (ONEDNN and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and prefers_onednn(x.numel() // x.size(-1) if x.size(-1) else 0, weight.size(1), weight.size(0))
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling() and onednn_works()):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return OneDNNLinear.apply(x, weight, bias) if onednn_pays() else F.linear(x, weight, bias)
    laid_out = inference_weight(weight)
    if laid_out is weight and not onednn_pays():
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.size(-1)).contiguous()
    return onednn_matmul(flat, laid_out, bias).view(*x.shape[:-1], weight.size(0))


class Linear(nn.Linear):
    """nn.Linear (same parameters and state dict) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
