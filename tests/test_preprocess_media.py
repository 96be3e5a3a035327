"""The image, audio and video preprocessors on real-format files, and the not-yet-available output ones."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from media_files import moving_square_video
from PIL import Image

import ofasys_fs.preprocess  # noqa: F401  (registers the built-in preprocessors)
from ofasys_fs.contracts import SampleContext
from ofasys_fs.instruction import Instruction
from ofasys_fs.media import MediaError
from ofasys_fs.preprocess.audio import kaldi_fbank
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.preprocess.image import ImageGeometry, PixelSettings
from ofasys_fs.registry import build_preprocessor

RATE = 16000


def encoder_slot(slot_text: str):
    return Instruction.parse(f"{slot_text} describe -> [TEXT:out]").encoder[0]


def build(slot_text: str, data_cfg=None):
    slot = encoder_slot(slot_text)
    return build_preprocessor(slot.preprocess, slot, None, DataConfig(**(data_cfg or {})))


def train_ctx(epoch=0, row=3, column="img", **kwargs) -> SampleContext:
    return SampleContext(split="train", task="t", row_index=row, epoch=epoch, column=column, **kwargs)


def save_image(path, pixels: np.ndarray) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


# ---------------------------------------------------------------------------------------------- data config


def test_data_config_defaults_and_checkpoint_round_trip():
    assert (DataConfig().image_size, DataConfig().image_augment, DataConfig().video_frames) == (64, False, 8)
    cfg = DataConfig(image_size=32, image_mean=0.25, image_augment=True)
    assert cfg.image_mean == (0.25, 0.25, 0.25)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg  # a checkpoint gives back the DataConfig itself
    with pytest.raises(ValueError, match=r"unknown keys \['image_sise'\]"):
        DataConfig.from_dict({"image_sise": 32})


def test_bad_pixel_settings_name_the_key():
    with pytest.raises(ValueError, match="image_std=0: must be positive"):
        DataConfig(image_std=0)
    with pytest.raises(ValueError, match=r"image_mean=\[0.5, 0.5\]: expected"):
        DataConfig(image_mean=[0.5, 0.5])
    with pytest.raises(ValueError, match="image_size=0: must be >= 1"):
        DataConfig(image_size=0)


# ---------------------------------------------------------------------------------------------- image


def test_solid_red_png_normalises_exactly_and_records_its_size(tmp_path):
    red = np.zeros((30, 40, 3), np.uint8)
    red[..., 0] = 255
    save_image(tmp_path / "red.png", red)
    out = build("[IMAGE:img]", {"image_size": 32})("red.png", SampleContext(base_dir=str(tmp_path)))
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
    assert torch.equal(out["image"][0], torch.ones(32, 32))
    assert torch.equal(out["image"][1:], -torch.ones(2, 32, 32))
    assert out["orig_size"].tolist() == [40, 30]
    assert out["crop_box"].tolist() == [0, 0, 40, 30] and not out["flipped"]


def test_jpeg_default_size_range_and_custom_normalisation(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    path = tmp_path / "noise.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    default = build("[IMAGE:img]")(str(path), SampleContext())["image"]
    assert default.shape == (3, 64, 64)  # image_size defaults to 64
    assert default.min() >= -1 and default.max() <= 1 and default.std() > 0.2
    unit = build("[IMAGE:img]", dict(image_size=64, image_mean=0.0, image_std=1.0))(str(path), SampleContext())
    assert torch.allclose(unit["image"], default * 0.5 + 0.5, atol=1e-6)


def test_a_slot_size_resizes_like_a_model_of_that_side_within_the_model_limits(tmp_path):
    path = save_image(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    limits = {"image_size": 32, "image_side_multiple": 8}
    out = build("[IMAGE:img,size=16]", limits)(path, SampleContext())
    assert torch.equal(out["image"], build("[IMAGE:img]", {"image_size": 16})(path, SampleContext())["image"])
    assert out["orig_size"].tolist() == [40, 30]
    assert build("[IMAGE:img]", limits)(path, SampleContext())["image"].shape == (3, 32, 32)
    for size in (40, 12):
        with pytest.raises(ValueError, match=f"size={size} must be at most the model's image_size=32 and a multiple "
                                             f"of its patch_size=8"):
            build(f"[IMAGE:img,size={size}]", limits)


def test_mask_ratio_zeroes_the_centred_square_on_every_split(tmp_path):
    path = save_image(tmp_path / "white.png", np.full((20, 20, 3), 255, np.uint8))
    pre = build("[IMAGE:img,mask_ratio=0.25]", {"image_size": 32})
    for split in ("train", "valid", "inference"):
        image = pre(path, SampleContext(split=split))["image"]
        expected = torch.ones(3, 32, 32)
        expected[:, 8:24, 8:24] = 0  # side 32 * sqrt(0.25) = 16, centred
        assert torch.equal(image, expected)


def test_augmentation_is_per_context_varies_by_epoch_and_is_off_off_train(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = save_image(tmp_path / "noise.png", pixels)
    pre = build("[IMAGE:img]", {"image_size": 32, "image_augment": True})
    first, again = pre(path, train_ctx(epoch=0)), pre(path, train_ctx(epoch=0))
    assert all(torch.equal(first[key], again[key]) for key in first)
    outputs = [pre(path, train_ctx(epoch=epoch)) for epoch in range(8)]
    assert len({tuple(out["crop_box"].tolist()) for out in outputs}) > 1
    assert {bool(out["flipped"]) for out in outputs} == {True, False}
    settings = PixelSettings.of(DataConfig(image_size=32))
    for out in outputs:  # the recorded crop and flip are exactly what produced the image
        x0, y0, x1, y1 = out["crop_box"].tolist()
        assert 0.6 * 48 * 64 * 0.9 <= (x1 - x0) * (y1 - y0) <= 48 * 64
        crop = torch.from_numpy(pixels).permute(2, 0, 1)[:, y0:y1, x0:x1]
        expected = settings.to_model_input(crop.flip(-1) if out["flipped"] else crop)
        assert torch.equal(out["image"], expected)
    plain = build("[IMAGE:img]", {"image_size": 32})(path, SampleContext(split="valid"))
    for split in ("valid", "test", "inference"):
        out = pre(path, SampleContext(split=split, task="t", row_index=3, column="img"))
        assert out["crop_box"].tolist() == [0, 0, 64, 48] and not out["flipped"]
        assert torch.equal(out["image"], plain["image"])


def test_box_geometry_follows_the_crop_and_flip(tmp_path):
    pixels = np.zeros((100, 120, 3), np.uint8)
    box = (40, 30, 80, 70)  # x0, y0, x1, y1 in original pixels
    pixels[box[1] : box[3], box[0] : box[2]] = 255
    path = save_image(tmp_path / "box.png", pixels)
    size = 64
    pre = build("[IMAGE:img]", {"image_size": size, "image_augment": True})
    seen_flipped = set()
    for epoch in range(12):
        out = pre(path, train_ctx(epoch=epoch))
        left, top, right, bottom = ImageGeometry.of(out).normalise_box(box)
        bright = torch.nonzero(out["image"][0] > 0)
        if right - left < 0.2 or bottom - top < 0.2:
            continue  # the crop cut most of the square away
        rows, cols = bright[:, 0].float(), bright[:, 1].float()
        assert abs(cols.min() - left * size) <= 1.5 and abs(cols.max() + 1 - right * size) <= 1.5
        assert abs(rows.min() - top * size) <= 1.5 and abs(rows.max() + 1 - bottom * size) <= 1.5
        seen_flipped.add(bool(out["flipped"]))
    assert seen_flipped == {True, False}
    assert ImageGeometry.of((120, 100)).normalise_box(box) == (40 / 120, 0.3, 80 / 120, 0.7)


def test_image_collate_and_corrupt_files(tmp_path):
    pre = build("[IMAGE:img]", {"image_size": 32})
    paths = [save_image(tmp_path / f"{i}.png", np.full((10 + i, 20, 3), 9 * i, np.uint8)) for i in range(3)]
    batch = pre.collate([pre(p, SampleContext()) for p in paths])
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["orig_size"].tolist() == [[20, 10], [20, 11], [20, 12]]
    assert batch["crop_box"].shape == (3, 4) and batch["flipped"].shape == (3,)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(MediaError, match="broken.png"):
        pre(str(tmp_path / "broken.png"), SampleContext())


# ---------------------------------------------------------------------------------------------- audio


def tone(seconds: float, hz: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * math.pi * hz * t)).astype(np.float32)


def noisy_speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A tone whose loudness rises, plus noise: every fbank bin varies over time."""
    rng = np.random.default_rng(seed)
    envelope = np.linspace(0.05, 1.0, int(seconds * RATE), dtype=np.float32)
    return (tone(seconds) * envelope + 0.02 * rng.standard_normal(envelope.size)).astype(np.float32)


def mel(hz: float) -> float:
    return 1127 * math.log(1 + hz / 700)


def test_fbank_of_a_440_hz_tone(tmp_path):
    soundfile.write(tmp_path / "a440.wav", tone(1.0), RATE)
    out = build("[AUDIO:wav]")(str(tmp_path / "a440.wav"), SampleContext())
    assert out["fbank"].shape == (98, 80) and out["fbank"].dtype == torch.float32  # 1 + (16000-400)//160
    raw = kaldi_fbank(torch.from_numpy(tone(1.0)), RATE)
    spacing = (mel(RATE / 2) - mel(20)) / 81  # 80 triangles between 20 Hz and Nyquist
    expected_bin = (mel(440) - mel(20)) / spacing - 1
    assert abs(int(raw.mean(0).argmax()) - expected_bin) <= 1


def test_cmvn_and_flac_resampling(tmp_path):
    stereo = np.stack([noisy_speechlike(0.5), noisy_speechlike(0.5, seed=1)], axis=1)
    soundfile.write(tmp_path / "clip.flac", stereo[::2], RATE // 2)  # 8 kHz stereo
    fbank = build("[AUDIO:wav,cmvn=utterance]")(str(tmp_path / "clip.flac"), SampleContext())["fbank"]
    assert fbank.shape == (48, 80)
    assert fbank.mean(0).abs().max() < 1e-4
    assert torch.allclose(fbank.std(0, unbiased=False), torch.ones(80), atol=1e-3)


def test_spec_augment_only_on_train_with_use_mask(tmp_path):
    soundfile.write(tmp_path / "speech.wav", noisy_speechlike(1.0), RATE)
    path = str(tmp_path / "speech.wav")
    masked_pre, plain_pre = build("[AUDIO:wav,use_mask]"), build("[AUDIO:wav]")
    plain = plain_pre(path, train_ctx(column="wav"))["fbank"]
    assert torch.equal(masked_pre(path, SampleContext(split="valid", column="wav"))["fbank"], plain)
    assert not (plain == 0).all(dim=0).any() and not (plain == 0).all(dim=1).any()
    masked = [masked_pre(path, train_ctx(epoch=epoch, column="wav"))["fbank"] for epoch in range(4)]
    assert torch.equal(masked[0], masked_pre(path, train_ctx(epoch=0, column="wav"))["fbank"])
    assert any(not torch.equal(masked[0], other) for other in masked[1:])
    for fbank in masked:
        zero_bins, zero_frames = (fbank == 0).all(dim=0), (fbank == 0).all(dim=1)
        assert zero_bins.any() or zero_frames.any()
        assert zero_bins.sum() <= 2 * 27 and zero_frames.sum() <= 2 * 9  # min(40, 10% of 98 frames)
        kept = (fbank != 0)
        assert torch.equal(fbank[kept], plain[kept])


def test_frame_stacking_and_collate_padding(tmp_path):
    soundfile.write(tmp_path / "long.wav", noisy_speechlike(1.0), RATE)
    soundfile.write(tmp_path / "short.wav", noisy_speechlike(0.5), RATE)
    plain = build("[AUDIO:wav]")(str(tmp_path / "long.wav"), SampleContext())["fbank"]
    stacked = build("[AUDIO:wav,n_frames_per_step=3]")(str(tmp_path / "long.wav"), SampleContext())["fbank"]
    assert stacked.shape == (33, 240)  # ceil(98 / 3) steps
    assert torch.equal(stacked[0], plain[0:3].reshape(-1))
    assert torch.equal(stacked[32, :160], plain[96:98].reshape(-1)) and (stacked[32, 160:] == 0).all()
    pre = build("[AUDIO:wav]")
    batch = pre.collate([pre(str(tmp_path / name), SampleContext()) for name in ("long.wav", "short.wav")])
    assert batch["fbank"].shape == (2, 98, 80)
    assert batch["fbank_lengths"].tolist() == [98, 48]
    assert not batch["padding_mask"][0].any()
    assert not batch["padding_mask"][1, :48].any() and batch["padding_mask"][1, 48:].all()
    assert (batch["fbank"][1, 48:] == 0).all()


def test_too_short_and_corrupt_audio_name_the_file(tmp_path):
    soundfile.write(tmp_path / "blip.wav", tone(0.01), RATE)
    with pytest.raises(MediaError, match=r"blip.wav.*10.0 ms.*at least 25 ms"):
        build("[AUDIO:wav]")(str(tmp_path / "blip.wav"), SampleContext())
    (tmp_path / "junk.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(MediaError, match="junk.wav"):
        build("[AUDIO:wav]")(str(tmp_path / "junk.wav"), SampleContext())


# ---------------------------------------------------------------------------------------------- video

@pytest.fixture(scope="module")
def mp4_path(tmp_path_factory):
    """media_files' moving-square clip as an MP4 file."""
    path = tmp_path_factory.mktemp("video") / "moving.mp4"
    path.write_bytes(moving_square_video("mp4"))
    return path


def square_centres(frames: torch.Tensor) -> list[float]:
    return [float(torch.nonzero(frame.mean(0) > 0)[:, 1].float().mean()) for frame in frames]


def test_video_frames_shape_order_and_collate(mp4_path):
    pre = build("[VIDEO:vid,num_frames=4]", {"image_size": 32})
    ctx = SampleContext(base_dir=str(mp4_path.parent))
    frames = pre(mp4_path.name, ctx)["frames"]
    assert frames.shape == (4, 3, 32, 32) and frames.min() >= -1 and frames.max() <= 1
    centres = square_centres(frames)
    assert all(b - a > 4 for a, b in zip(centres, centres[1:]))  # 4 of 16 frames apart: 12 px, i.e. 6 px at 32
    train = pre(str(mp4_path), train_ctx(column="vid"))["frames"]
    assert torch.equal(train, pre(str(mp4_path), train_ctx(column="vid"))["frames"])
    assert all(b > a for a, b in zip(square_centres(train), square_centres(train)[1:]))
    batch = pre.collate([{"frames": frames}, {"frames": train}])
    assert batch["frames"].shape == (2, 4, 3, 32, 32)


def test_video_frame_count_falls_back_to_the_data_config(mp4_path):
    pre = build_preprocessor("video", SimpleNamespace(attrs={}), None, DataConfig(image_size=16, video_frames=3))
    assert pre(str(mp4_path), SampleContext())["frames"].shape == (3, 3, 16, 16)
    assert build("[VIDEO:vid]", {"image_size": 16})(str(mp4_path), SampleContext())["frames"].shape[0] == 8


# ---------------------------------------------------------------------------------------------- image outputs


def test_decoder_image_slot_without_a_tokenizer_says_how_to_give_one():
    slot = Instruction.parse("[TEXT:prompt] -> [IMAGE:picture]").decoder[0]
    with pytest.raises(ValueError, match="no image tokenizer: give the model's image_tokenizer=PATH"):
        build_preprocessor(slot.preprocess, slot, None, DataConfig(image_size=32))
