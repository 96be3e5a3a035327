"""models/cpu_linear.py: oneDNN linear layers give F.linear's outputs and gradients, and are used only where chosen."""
import time

import pytest
import torch
import torch.nn.functional as F

from ofasys_fs.models import cpu_linear
from ofasys_fs.models.cpu_linear import Linear, linear, prefers_onednn

pytestmark = pytest.mark.skipif(not cpu_linear.ONEDNN, reason="oneDNN linear not available in this PyTorch build")


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the oneDNN matmuls, with oneDNN chosen as if it were the faster kernel on this machine."""
    monkeypatch.setattr(cpu_linear, "onednn_pays", lambda: True)
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


def test_where_f_linear_is_faster_training_uses_it_and_decoding_keeps_laid_out_weights(onednn_calls, monkeypatch):
    monkeypatch.setattr(cpu_linear, "onednn_pays", lambda: False)
    layer = Linear(256, 256)
    layer(torch.randn(128, 256)).sum().backward()
    with torch.no_grad():
        layer(torch.randn(128, 256))
    assert not onednn_calls
    weight, x = big_weight()
    with torch.no_grad(), cpu_linear.weights_held_constant():
        torch.testing.assert_close(linear(x, weight), F.linear(x, weight), atol=2e-5, rtol=1e-5)
    assert len(onednn_calls) == 1


def test_the_kernel_is_chosen_by_timing_both(monkeypatch):
    """onednn_wins times a training call both ways: a oneDNN path made slow loses, one made instant wins."""
    real = cpu_linear.OneDNNLinear

    def timed_as(extra_seconds):
        class Timed:
            @staticmethod
            def apply(*args):
                out = real.apply(*args)
                time.sleep(extra_seconds)
                return out
        return Timed

    monkeypatch.setattr(cpu_linear, "SETTING", "auto")  # the suite fixes it (conftest.py)
    monkeypatch.setattr(cpu_linear, "OneDNNLinear", timed_as(0.05))
    assert not cpu_linear.onednn_wins.__wrapped__(1)
    monkeypatch.setattr(cpu_linear.F, "linear", lambda *args: (time.sleep(0.05), real.apply(*args))[1])
    monkeypatch.setattr(cpu_linear, "OneDNNLinear", timed_as(0))
    assert cpu_linear.onednn_wins.__wrapped__(1)
    monkeypatch.setattr(cpu_linear, "SETTING", "onednn")
    monkeypatch.setattr(cpu_linear, "OneDNNLinear", timed_as(0.05))
    assert cpu_linear.onednn_pays()  # set by the environment: not measured


def big_weight(seed: int = 1) -> tuple[torch.nn.Parameter, torch.Tensor]:
    """A weight of PACK_MIN_ELEMENTS elements (laid out inside weights_held_constant) and an input."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.randn(2**14, 256, generator=g) * 0.05), torch.randn(16, 256, generator=g)


def expect_f_linear(x, weight):
    with torch.no_grad():
        torch.testing.assert_close(linear(x, weight), F.linear(x, weight), atol=2e-5, rtol=1e-5)


def test_outside_a_decoding_call_every_change_of_the_weight_is_followed():
    weight, x = big_weight()
    expect_f_linear(x, weight)
    assert cpu_linear.LAID_OUT.get() is None  # nothing is kept between calls
    weight.data.mul_(-1)  # through .data: torch's version counter does not see it
    expect_f_linear(x, weight)
    weight.detach().numpy()[:5] = 0.5  # through numpy: nor this
    expect_f_linear(x, weight)
    layer = Linear(256, 2**14, bias=False)
    layer.load_state_dict({"weight": weight.detach() * 2})
    expect_f_linear(x, layer.weight)
    torch.testing.assert_close(layer(x), F.linear(x, weight.detach() * 2), atol=2e-5, rtol=1e-5)
    layer.to(torch.float64)  # moved: F.linear's dtype rules apply, and back
    assert layer(x.double()).dtype == torch.float64
    layer.to(torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, weight * 2), atol=2e-5, rtol=1e-5)


def test_within_a_decoding_call_large_weights_are_laid_out_once_and_refreshed_when_they_change():
    weight, x = big_weight()
    with torch.no_grad(), cpu_linear.weights_held_constant():
        first = linear(x, weight)
        laid_out = cpu_linear.LAID_OUT.get()[id(weight)][2]
        torch.testing.assert_close(first, F.linear(x, weight), atol=2e-5, rtol=1e-5)
        with cpu_linear.weights_held_constant():  # a nested block shares the outer one's copies
            linear(x, weight)
            assert cpu_linear.LAID_OUT.get()[id(weight)][2] is laid_out
        weight.mul_(-1)  # an in-place update torch counts
        torch.testing.assert_close(linear(x, weight), -first, atol=2e-5, rtol=1e-5)
        assert cpu_linear.LAID_OUT.get()[id(weight)][2] is not laid_out
        weight.data = weight.detach() * -2  # replaced
        torch.testing.assert_close(linear(x, weight), first * 2, atol=2e-5, rtol=1e-5)
        small = torch.randn(64, 256)
        linear(x, small)
        assert id(small) not in cpu_linear.LAID_OUT.get()  # only the large ones are kept
    assert cpu_linear.LAID_OUT.get() is None  # the copies end with the block
    torch.testing.assert_close(linear(x, weight), first * 2, atol=2e-5, rtol=1e-5)  # the autograd path agrees


def test_decoding_follows_weights_changed_between_calls(trained_checkpoint, monkeypatch):
    """A user's `p.data.copy_(...)` between two decoding calls (torch does not count it) changes the output as
    it does for a fresh model loaded with those weights; every linear weight laid out (threshold 0)."""
    from ofasys_fs import OFASys

    monkeypatch.setattr(cpu_linear, "PACK_MIN_ELEMENTS", 0)
    instruction = trained_checkpoint.instructions["caption"]
    rows = [{"img": row["img"]} for row in trained_checkpoint.rows["caption"][:4]]  # 20 hypotheses: oneDNN's size
    model, fresh = OFASys.from_pretrained(trained_checkpoint.path, device="cpu"), \
        OFASys.from_pretrained(trained_checkpoint.path, device="cpu")
    before = model.inference(instruction, rows, beam_size=5)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.model.parameters():
            if parameter.dim() == 2:
                parameter.data.copy_(parameter.data + torch.randn(parameter.shape, generator=g) * 0.5)
    fresh.model.load_state_dict({name: value.clone() for name, value in model.model.state_dict().items()})
    after, expected = model.inference(instruction, rows, beam_size=5), fresh.inference(instruction, rows, beam_size=5)
    assert [out.tokens for out in after] == [out.tokens for out in expected] != [out.tokens for out in before]
    assert max(abs(a.score - b.score) for a, b in zip(after, expected)) < 1e-4


def test_a_torch_whose_private_ops_fail_or_disagree_turns_the_path_off(monkeypatch):
    assert cpu_linear.onednn_works()  # this torch: on

    class Broken:
        @staticmethod
        def _linear_pointwise(x, weight, bias, *args):
            raise RuntimeError("unknown signature")

        _reorder_linear_weight = staticmethod(lambda weight, groups: weight)

    class Wrong(Broken):
        @staticmethod
        def _linear_pointwise(x, weight, bias, *args):
            return F.linear(x, weight, bias) + 1

    for namespace, reason in ((Broken, "it failed: unknown signature"), (Wrong, "its result differs")):
        monkeypatch.setattr(torch.ops, "mkldnn", namespace)
        with pytest.warns(UserWarning, match=f"oneDNN linear path is off on torch .*{reason}"):
            assert not cpu_linear.onednn_works.__wrapped__()
