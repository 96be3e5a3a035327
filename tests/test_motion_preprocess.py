"""The motion_6d preprocessor (encoder side) and adaptor: windows, rates, normalisation, batching, the training
skeleton and clear errors (the decoder side: tests/test_motion_learning.py)."""
import numpy as np
import pytest
import torch
from motion_clips import BOXING, CLIMB, JUMPS, clip, needs_clips

from ofasys_fs.contracts import SampleContext
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.errors import DataError
from ofasys_fs.instruction import Instruction
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.motion import MotionError, load_motion
from ofasys_fs.motion.statistics import MotionStatistics, window_features
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import build_adaptor, build_preprocessor
from ofasys_fs.vocab import Vocabulary


def preprocessor(attrs: str = ",max_length=32", data_cfg: DataConfig = DataConfig()):
    slot = Instruction.parse(f"[MOTION:clip{attrs}] what happens? -> [TEXT:caption]").encoder[0]
    return build_preprocessor(slot.preprocess, slot, None, data_cfg)


def span(name: str, start: float, end: float) -> dict:
    return {"path": clip(name), "start": start, "end": end}


@needs_clips
def test_windows_are_random_on_train_and_centred_elsewhere():
    pre = preprocessor()
    value = span(JUMPS, 2, 4)  # 60 frames at 30 fps
    centred = pre(value, SampleContext(split="test"))["frames"]
    expected_window = load_motion(value).resampled(30).frames(14, 46)
    stats = MotionStatistics.for_skeleton(expected_window.skeleton)
    torch.testing.assert_close(centred, torch.from_numpy(stats.normalise(window_features(expected_window))).float())
    assert centred.shape == (32, 6 + 6 * 31)
    train = [pre(value, SampleContext(split="train", row_index=0, epoch=epoch))["frames"] for epoch in range(4)]
    assert torch.equal(train[0], pre(value, SampleContext(split="train", row_index=0, epoch=0))["frames"])
    assert len({tuple(t[0, 6:12].tolist()) for t in train}) > 1  # other epochs, other windows


@needs_clips
def test_rate_comes_from_the_slot_or_the_data_config_and_whole_clips_batch_with_a_mask():
    assert preprocessor(",fps=20")(span(JUMPS, 0, 2), SampleContext())["frames"].shape[0] == 40
    pre = preprocessor("", DataConfig(motion_fps=15.0))
    short, long = (pre(span(JUMPS, 0, t), SampleContext())["frames"] for t in (1, 2))
    assert (short.shape[0], long.shape[0]) == (15, 30)
    batch = pre.collate([{"frames": short}, {"frames": long}])
    assert batch["frames"].shape == (2, 30, 192) and batch["frame_lengths"].tolist() == [15, 30]
    assert batch["padding_mask"][0].tolist() == [False] * 15 + [True] * 15 and not batch["padding_mask"][1].any()


@needs_clips
def test_training_statistics_normalise_and_hold_the_training_skeleton(tmp_path):
    pre = preprocessor()
    windows = list(load_motion(span(JUMPS, 0, 10)).resampled(30).windows(32, 16))
    pre.statistics = MotionStatistics.fit(windows)
    frames = pre(span(JUMPS, 0, 10), SampleContext(split="test"))["frames"]
    assert abs(frames.mean().item()) < 0.5 and 0.3 < frames[:, pre.statistics.std > 1e-5].std().item() < 2
    np.save(tmp_path / "channels.npy", load_motion(span(CLIMB, 0, 2)).channels())  # arrays use its skeleton
    assert pre(str(tmp_path / "channels.npy"), SampleContext(split="test"))["frames"].shape == (32, 192)
    with pytest.raises(MotionError, match=r"Boxing_Toes.bvh': its skeleton \(21 joints\) differs from the training "
                                          r"skeleton \(31 joints\).*every clip of a task must use one skeleton"):
        pre(span(BOXING, 0, 2), SampleContext())


@needs_clips
def test_a_clip_shorter_than_the_window_is_an_error_naming_file_and_lengths():
    encoder = RowEncoder("moves", "[MOTION:clip,max_length=64] what happens? -> [TEXT:caption]",
                         Vocabulary.default(num_bins=0, num_codes=0))
    with pytest.raises(DataError, match=r"task 'moves', row 7, column 'clip'.*01_01.bvh': 30 frames at 30 fps "
                                        r"\(1.00 s\) after resampling, shorter than the window max_length=64 "
                                        r"\(2.13 s\)"):
        encoder.encode({"clip": span(JUMPS, 0, 1), "caption": "jumps"}, SampleContext(split="train", row_index=7))


def test_adaptor_embeds_frames_of_any_skeleton_up_to_its_feature_size():
    cfg = GeneralistModel(arch="micro", motion_feature_dim=200).cfg  # the arch's sizes filled in
    torch.manual_seed(0)
    adaptor = build_adaptor("motion_6d", cfg, torch.nn.Embedding(10, cfg.embed_dim)).eval()
    frames = torch.randn(2, 5, 192)
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    out = adaptor({"modality": "MOTION", "frames": frames, "padding_mask": mask})
    assert out.embeddings.shape == (2, 5, 64) and torch.equal(out.padding_mask, mask)
    assert out.positions.tolist() == [list(range(5))] * 2 and out.rel_bias.shape[-2:] == (5, 5)
    alone = adaptor({"modality": "MOTION", "frames": frames[1:, :3]})
    torch.testing.assert_close(alone.embeddings, out.embeddings[1:, :3])  # frames are embedded one by one
    assert adaptor({"frames": torch.randn(1, 4, 132)}).embeddings.shape == (1, 4, 64)  # a 21-joint skeleton
    with pytest.raises(ValueError, match=r"features <= 200\], got \[1, 4, 300\].*raise model config "
                                         r"motion_feature_dim"):
        adaptor({"frames": torch.randn(1, 4, 300)})
