"""Adaptors image_patch (its convolutional stem), image_resnet, audio_fbank, video_frames and the CTC criterion, alone and inside the model."""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ofasys_fs.adaptors.audio_fbank import subsampled_length
from ofasys_fs.adaptors.image_patch import ConvStem
from ofasys_fs.adaptors.image_resnet import TRUNK_PREFIXES, resnet_grid_side
from ofasys_fs.checkpoint import model_description, with_former_defaults
from ofasys_fs.contracts import SampleContext
from ofasys_fs.criteria.ctc import LabelSmoothedCECTC, LabelSmoothedCECTCConfig
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.hub import described_model
from ofasys_fs.models.archs import resolve_config
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.generalist import EncoderOut, GeneralistModel
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import build_adaptor
from ofasys_fs.vocab import Vocabulary

DIM = 64  # micro


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.default()


def adaptor(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = resolve_config(ModelConfig(arch="micro", dropout=0.0, **overrides))
    return build_adaptor(name, cfg, torch.nn.Embedding(10, cfg.embed_dim)).eval()


def randomise_relative_tables(module: torch.nn.Module) -> None:
    """Relative tables start at zero; random values make bias mistakes visible."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "relative.table" in name:
                parameter.normal_(std=0.5)


# ---------------------------------------------------------------- image_resnet

def test_image_resnet_grid_tokens_and_shapes():
    resnet = adaptor("image_resnet", image_adaptor="image_resnet", image_size=64)
    out = resnet({"modality": "IMAGE", "image": torch.randn(2, 3, 64, 64)})
    assert out.embeddings.shape == (2, 16, DIM) and not out.padding_mask.any()
    assert out.rel_bias.shape == (2, 1, 2, 16, 16) and out.position_embeddings.shape == (1, 16, DIM)
    assert resnet({"image": torch.randn(1, 3, 50, 36)}).embeddings.shape[1] == 4 * 3  # ceil(50/16) x ceil(36/16)
    with pytest.raises(ValueError, match="at most image_size=64"):
        resnet({"image": torch.randn(1, 3, 80, 64)})
    with pytest.raises(KeyError, match='no "image" tensor'):
        resnet({"modality": "IMAGE", "frames": torch.zeros(1)})


def test_image_resnet_depths_and_480px_token_count_on_meta():
    assert resnet_grid_side(480) == 30 and resnet_grid_side(481) == 31
    with torch.device("meta"):
        tiny = GeneralistModel(arch="tiny", image_adaptor="image_resnet").build(100, [None])
        out = tiny.encoder.adaptors["image_resnet"]({"image": torch.empty(8, 3, 480, 480)})
        assert out.embeddings.shape == (8, 900, 256) and out.rel_bias.shape == (4, 1, 4, 900, 900)
        for arch, blocks in (("tiny", [3, 4, 6]), ("medium", [3, 4, 23]), ("large", [3, 8, 36])):
            trunk = build_adaptor("image_resnet", resolve_config(ModelConfig(arch=arch)), None).backbone
            assert [len(trunk.layer1), len(trunk.layer2), len(trunk.layer3)] == blocks
            assert trunk.layer3[0].conv3.out_channels == 1024


def test_image_resnet_freeze_backbone_survives_train_mode():
    resnet = adaptor("image_resnet", image_adaptor="image_resnet", image_size=32)
    resnet.freeze_backbone()
    resnet.train()
    assert not resnet.backbone.training and resnet.proj.training
    stats = resnet.backbone.bn1.running_mean.clone()
    resnet({"image": torch.randn(2, 3, 32, 32)}).embeddings.sum().backward()
    assert torch.equal(resnet.backbone.bn1.running_mean, stats)  # BatchNorm statistics fixed
    assert all(p.grad is None for p in resnet.backbone.parameters())
    assert resnet.proj.weight.grad is not None and resnet.proj.weight.grad.abs().sum() > 0


def test_image_resnet_loads_torchvision_weights(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(3)
    reference = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    state = {key: value for key, value in reference.state_dict().items() if key.startswith(TRUNK_PREFIXES)}
    path = tmp_path / "resnet50_trunk.pth"
    torch.save(state, path)
    resnet = adaptor("image_resnet", seed=4, image_adaptor="image_resnet", image_size=32,
                     image_backbone_weights=str(path))
    own = resnet.backbone.state_dict()
    assert torch.equal(own["layer3.5.conv3.weight"], state["layer3.5.conv3.weight"])
    assert torch.equal(own["layer2.0.downsample.1.running_var"], state["layer2.0.downsample.1.running_var"])
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        stem = reference.maxpool(reference.relu(reference.bn1(reference.conv1(image))))
        expected = reference.layer3(reference.layer2(reference.layer1(stem)))
        torch.testing.assert_close(resnet.backbone(image), expected, atol=1e-5, rtol=1e-5)

    broken = dict(state)
    del broken["layer3.5.bn3.weight"]
    broken["layer3.6.conv1.weight"] = torch.zeros(1)
    torch.save(broken, path)
    with pytest.raises(ValueError, match=r"missing keys: 1 \(layer3\.5\.bn3\.weight\); unexpected keys: 1"):
        adaptor("image_resnet", image_adaptor="image_resnet", image_size=32, image_backbone_weights=str(path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        adaptor("image_resnet", image_adaptor="image_resnet", image_size=32,
                image_backbone_weights=str(tmp_path / "absent.pth"))


def test_image_patch_conv_stem_gives_the_patch_grid_and_refuses_odd_patch_sizes():
    stem = ConvStem(64, 8)
    assert stem(torch.randn(2, 3, 32, 24)).shape == (2, 64, 4, 3)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in stem.modules()) == 4  # three halvings and the 1x1 projection
    with pytest.raises(ValueError, match="power-of-two patch_size >= 2, got 6"):
        ConvStem(64, 6)
    with pytest.raises(ValueError, match="patch_stem"):
        ModelConfig(patch_stem="resnet")
    linear = GeneralistModel(vocab_size=100, adaptor_names=["text", "image_patch"], arch="micro", patch_stem="linear")
    assert linear.encoder.adaptors["image_patch"].proj.stride == (8, 8)
    default = GeneralistModel(vocab_size=100, adaptor_names=["text", "image_patch"], arch="micro")
    assert default.cfg.patch_stem == "conv" and isinstance(default.encoder.adaptors["image_patch"].proj, ConvStem)
    out = default.encoder.adaptors["image_patch"]({"image": torch.randn(2, 3, 32, 32)})
    assert out.embeddings.shape == (2, 16, 64) and not out.padding_mask.any()


@pytest.mark.parametrize("option,former", [("patch_stem", "linear"), ("memory_positions", False)])
def test_checkpoints_from_before_an_option_rebuild_the_former_model(option, former):
    old = GeneralistModel(vocab_size=100, adaptor_names=["text", "image_patch"], arch="micro", **{option: former})
    description = model_description(old, DataConfig.for_model(old.cfg))
    del description["model"][option]  # a file written before the option
    rebuilt = described_model(with_former_defaults({"config": description})["config"], "old.pt")
    rebuilt.load_state_dict(old.state_dict())  # strict: the same modules
    assert getattr(rebuilt.cfg, option) == former


def test_a_micro_checkpoint_keeps_the_decoder_depth_it_was_written_with():
    # micro's preset went from 2 to 4 decoder layers; a file stores its resolved sizes, so an older one rebuilds with 2
    old = GeneralistModel(vocab_size=100, adaptor_names=["text", "image_patch"], arch="micro", decoder_layers=2)
    description = model_description(old, DataConfig.for_model(old.cfg))
    assert description["model"]["arch"] == "micro" and description["model"]["decoder_layers"] == 2
    rebuilt = described_model(with_former_defaults({"config": description})["config"], "old.pt")
    rebuilt.load_state_dict(old.state_dict())  # strict: the same layers
    assert len(rebuilt.decoder.layers) == 2
    assert len(GeneralistModel(vocab_size=100, adaptor_names=["text"], arch="micro").decoder.layers) == 4


def test_image_patch_and_resnet_share_grid_positions():
    patch, resnet = adaptor("image_patch"), adaptor("image_resnet", image_adaptor="image_resnet", image_size=32)
    assert type(patch.positions) is type(resnet.positions)
    randomise_relative_tables(patch)
    out = patch({"image": torch.randn(1, 3, 32, 32)})
    bias = out.rel_bias[0, 0, 0]  # 4 x 4 grid: token 0 = (0, 0), token 5 = (1, 1), token 10 = (2, 2)
    assert bias[0, 5] == bias[5, 10] and bias[0, 5] != bias[5, 0]


# ---------------------------------------------------------------- audio_fbank

def test_audio_lengths_and_padding_mask():
    audio = adaptor("audio_fbank")
    fbank = torch.randn(3, 37, 80)
    out = audio({"fbank": fbank, "fbank_lengths": torch.tensor([37, 20, 1])})
    assert out.embeddings.shape == (3, subsampled_length(37), DIM) == (3, 10, DIM)
    assert (~out.padding_mask).sum(1).tolist() == [10, 5, 1]
    assert out.rel_bias.shape == (2, 1, 2, 10, 10) and out.position_embeddings.shape == (1, 10, DIM)
    from_mask = audio({"fbank": fbank, "padding_mask": torch.arange(37)[None] >= torch.tensor([[37], [20], [1]])})
    assert torch.equal(from_mask.padding_mask, out.padding_mask)


def test_audio_padded_row_equals_row_alone():
    audio = adaptor("audio_fbank")
    randomise_relative_tables(audio)
    g = torch.Generator().manual_seed(5)
    short, long = torch.randn(21, 80, generator=g), torch.randn(40, 80, generator=g)
    batch = torch.stack([torch.cat([short, 100 * torch.randn(19, 80, generator=g)]), long])  # garbage padding
    with torch.no_grad():
        together = audio({"fbank": batch, "fbank_lengths": torch.tensor([21, 40])}).embeddings
        alone = audio({"fbank": short[None]}).embeddings
    assert alone.shape[1] == 6
    torch.testing.assert_close(together[0, :6], alone[0], atol=1e-5, rtol=0)
    assert (together[0, 6:] - alone[0, -1]).abs().max() > 1e-3  # the padded steps are not copies


def test_audio_stacked_frames_and_clear_errors():
    stacked = adaptor("audio_fbank", audio_feature_dim=240)  # n_frames_per_step=3
    assert stacked({"fbank": torch.randn(1, 9, 240)}).embeddings.shape == (1, 3, DIM)
    audio = adaptor("audio_fbank", audio_max_positions=4)
    with pytest.raises(ValueError, match=r"expected fbank \[batch, frames >= 1, 80\].*n_frames_per_step"):
        audio({"fbank": torch.randn(1, 9, 240)})
    with pytest.raises(ValueError, match=r"fbank_lengths must be \[1\] values in 1\.\.9"):
        audio({"fbank": torch.randn(1, 9, 80), "fbank_lengths": torch.tensor([10])})
    with pytest.raises(ValueError, match="5 tokens exceeds its 4 positions"):
        audio({"fbank": torch.randn(1, 20, 80)})


# ---------------------------------------------------------------- video_frames

def test_video_tokens_frame_embedding_and_order():
    video = adaptor("video_frames")
    frames = torch.randn(2, 3, 3, 32, 32)
    out = video({"modality": "VIDEO", "frames": frames})
    assert out.embeddings.shape == (2, 3 * 16, DIM) and out.position_embeddings.shape == (1, 48, DIM)
    assert out.positions[0].tolist() == [0] * 16 + [1] * 16 + [2] * 16
    swapped = video({"frames": frames[:, [1, 0, 2]]}).embeddings
    frame_vectors = video.frames.embeddings(torch.arange(3))
    # frame 0's content now sits at frame 1: it differs exactly by the change of frame embedding
    torch.testing.assert_close(swapped[:, 16:32] - out.embeddings[:, :16],
                               (frame_vectors[1] - frame_vectors[0]).expand(2, 16, DIM), atol=1e-5, rtol=0)
    assert (swapped[:, 16:32] - out.embeddings[:, :16]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="exceeds its 32 positions"):
        video({"frames": torch.zeros(1, 33, 3, 8, 8)})


def test_video_bias_is_temporal_plus_spatial():
    video = adaptor("video_frames")
    randomise_relative_tables(video)
    frames = torch.randn(1, 3, 3, 32, 32)
    bias = video({"frames": frames}).rel_bias
    spatial = video.image({"image": frames[0]}).rel_bias  # [layers, 1, heads, 16, 16]
    temporal = video.frames.relative_bias(torch.arange(3), torch.arange(3))  # [layers, 1, heads, 3, 3]
    assert bias.shape == (2, 1, 2, 48, 48)
    for (f1, g1), (f2, g2) in [((0, 0), (0, 5)), ((0, 3), (2, 7)), ((2, 15), (1, 0))]:
        expected = temporal[..., f1, f2] + spatial[..., g1, g2]
        torch.testing.assert_close(bias[..., f1 * 16 + g1, f2 * 16 + g2], expected)


def test_video_composes_the_resnet_image_path():
    video = adaptor("video_frames", image_adaptor="image_resnet", image_size=32)
    assert type(video.image).__name__ == "ImageResNetAdaptor"
    assert video({"frames": torch.randn(1, 2, 3, 32, 32)}).embeddings.shape == (1, 2 * 4, DIM)


# ---------------------------------------------------------------- CTC

def ctc_extra(logits: torch.Tensor, padding_mask: torch.Tensor, spans: tuple, phones: range) -> dict:
    batch, length = padding_mask.shape
    encoder_out = EncoderOut(torch.zeros(batch, length, 4), padding_mask, torch.zeros(batch, length, 4), spans)
    return {"encoder_out": encoder_out, "ctc_logits": logits, "ctc_phones": phones}


def test_ctc_loss_by_hand():
    """Uniform 3-way outputs over 2 steps, target (p): paths p p, blank p, p blank -> loss = -log(3 / 9)."""
    criterion = LabelSmoothedCECTC()
    extra = ctc_extra(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool), (("audio_fbank", 0, 2),),
                      range(50, 52))
    sample = {"phone_targets": torch.tensor([[51]]), "phone_target_lengths": torch.tensor([1])}
    loss, phones = criterion.ctc_loss(extra, sample)
    assert phones == 1 and math.isclose(loss.item(), math.log(3), rel_tol=1e-6)


def test_ctc_loss_packs_audio_pieces_and_matches_torch():
    """Two audio pieces around a text piece, each padded: the CTC input is each row's valid audio steps."""
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 9, 5, generator=g)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[1, 3] = padding[1, 8] = padding[0, 4] = True  # audio 0-3, text 4-5, audio 6-8
    spans = (("audio_fbank", 0, 4), ("text", 4, 6), ("audio_fbank", 6, 9))
    sample = {"phone_targets": torch.tensor([[10, 11, 11], [13, 1, 1]]), "phone_target_lengths": torch.tensor([3, 1])}
    loss, phones = LabelSmoothedCECTC().ctc_loss(ctc_extra(logits, padding, spans, range(10, 14)), sample)
    expected = 0.0
    for row, steps, target in ((0, [0, 1, 2, 3, 6, 7, 8], [1, 2, 2]), (1, [0, 1, 2, 6, 7], [4])):
        lprobs = F.log_softmax(logits[row, steps], -1)[:, None]
        expected += F.ctc_loss(lprobs, torch.tensor([target]), [len(steps)], [len(target)], reduction="sum")
    assert phones == 4
    torch.testing.assert_close(loss, expected)


def test_ctc_clear_errors():
    extra = ctc_extra(torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.bool), (("audio_fbank", 0, 3),),
                      range(50, 52))
    criterion = LabelSmoothedCECTC()
    sample = {"task": "asr", "id": torch.tensor([7]), "phone_targets": torch.tensor([[50, 49]]),
              "phone_target_lengths": torch.tensor([2])}
    with pytest.raises(ValueError, match=r"task 'asr', row 7: phone_targets\[1\] = 49 is not a phone id"):
        criterion.ctc_loss(extra, sample)
    sample["phone_targets"] = torch.tensor([[50, 50]])  # needs 3 steps: 50 blank 50
    criterion.ctc_loss(extra, sample)
    extra["encoder_out"].padding_mask[0, 2] = True
    with pytest.raises(ValueError, match="row 7: the audio gives 2 encoder positions but its 2 phones need at least 3"):
        criterion.ctc_loss(extra, sample)
    extra["encoder_out"] = dataclasses.replace(extra["encoder_out"], spans=(("text", 0, 3),))
    with pytest.raises(ValueError, match="no 'audio_fbank' encoder piece"):
        criterion.ctc_loss(extra, sample)
    with pytest.raises(ValueError, match="ctc_weight must be >= 0"):
        LabelSmoothedCECTCConfig(ctc_weight=-1)


# ---------------------------------------------------------------- the whole model

def noise_audio(seconds: float, seed: int) -> tuple:
    return (np.random.default_rng(seed).normal(scale=0.1, size=int(16000 * seconds)).astype("float32"), 16000)


def test_asr_batch_trains_with_ctc(vocab):
    encoder = RowEncoder("asr", "[AUDIO:wav] what does the audio say? -> [TEXT:text,preprocess=text_phone]", vocab)
    rows = [{"wav": noise_audio(0.6, 0), "text": "hello world"}, {"wav": noise_audio(0.3, 1), "text": "good"}]
    sample = encoder.collate([encoder.encode(row, SampleContext(split="train", task="asr", row_index=i))
                              for i, row in enumerate(rows)])
    torch.manual_seed(0)
    model = GeneralistModel(arch="micro", dropout=0.0).build(vocab, ["text", "audio_fbank"])
    assert model.cfg.ctc_num_phones == len(vocab.range("phone"))
    ce_loss, sample_size, _ = LabelSmoothedCE(LabelSmoothedCEConfig())(model, sample)
    loss, ctc_size, log = LabelSmoothedCECTC(LabelSmoothedCECTCConfig(ctc_weight=0.5))(model, sample)
    assert ctc_size == sample_size == sample["ntokens"]
    assert log["ctc_ntokens"] == int(sample["phone_target_lengths"].sum()) and log["ctc_loss"] > 0
    torch.testing.assert_close(loss, ce_loss + 0.5 * log["ctc_loss"], rtol=1e-5, atol=1e-4)
    assert "ctc_loss" in LabelSmoothedCECTC.reduce_metrics([log])

    model.zero_grad()
    ctc_only, _ = LabelSmoothedCECTC().ctc_loss(model(sample, ctc=True)[1], sample)
    ctc_only.backward()
    for name in ("ctc_head.proj.weight", "encoder.layers.0.ffn.block.fc1.weight",
                 "encoder.adaptors.audio_fbank.convs.0.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name

    rebuilt = GeneralistModel(dataclasses.replace(model.cfg), model.vocab_size, model.adaptor_names)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()  # a bare vocab size rebuilds the head


def test_ctc_head_only_with_audio(vocab):
    text_only = GeneralistModel(arch="micro").build(vocab, ["text"])
    assert "ctc_head" not in dict(text_only.named_children())
    assert text_only.cfg == GeneralistModel(arch="micro").cfg
    without = GeneralistModel(arch="micro", ctc_head=False).build(vocab, ["audio_fbank"])
    assert "ctc_head" not in dict(without.named_children())
    with pytest.raises(ValueError, match="ctc_head=True needs phone ids"):
        GeneralistModel(arch="micro", ctc_head=True).build(300, ["text"])
    with pytest.raises(RuntimeError, match="built without a CTC head"):
        text_only({"net_input": {"encoder": [{"adaptor": "text", "tokens": torch.tensor([[0, 5, 2]])}],
                                 "prev_output_tokens": torch.tensor([[0]])}}, ctc=True)


def test_video_struct_and_phone_pieces_through_the_model(vocab):
    torch.manual_seed(0)
    model = GeneralistModel(arch="micro", dropout=0.0).build(vocab, ["text", "video_frames"]).eval()
    clip = np.random.default_rng(2).integers(0, 255, size=(5, 20, 24, 3), dtype=np.uint8)
    rows = [{"vid": clip, "table": [["a", "b"], ["c", "d"]], "ph": "HH AH0 L OW1", "t": "yes"},
            {"vid": clip[::-1].copy(), "table": {"header": ["x"], "rows": [["y"]]}, "ph": "hello", "t": "no"}]
    encoder = RowEncoder("mix", "[VIDEO:vid,num_frames=2] [STRUCT:table] [PHONE:ph] -> [TEXT:t]", vocab,
                         data_cfg=DataConfig(image_size=32))
    sample = encoder.collate([encoder.encode(row, SampleContext(split="valid", task="mix", row_index=i))
                              for i, row in enumerate(rows)])
    pieces = sample["net_input"]["encoder"]
    assert [piece["adaptor"] for piece in pieces] == ["video_frames", "text"]
    assert any(t in vocab.range("phone") for t in pieces[1]["tokens"][0].tolist())
    with torch.no_grad():
        logits, extra = model(sample)
    assert logits.shape[:2] == sample["target"].shape and torch.isfinite(logits).all()
    assert [span[0] for span in extra["encoder_out"].spans] == ["video_frames", "text"]
    assert extra["encoder_out"].spans[0][1:] == (0, 2 * 16)
