"""models/cpu_linear.py: oneDNN linear layers give F.linear's outputs and gradients, and are used only where chosen."""
import pytest
import torch
import torch.nn.functional as F

from ofasys_fs.models import cpu_linear
from ofasys_fs.models.cpu_linear import Linear, linear, prefers_onednn

pytestmark = pytest.mark.skipif(not cpu_linear.ONEDNN, reason="oneDNN linear not available in this PyTorch build")


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the oneDNN matmuls."""
    calls = []
    original = cpu_linear.onednn_matmul

    def counted(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(cpu_linear, "onednn_matmul", counted)
    return calls


@pytest.mark.parametrize("shape", [(3, 50, 160), (2, 64, 128)])  # [.., rows, in] x [in -> out]
@pytest.mark.parametrize("transposed_input", [False, True])
def test_outputs_and_gradients_equal_f_linear(shape, transposed_input, onednn_calls):
    g = torch.Generator().manual_seed(0)
    batch, rows, inner = shape
    outer = 192
    x = torch.randn(batch, inner, rows, generator=g).transpose(1, 2) if transposed_input else \
        torch.randn(batch, rows, inner, generator=g)
    weight = torch.randn(outer, inner, generator=g) * inner**-0.5
    bias = torch.randn(outer, generator=g)
    grads = {}
    for name, function in (("aten", F.linear), ("onednn", linear)):
        inputs = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
        out = function(*inputs)
        (out * torch.linspace(-1, 1, outer)).sum().backward()
        grads[name] = (out, *(t.grad for t in inputs))
    assert onednn_calls, "the oneDNN path was not taken"
    for expected, got in zip(grads["aten"], grads["onednn"]):
        torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_dispatch_rule_and_fallbacks(onednn_calls):
    assert prefers_onednn(512, 768, 768) and prefers_onednn(16, 768, 17470)
    assert not prefers_onednn(16, 256, 256)  # too small: the fixed cost per call loses
    assert not prefers_onednn(16, 3072, 768)  # few rows, inner > outer: slower in oneDNN
    layer = Linear(64, 64)
    layer(torch.randn(4, 64))
    assert not onednn_calls
    big = Linear(256, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert big(torch.randn(128, 256)).dtype == torch.bfloat16  # autocast keeps F.linear's casting
    assert not onednn_calls
    assert big(torch.randn(128, 256)).dtype == torch.float32
    assert len(onednn_calls) == 1
    assert set(big.state_dict()) == {"weight", "bias"}  # nn.Linear's parameters: checkpoints unchanged


def test_calls_without_gradients_keep_large_weights_laid_out_until_they_change():
    g = torch.Generator().manual_seed(1)
    weight = torch.nn.Parameter(torch.randn(2**14, 256, generator=g) * 0.05)  # 2**22 elements: laid out
    x = torch.randn(16, 256, generator=g)
    with torch.no_grad():
        first = linear(x, weight)
        assert id(weight) in cpu_linear.PACKED
        torch.testing.assert_close(first, F.linear(x, weight), atol=2e-5, rtol=1e-5)
        weight.mul_(-1)  # an optimizer step or a checkpoint load changes the weight in place
        torch.testing.assert_close(linear(x, weight), -first, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(linear(x, weight), -first, atol=2e-5, rtol=1e-5)  # the autograd path agrees
    del weight
    assert not any(entry[0]() is None for entry in cpu_linear.PACKED.values())  # no entry outlives its weight
