"""int8 decoding (models/quantize.py): int8 linear layers stay close to fp32, every linear layer is replaced, and
the session's trained micro checkpoint (tests/conftest.py) decodes to the fp32 outputs from the hub and the CLIs."""
import io
import json

import pytest
import torch
from torch import nn

from ofasys_fs import OFASys
from ofasys_fs.cli import generate, interactive, validate
from ofasys_fs.errors import ConfigError
from ofasys_fs.models.cpu_linear import Linear
from ofasys_fs.models.quantize import Int8Linear, has_int8_kernels, quantize_linear_layers, reduce_range

pytestmark = pytest.mark.skipif(not has_int8_kernels(), reason="this torch build has no quantized CPU kernels")


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


@pytest.mark.parametrize("transposed_input", [False, True])
def test_int8_linear_is_close_to_fp32_and_keeps_shapes(transposed_input):
    g = torch.Generator().manual_seed(0)
    layer = Linear(96, 160)
    x = torch.randn(3, 96, 7, generator=g).transpose(1, 2) if transposed_input else torch.randn(3, 7, 96, generator=g)
    with torch.no_grad():
        expected, got = layer(x), Int8Linear(layer.weight, layer.bias)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert 0 < relative_error(got, expected) < 0.03  # int8 for real, within int8's rounding
    no_bias = nn.Linear(96, 160, bias=False)
    with torch.no_grad():
        assert relative_error(Int8Linear(no_bias.weight)(x), no_bias(x)) < 0.03


def test_every_linear_layer_is_replaced_and_bad_requests_are_config_errors():
    model = nn.Sequential(Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4), nn.LayerNorm(4)))
    assert quantize_linear_layers(model, "int8") == 2
    assert not any(isinstance(module, nn.Linear) for module in model.modules())
    assert sum(isinstance(module, Int8Linear) for module in model.modules()) == 2
    assert model(torch.randn(2, 8)).shape == (2, 4)
    with pytest.raises(ConfigError, match=r"quantize='int4': expected one of \['int8'\]"):
        quantize_linear_layers(nn.Linear(2, 2), "int4")
    with pytest.raises(ConfigError, match="CPU only"):
        quantize_linear_layers(nn.Linear(2, 2).to("meta"), "int8")


@pytest.fixture(scope="module")
def fp32_and_int8(trained_checkpoint):
    path = trained_checkpoint.path
    return OFASys.from_pretrained(path, device="cpu"), OFASys.from_pretrained(path, quantize="int8")


def test_int8_decoding_keeps_the_fp32_outputs_of_the_trained_micro_model(fp32_and_int8, trained_checkpoint):
    fp32, int8 = fp32_and_int8
    assert not any(isinstance(module, nn.Linear) for module in int8.model.modules())
    assert isinstance(int8.model.decoder.output_projection, Int8Linear)  # the logits over the embedding table too
    assert fp32.model.decoder.output_projection is None
    assert next(int8.model.parameters()).device.type == "cpu"  # the default device of a quantised model
    # 7-bit inputs (CPUs without VNNI) changed 4 of the 12 micro captions (the image's colour is a small
    # signal in this model's encoder output); 8-bit ones none (models/quantize.py)
    for task in ("grounding", "topic") + (() if reduce_range() else ("caption",)):
        instruction, rows = trained_checkpoint.instructions[task], trained_checkpoint.rows[task]
        expected, got = fp32.inference(instruction, rows), int8.inference(instruction, rows)
        assert [output.tokens for output in got] == [output.tokens for output in expected], task
        scores = [(a.score, b.score) for a, b in zip(got, expected)]
        assert max(abs(a - b) for a, b in scores) < 0.05, (task, scores)
        assert any(a != b for a, b in scores), f"{task}: int8 gave the fp32 scores exactly; was it quantised?"


def test_the_commands_take_quantize_int8(fp32_and_int8, trained_checkpoint, tmp_path, capsys):
    ckpt, int8 = trained_checkpoint, fp32_and_int8[1]
    out = tmp_path / "caption.jsonl"
    assert generate.main(["--path", ckpt.path, "--task", "caption", "--data", ckpt.data_dir + "/caption",
                          "--results-path", str(out), "--quantize", "int8"]) == 0
    lines = [json.loads(line) for line in open(out, encoding="utf-8")]
    expected = int8.inference(ckpt.instructions["caption"], ckpt.rows["caption"])
    assert [(line["tokens"], line["score"]) for line in lines] == [(o.tokens, o.score) for o in expected]
    assert validate.main(["--path", ckpt.path, "--task", "topic", "--data", ckpt.data_file("topic", "valid"),
                          "--quantize", "int8"]) == 0
    assert "| accuracy 1.000" in capsys.readouterr().out
    replies = io.StringIO()
    row = ckpt.rows["topic"][0]
    assert interactive.main(["--path", ckpt.path, "--instruction", ckpt.instructions["topic"], "--quantize", "int8"],
                            stdin=io.StringIO(json.dumps({"sentence": row["sentence"]}) + "\n"), stdout=replies) == 0
    assert json.loads(replies.getvalue())["text"] == row["topic"]
    with pytest.raises(SystemExit) as exited:
        generate.main(["--path", ckpt.path, "--task", "caption", "--data", ckpt.data_dir + "/caption",
                       "--quantize", "int4"])
    assert exited.value.code == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err
