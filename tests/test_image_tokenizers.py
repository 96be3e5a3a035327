"""Image tokenizers (issue 21): the fsq tokenizer learns to reconstruct held-out digit scans far better than the
mean image, is one weights_only file recorded by content hash, trains deterministically and resumes, and the
VQGAN layout of taming-transformers (OFASys's tokenizer) loads from its checkpoint and YAML config."""
import json

import pytest
import torch
import yaml
from image_data import TOKENIZER, digit_rows, split
from PIL import Image

from ofasys_fs.cli.train_image_tokenizer import main as tokenizer_main
from ofasys_fs.engine.tokenizer_training import TokenizerTrainConfig, train_image_tokenizer
from ofasys_fs.errors import ConfigError
from ofasys_fs.image_tokenizers.files import content_hash, load_image_tokenizer, tokenizer_payload
from ofasys_fs.image_tokenizers.images import image_tensor, psnr, reconstruct
from ofasys_fs.image_tokenizers.vqgan import VQGANTokenizer
from ofasys_fs.registry import build_image_tokenizer

TINY = {**TOKENIZER, "hidden": 8}
DDCONFIG = {"double_z": False, "z_channels": 32, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [8], "dropout": 0.0}


def held_out_images() -> torch.Tensor:
    return torch.stack([image_tensor(row["img"], 8, 1) for row in split(digit_rows())[1]])


def test_fsq_learns_to_reconstruct_held_out_scans(image_tokenizer):
    tokenizer, summary = image_tokenizer.tokenizer, image_tokenizer.summary
    images = held_out_images()
    codes = tokenizer.encode(images)
    assert codes.shape == (len(images), 4, 4) and 0 <= int(codes.min()) and int(codes.max()) < 125
    reconstructed = reconstruct(tokenizer, images)
    mean_image = torch.stack([image_tensor(row["img"], 8, 1) for row in split(digit_rows())[0]]).mean(0)
    mse = float(((reconstructed - images) ** 2).mean())
    assert mse < 0.3 * float(((mean_image - images) ** 2).mean())  # far below the mean-image baseline
    assert psnr(reconstructed, images) > 16 and summary["codes_used"] >= 30
    assert summary["valid_psnr"] > summary["mean_image_psnr"] + 4


def test_a_tokenizer_file_is_weights_only_and_named_by_its_content(image_tokenizer, tmp_path):
    state = torch.load(image_tokenizer.path, weights_only=True)
    assert state["kind"] == "fsq" and state["config"]["levels"] == [5, 5, 5] and "valid_psnr" in state["info"]
    loaded = load_image_tokenizer(image_tokenizer.path)
    assert loaded.content_hash == image_tokenizer.tokenizer.content_hash == content_hash(tokenizer_payload(loaded))
    images = held_out_images()[:20]
    assert torch.equal(loaded.encode(images), image_tokenizer.tokenizer.encode(images))
    other = build_image_tokenizer(TOKENIZER)
    assert content_hash(tokenizer_payload(other)) != loaded.content_hash


def test_training_is_deterministic_and_resumes_to_the_same_weights(tmp_path):
    rows = split(digit_rows())[0][:300]
    config = TokenizerTrainConfig(max_update=30, log_interval=10, save_interval=10, batch_size=16)
    whole = train_image_tokenizer(rows, str(tmp_path / "a.pt"), TINY, config, log=lambda line: None)
    again = train_image_tokenizer(rows, str(tmp_path / "b.pt"), TINY, config, log=lambda line: None)
    assert whole.tokenizer.content_hash == again.tokenizer.content_hash

    def interrupt(line):
        if line.startswith("update 20"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_image_tokenizer(rows, str(tmp_path / "c.pt"), TINY, config, log=interrupt)
    assert (tmp_path / "c.pt.state").exists() and not (tmp_path / "c.pt").exists()
    lines = []
    resumed = train_image_tokenizer(rows, str(tmp_path / "c.pt"), TINY, config, log=lines.append)
    assert lines[0] == f"resuming from {tmp_path / 'c.pt.state'} at update 10"
    assert resumed.tokenizer.content_hash == whole.tokenizer.content_hash and not (tmp_path / "c.pt.state").exists()


def test_the_command_trains_from_a_data_file_and_draws_reconstructions(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    with open(tmp_path / "train.jsonl", "w") as handle:
        for index, row in enumerate(split(digit_rows())[0][:120]):
            Image.fromarray(row["img"]).save(tmp_path / "images" / f"{index}.png")
            handle.write(json.dumps({"picture": f"images/{index}.png"}) + "\n")
    argv = ["--data", str(tmp_path / "train.jsonl"), "--column", "picture", "--out", str(tmp_path / "tok.pt"),
            "--image-size", "8", "--grid", "4", "--levels", "5,5,5", "--hidden", "8", "--max-update", "20",
            "--log-interval", "10"]
    assert tokenizer_main(argv) == 0
    out = capsys.readouterr().out
    assert "update 10 | loss" in out and "psnr" in out and "codes used" in out
    assert load_image_tokenizer(str(tmp_path / "tok.pt")).grid == (4, 4)
    assert Image.open(tmp_path / "tok-reconstructions.png").size[1] > 2 * 8  # originals above reconstructions


TAMING_KEYS = ("encoder.conv_in.weight", "encoder.down.0.block.0.norm1.weight", "encoder.down.0.downsample.conv.weight",
               "encoder.down.1.block.0.nin_shortcut.weight", "encoder.down.1.attn.0.q.weight", "encoder.mid.attn_1.proj_out.weight",
               "encoder.mid.block_2.conv2.weight", "encoder.norm_out.weight", "decoder.conv_in.weight",
               "decoder.up.0.block.1.conv1.weight", "decoder.up.1.upsample.conv.weight", "decoder.up.1.attn.1.k.weight",
               "decoder.up.0.block.0.nin_shortcut.weight", "quant_conv.weight", "post_quant_conv.weight")


@pytest.mark.parametrize("target, quantizer_keys", [
    ("taming.models.vqgan.GumbelVQ", {"quantize.proj.weight": (64, 32, 1, 1), "quantize.embed.weight": (64, 32)}),
    ("taming.models.vqgan.VQModel", {"quantize.embedding.weight": (64, 32)})])
def test_a_taming_vqgan_checkpoint_and_config_load_and_convert(tmp_path, capsys, target, quantizer_keys):
    config = {"model": {"target": target, "params": {"embed_dim": 32, "n_embed": 64, "ddconfig": DDCONFIG,
                                                       "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
    weights = {key: value for key, value in VQGANTokenizer(VQGANTokenizer.config_class(
        ddconfig=DDCONFIG, n_embed=64, embed_dim=32, quantizer="gumbel" if "Gumbel" in target else "nearest"))
        .state_dict().items()}
    assert set(TAMING_KEYS) <= set(weights) and {k: tuple(weights[k].shape) for k in quantizer_keys} == quantizer_keys
    assert tuple(weights["encoder.down.1.block.0.nin_shortcut.weight"].shape) == (64, 32, 1, 1)
    weights["loss.discriminator.main.0.weight"] = torch.zeros(2)  # a Lightning checkpoint also holds the losses
    torch.save({"state_dict": weights, "global_step": 7}, tmp_path / "last.ckpt")
    tokenizer = VQGANTokenizer.from_taming(str(tmp_path / "last.ckpt"), str(tmp_path / "model.yaml"))
    images = torch.rand(2, 3, 16, 16)
    codes = tokenizer.encode(images)
    assert tokenizer.grid == (8, 8) and tokenizer.num_codes == 64 and codes.shape == (2, 8, 8)
    assert tokenizer.decode(codes).shape == (2, 3, 16, 16)
    assert tokenizer_main(["--from-vqgan", str(tmp_path / "last.ckpt"), "--vqgan-config", str(tmp_path / "model.yaml"),
                           "--out", str(tmp_path / "vqgan.pt")]) == 0
    converted = load_image_tokenizer(str(tmp_path / "vqgan.pt"))
    assert torch.equal(converted.encode(images), codes) and "64 codes, grid 8x8" in capsys.readouterr().out


def test_a_tokenizer_without_a_reconstruction_loss_is_refused_by_training(tmp_path):
    vqgan = {"name": "vqgan", "ddconfig": DDCONFIG, "n_embed": 64, "embed_dim": 32}
    with pytest.raises(ConfigError, match="'vqgan' is not trained by ofasys_fs .*loaded from a file"):
        train_image_tokenizer(digit_rows([4]), str(tmp_path / "v.pt"), vqgan, log=lambda line: None)
    assert not (tmp_path / "v.pt").exists()
