"""BVH in and out, forward kinematics, rotations, the motion_6d representation (exact round trip on real CMU clips),
resampling, windows, anchoring, normalisation statistics, the writers, and clear errors on bad motion files."""
import functools
import http.server
import json
import threading

import numpy as np
import pytest
from motion_clips import BOXING, CLIMB, JUMPS, clip, needs_clips
from PIL import Image

from ofasys_fs.motion import Motion, MotionError, feature_dim, from_6d, load_motion, parse_bvh, to_6d
from ofasys_fs.motion.render import project
from ofasys_fs.motion.rotations import euler_to_matrix, matrix_to_6d, matrix_to_euler, sixd_to_matrix
from ofasys_fs.motion.statistics import MotionStatistics, window_features

TINY = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 1 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 2 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.5
1 2 3 90 0 0 0 0 0
1 2 3 0 0 0 0 0 90
0 0 0 90 90 0 0 0 0
"""


def line_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(prefix))


def test_forward_kinematics_follows_the_channel_order_and_the_offsets():
    motion = Motion.from_bvh(TINY)
    assert motion.fps == 2.0 and motion.skeleton.joint_names == ["Hips", "Spine"]
    positions = motion.joint_positions()  # nodes: Hips, Spine, Spine_end
    # frame 0: Rz(90) turns the spine's (0, 1, 0) offset into (-1, 0, 0)
    np.testing.assert_allclose(positions[0], [[1, 2, 3], [0, 2, 3], [-2, 2, 3]], atol=1e-12)
    # frame 1: a rotation about the bone's own axis moves nothing
    np.testing.assert_allclose(positions[1], [[1, 2, 3], [1, 3, 3], [1, 5, 3]], atol=1e-12)
    # frame 2: "Zrotation Xrotation" is Rz(90) Rx(90): (0, 1, 0) -> (0, 0, 1) (the other order would give (-1, 0, 0))
    np.testing.assert_allclose(positions[2, 1], [0, 0, 1], atol=1e-12)


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_euler_matrix_and_6d_conversions_are_inverse(order):
    rng = np.random.default_rng(0)
    angles = rng.uniform(-180, 180, (500, 3))
    angles[:, 1] = rng.uniform(-89, 89, 500)
    angles[:10, 1] = [90, -90] * 5  # gimbal lock
    matrix = euler_to_matrix(angles, order)
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(matrix, order), order), matrix, atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(matrix, order)[10:], angles[10:], atol=1e-9)
    np.testing.assert_allclose(sixd_to_matrix(matrix_to_6d(matrix)), matrix, atol=1e-14)
    noisy = sixd_to_matrix(matrix_to_6d(matrix) + rng.normal(0, 0.3, (500, 6)))  # e.g. a network's output
    np.testing.assert_allclose(noisy @ noisy.transpose(0, 2, 1), np.broadcast_to(np.eye(3), noisy.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(noisy), 1.0, atol=1e-12)


@needs_clips
@pytest.mark.parametrize("name, frames, fps, joints", [(JUMPS, 2752, 120.0, 31), (CLIMB, 4511, 120.0, 31),
                                                       (BOXING, 3069, 100.0, 21)])
def test_bvh_to_6d_to_bvh_round_trip_is_exact_on_cmu_clips(name, frames, fps, joints, tmp_path):
    original = load_motion(clip(name))
    assert (original.num_frames, original.fps, original.skeleton.num_joints) == (frames, fps, joints)
    features = to_6d(original)
    assert features.shape == (frames, feature_dim(original.skeleton)) == (frames, 6 + 6 * joints)
    rebuilt = from_6d(features, original.skeleton, original.fps)
    rebuilt.save_as_bvh(tmp_path / "back.bvh")
    back = load_motion(tmp_path / "back.bvh")
    assert back.skeleton.layout() == original.skeleton.layout() and back.fps == fps
    np.testing.assert_array_equal(back.skeleton.offsets, original.skeleton.offsets)
    np.testing.assert_allclose(back.rotations, original.rotations, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back.root_positions, original.root_positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back.joint_positions(), original.joint_positions(), rtol=0, atol=1e-9)
    # the channel values themselves come back wherever the file's Euler triple is the canonical one
    _, channels, _ = parse_bvh((tmp_path / "back.bvh").read_text())
    _, source_channels, _ = parse_bvh(open(clip(name)).read())
    gap = np.abs((channels - source_channels + 180) % 360 - 180)
    columns = original.skeleton.rotation_columns  # [J, 3]: a joint's triple is canonical when |middle| < 90
    canonical = np.abs(source_channels[:, columns[:, 1]]) < 89.9
    rotation_gap = gap[:, columns].max(axis=-1)
    assert canonical.mean() > 0.95 and rotation_gap[canonical].max() < 1e-9
    assert gap[:, original.skeleton.position_columns].max() < 1e-9
    # a generator's output rebuilds the ground path from the velocities: the same path, to rounding
    integrated = from_6d(features, original.skeleton, original.fps, integrate_velocity=True)
    np.testing.assert_allclose(integrated.root_positions, original.root_positions, rtol=0, atol=1e-9)


@needs_clips
def test_resampling_keeps_whole_ratio_frames_and_interpolates_the_others():
    jumps = load_motion(clip(JUMPS))
    at_30 = jumps.resampled(30)
    assert at_30.num_frames == 688 and at_30.fps == 30
    np.testing.assert_array_equal(at_30.rotations, jumps.rotations[::4])
    boxing = load_motion(clip(BOXING)).frames(0, 301)
    resampled = boxing.resampled(30)
    assert resampled.num_frames == 91 and abs(resampled.duration - 91 / 30) < 1e-12
    np.testing.assert_allclose(resampled.rotations[::3], boxing.rotations[::10], atol=1e-12)  # shared instants
    # frame 1 lies 1/3 of the way from source frame 3 to 4: slerp splits the relative rotation's angle 1 : 2
    def angle(a, b):
        return np.arccos(np.clip((np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    start, end, middle = boxing.rotations[3], boxing.rotations[4], resampled.rotations[1]
    moving = angle(start, end) > 1e-3
    np.testing.assert_allclose(angle(start, middle)[moving], angle(start, end)[moving] / 3, rtol=1e-6)
    np.testing.assert_allclose(resampled.root_positions[1], boxing.root_positions[3] + (boxing.root_positions[4]
                               - boxing.root_positions[3]) / 3, atol=1e-12)


@needs_clips
def test_time_spans_windows_and_anchoring():
    jumps = load_motion(clip(JUMPS))
    span = load_motion({"path": clip(JUMPS), "start": 2, "end": 6})
    assert span.num_frames == 480
    np.testing.assert_array_equal(span.rotations, jumps.rotations[240:720])
    windows = list(span.resampled(30).windows(32, 8))
    assert len(windows) == (120 - 32) // 8 + 1 and all(w.num_frames == 32 for w in windows)
    anchored = span.anchored(0)
    features = to_6d(anchored)
    np.testing.assert_allclose(anchored.root_positions[0, [0, 2]], 0, atol=1e-12)
    forward = anchored.rotations[0, 0, :, 2]  # the root's local Z on the ground points to +Z
    assert abs(forward[0]) < 1e-12 and forward[2] > 0
    before, after = span.joint_positions(), anchored.joint_positions()  # a rigid move: distances are kept
    np.testing.assert_allclose(np.linalg.norm(after[:, 5] - after[:, 20], axis=-1),
                               np.linalg.norm(before[:, 5] - before[:, 20], axis=-1), atol=1e-9)
    np.testing.assert_allclose(features[:, 3:6], to_6d(span)[:, 3:6], atol=1e-9)  # velocities are heading-relative
    with pytest.raises(MotionError, match=r"01_01.bvh'.*span \[30 s, 40 s\) holds no frame; the clip lasts 22.933 s"):
        load_motion({"path": clip(JUMPS), "start": 30, "end": 40})


@needs_clips
def test_statistics_are_fitted_on_training_windows_and_stored_as_plain_values():
    windows = list(load_motion({"path": clip(JUMPS), "end": 10}).resampled(30).windows(32, 16))
    stats = MotionStatistics.fit(windows)
    stacked = np.concatenate([window_features(w) for w in windows])
    assert stats.count == len(stacked) == 32 * len(windows)
    np.testing.assert_allclose(stats.mean, stacked.mean(0), atol=1e-12)
    normalised = stats.normalise(stacked)
    varying = stacked.std(0) > 1e-6
    np.testing.assert_allclose(normalised[:, varying].std(0), 1, atol=1e-9)
    np.testing.assert_allclose(stats.denormalise(normalised), stacked, atol=1e-9)
    stored = MotionStatistics.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert stored.skeleton.layout() == stats.skeleton.layout()
    np.testing.assert_array_equal(stored.std, stats.std)
    default = MotionStatistics.for_skeleton(stats.skeleton)
    assert default.std[0] == pytest.approx(stats.skeleton.rest_height) and default.std[6:].tolist() == [1.0] * 186
    boxing = load_motion({"path": clip(BOXING), "end": 2})
    with pytest.raises(MotionError, match=r"Boxing_Toes.bvh': its skeleton \(21 joints\) differs from the first "
                                          r"window's skeleton \(31 joints\): node 0 is joint 'Hips' \(parent None, "
                                          r"channels Xposition Yposition Zposition Zrotation Xrotation Yrotation\) "
                                          r"where the first window's skeleton has joint 'Hips'"):
        MotionStatistics.fit([windows[0], boxing])


@needs_clips
def test_loading_forms_bytes_npz_npy_and_in_memory(tmp_path):
    jumps = load_motion({"path": clip(JUMPS), "end": 1})
    text = jumps.to_bvh()
    from_bytes = load_motion(text.encode())
    np.testing.assert_array_equal(from_bytes.rotations, Motion.from_bvh(text).rotations)
    jumps.save_npz(tmp_path / "clip.npz")
    from_npz = load_motion(str(tmp_path / "clip.npz"))
    assert from_npz.fps == 120 and from_npz.skeleton.layout() == jumps.skeleton.layout()
    np.testing.assert_allclose(from_npz.rotations, jumps.rotations, atol=1e-12)
    np.save(tmp_path / "clip.npy", jumps.channels())
    with pytest.raises(MotionError, match="clip.npy'.*channel values without a skeleton"):
        load_motion(tmp_path / "clip.npy")
    from_npy = load_motion(tmp_path / "clip.npy", skeleton=jumps.skeleton, array_fps=120)
    np.testing.assert_allclose(from_npy.joint_positions(), jumps.joint_positions(), atol=1e-9)
    with pytest.raises(MotionError, match=r"motion array, frame 3.*expected finite"):
        load_motion(np.where(np.arange(120)[:, None] == 3, np.nan, jumps.channels()), skeleton=jumps.skeleton,
                    array_fps=120)
    with pytest.raises(MotionError, match="unrecognised content"):
        load_motion(b"GIF89a not a motion")


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_bvh_url_is_fetched_and_parsed(tmp_path):
    (tmp_path / "tiny.bvh").write_text(TINY)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/tiny.bvh"
        np.testing.assert_allclose(load_motion(url).joint_positions(), Motion.from_bvh(TINY).joint_positions())
        with pytest.raises(MotionError, match=r"URL 'http://127.0.0.1:\d+/tiny.bvh'.*holds no frame"):
            load_motion({"path": url, "start": 5})
    finally:
        server.shutdown()
        server.server_close()


@needs_clips
def test_writers_bvh_and_gif(tmp_path):
    window = load_motion({"path": clip(JUMPS), "start": 3, "end": 4}).resampled(30)
    window.save_as_bvh(tmp_path / "w.bvh")
    assert (tmp_path / "w.bvh").read_text().startswith("HIERARCHY\nROOT Hips\n")
    np.testing.assert_allclose(load_motion(tmp_path / "w.bvh").joint_positions(), window.joint_positions(), atol=1e-9)
    window.save_as_gif(tmp_path / "w.gif", size=96)
    with Image.open(tmp_path / "w.gif") as gif:
        assert gif.size == (96, 96) and gif.n_frames == 30 and 30 <= gif.info["duration"] <= 40  # 10 ms units
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.int32))
    pixels = project(window.joint_positions(), 96, 30.0)
    for index in (0, 29):  # every joint is drawn where it projects: a bone or the head covers it or a neighbour
        drawn = frames[index].sum(axis=-1) < 600
        x, y = np.round(pixels[index]).astype(int).T
        assert all(drawn[max(b - 1, 0):b + 2, max(a - 1, 0):a + 2].any() for a, b in zip(x, y))
        assert drawn.mean() < 0.2  # and it is a stick figure, not a filled frame
    assert np.abs(frames[0] - frames[29]).sum() > 0  # the figure moves


BROKEN = {  # name: (change to TINY, expected message with {line})
    "missing channels": (lambda t: t.replace("    CHANNELS 3 Zrotation Xrotation Yrotation\n", ""),
                         "JOINT Spine", r"line {line}: JOINT 'Spine' has no CHANNELS line"),
    "short frame": (lambda t: t.replace("1 2 3 0 0 0 0 0 90", "1 2 3 0 0 0 0 0"),
                    "1 2 3 0 0 0 0 0", r"line {line} \(frame 1\): 8 values, expected 9"),
    "NaN": (lambda t: t.replace("1 2 3 90 0 0 0 0 0", "1 2 3 90 0 0 0 0 nan"),
            "1 2 3 90 0 0 0 0 nan", r"line {line} \(frame 0\): channel 'Spine Yrotation' is nan; expected finite"),
    "frame count": (lambda t: t.replace("Frames: 3", "Frames: 5"),
                    "Frames", r"line {line}: 'Frames: 5' but only 3 frame lines follow"),
    "not a number": (lambda t: t.replace("0 0 0 90 90", "0 0 0 90 ninety"),
                     "0 0 0 90 ninety", r"line {line} \(frame 2\): 'ninety' is not a number"),
    "root channels": (lambda t: t.replace("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
                                          "CHANNELS 3 Zrotation Xrotation Yrotation"),
                      "ROOT", r"line {line}: ROOT 'Hips' has CHANNELS Zrotation Xrotation Yrotation; the root needs"),
    "frame time": (lambda t: t.replace("Frame Time: 0.5", "Frame Time: 0"),
                   "Frame Time", r"line {line}: 'Frame Time: 0' must be a positive number"),
    "no motion": (lambda t: t.split("MOTION")[0], None, r"no MOTION line"),
    "unclosed": (lambda t: t.replace("  }\n}\n", "  }\n"), None,
                 r"line \d+: the file ends inside the HIERARCHY; expected JOINT, End Site or '}}' closing 'Hips'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_bvh_files_name_the_file_and_line(case, tmp_path):
    change, marker, message = BROKEN[case]
    text = change(TINY)
    path = tmp_path / "broken.bvh"
    path.write_text(text)
    line = line_of(text, marker) if marker else 0
    with pytest.raises(MotionError, match=r"broken.bvh'(, |: )" + message.format(line=line)):
        load_motion(str(path))


def test_surplus_frame_lines_are_reported_and_the_declared_count_read(tmp_path, caplog):
    path = tmp_path / "extra.bvh"
    path.write_text(TINY.replace("Frames: 3", "Frames: 2"))
    assert load_motion(str(path)).num_frames == 2
    assert "'Frames: 2' (line 17) but 3 frame lines follow; reading the first 2" in caplog.text
