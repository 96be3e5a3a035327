"""Any motion value -> Motion: BVH (path, http(s) URL, bytes), .npz (frames, frame_time, hierarchy), .npy or an
in-memory array of channel values, a Motion, or a {"path" | "bytes", "start", "end"} dict selecting a time span
in seconds. Parsed files are cached per process (keyed by path, size and modification time)."""
from __future__ import annotations

import functools
import io
import math
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..media import FetchLimits, encoded_source
from .bvh import parse_hierarchy
from .clip import Motion
from .errors import MotionError
from .skeleton import Skeleton

FORMS = ("a BVH file (path, http(s) URL or bytes), an .npz with 'frames' (+ 'frame_time', 'hierarchy'), an .npy "
         "or array of channel values [frames, channels], a Motion, or a {'path' | 'bytes', 'start', 'end'} dict")
SPAN_KEYS = {"path", "bytes", "start", "end"}
CACHED_FILES = 16


def load_motion(value: Any, base_dir: Optional[str] = None, skeleton: Optional[Skeleton] = None,
                array_fps: Optional[float] = None, fetch_limits: Optional[FetchLimits] = None) -> Motion:
    """The Motion behind `value`. Channel arrays carry no skeleton or rate: `skeleton` (the training one) and
    `array_fps` supply them, and a missing one is an error."""
    if isinstance(value, Motion):
        return value
    if isinstance(value, dict) and ("start" in value or "end" in value):
        unknown = sorted(set(map(str, value)) - SPAN_KEYS)
        if unknown:
            raise MotionError(f"motion dict with keys {sorted(map(str, value))}", f"unknown keys {unknown}; expected "
                                                                                  f"{sorted(SPAN_KEYS)}")
        source = {key: value[key] for key in ("path", "bytes") if key in value}
        motion = load_motion(source, base_dir, skeleton, array_fps, fetch_limits)
        return motion.between(_seconds(value, "start", 0.0, motion), _seconds(value, "end", math.inf, motion))
    if isinstance(value, (np.ndarray, list)) or type(value).__module__ == "torch":
        return _from_array(np.asarray(value, dtype=np.float64), None, None, skeleton, array_fps, "motion array")
    encoded = encoded_source(value, base_dir, fetch_limits, "motion", FORMS)
    if encoded.path is not None:
        stat = encoded.path.stat()
        return _load_file(str(encoded.path.resolve()), stat.st_size, stat.st_mtime_ns, skeleton, array_fps)
    return _decode(encoded.data, encoded.source, skeleton, array_fps)


def _seconds(value: dict, key: str, default: float, motion: Motion) -> float:
    seconds = value.get(key, default)
    if seconds is None:
        return default
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
        raise MotionError(motion.source, f"span {key}={seconds!r}: expected a number of seconds >= 0")
    return float(seconds)


@functools.lru_cache(maxsize=CACHED_FILES)
def _parsed_file(path: str, size: int, mtime_ns: int) -> tuple[bytes, Optional[Motion]]:
    data = Path(path).read_bytes()
    return data, Motion.from_bvh(_text(data, f"file '{path}'"), f"file '{path}'") if _is_bvh(data) else None


def _load_file(path: str, size: int, mtime_ns: int, skeleton: Optional[Skeleton], array_fps: Optional[float]) -> Motion:
    data, motion = _parsed_file(path, size, mtime_ns)
    return motion if motion is not None else _decode(data, f"file '{path}'", skeleton, array_fps)


def _is_bvh(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:9] == b"HIERARCHY"


def _text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MotionError(source, f"a BVH file must be text (UTF-8 or ASCII): byte {err.start} is not") from None


def _decode(data: bytes, source: str, skeleton: Optional[Skeleton], array_fps: Optional[float]) -> Motion:
    if _is_bvh(data):
        return Motion.from_bvh(_text(data, source), source)
    if data[:6] == b"\x93NUMPY":
        return _from_array(_numpy_load(data, source), None, None, skeleton, array_fps, source)
    if data[:4] == b"PK\x03\x04":
        with _numpy_load(data, source) as archive:
            if "frames" not in archive.files:
                raise MotionError(source, f"an .npz motion needs a 'frames' array; it holds {sorted(archive.files)}")
            frame_time = float(archive["frame_time"]) if "frame_time" in archive.files else None
            header = str(archive["hierarchy"]) if "hierarchy" in archive.files else None
            return _from_array(np.asarray(archive["frames"], dtype=np.float64), frame_time, header, skeleton,
                               array_fps, source)
    raise MotionError(source, f"unrecognised content (starts {data[:12]!r}); expected {FORMS}")


def _numpy_load(data: bytes, source: str) -> Any:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise MotionError(source, f"cannot read it as .npy/.npz ({err}); object arrays (pickles) are refused") from None


def _from_array(frames: np.ndarray, frame_time: Optional[float], header: Optional[str],
                skeleton: Optional[Skeleton], array_fps: Optional[float], source: str) -> Motion:
    if header is not None:
        skeleton = parse_hierarchy(header, f"{source} (hierarchy)")
    if skeleton is None:
        raise MotionError(source, "channel values without a skeleton: give a BVH file, an .npz with a 'hierarchy' "
                                  "(BVH header text), or motion statistics that hold the training skeleton")
    fps = 1.0 / frame_time if frame_time else array_fps
    if fps is None or not math.isfinite(fps) or fps <= 0:
        raise MotionError(source, "channel values without a frame rate: store 'frame_time' in the .npz")
    if frames.ndim != 2 or not len(frames):
        raise MotionError(source, f"channel array of shape {list(frames.shape)}; expected [frames >= 1, "
                                  f"{skeleton.num_channels}]")
    bad = np.argwhere(~np.isfinite(frames))
    if len(bad):
        raise MotionError(f"{source}, frame {int(bad[0, 0])}", f"column {int(bad[0, 1])} is "
                                                                 f"{frames[tuple(bad[0])]}; expected finite values")
    return Motion.from_channels(skeleton, frames, fps, source)
