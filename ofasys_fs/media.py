"""Load images, audio and video from every form a data column may hold (docs/design.md §7, §12).

Accepted sources: local paths (relative ones resolved against `base_dir`, the data file's folder),
http(s) URLs (fetched within `FetchLimits`), raw bytes, base64 strings, `data:` URIs, Hugging Face
feature values ({"bytes", "path"} and {"array", "sampling_rate"} dicts), PIL images and numpy/torch
arrays. Every failure is a `MediaError` naming the source and what was expected; callers add the
task, row and column with `MediaError.add_context`.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import io
import numbers
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Union

import av
import numpy as np
import soundfile
import torch
import torchaudio.transforms
from PIL import Image

from .errors import DataError
from .fetch import FetchError, FetchLimits, fetch_url

__all__ = ["FetchLimits", "MediaError", "load_audio", "load_image", "load_video"]

PathLike = Union[str, os.PathLike]

_HTTP_PREFIX = re.compile(r"\s*https?://", re.IGNORECASE)
_OTHER_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]+):")  # two letters or more: "C:" is a drive
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_MIN_BASE64_CHARS = 64  # shorter strings are far more likely mistyped paths than encoded media
_PREVIEW_CHARS = 60
_CHANNEL_COUNTS = (1, 3, 4)
MIN_SAMPLE_RATE = 1000  # Hz; below it audio is a corrupt header, not a recording

_SOURCE_FORMS = "a path, http(s) URL, bytes, base64 string, data: URI or {'bytes', 'path'} dict"
_IMAGE_FORMS = f"{_SOURCE_FORMS}, a PIL image, or an [H, W], [H, W, C] or [C, H, W] array"
_AUDIO_FORMS = f"{_SOURCE_FORMS}, an (array, sampling_rate) tuple or an {{'array', 'sampling_rate'}} dict"
_VIDEO_FORMS = f"{_SOURCE_FORMS}, a [T, H, W, C] or [T, C, H, W] frame array, or a list of images"
# Raster formats only: PIL hands EPS/PDF-like formats to external programs (Ghostscript).
_IMAGE_DECODERS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "TGA", "ICO", "JPEG2000", "AVIF")
_IMAGE_FILES = f"an image file ({', '.join(_IMAGE_DECODERS)})"
_AUDIO_FILES = "an audio file (WAV, FLAC, OGG, MP3, ...)"
_VIDEO_FILES = "a self-contained video file (MP4, WebM, MKV, AVI, ...)"


class MediaError(DataError):
    """A media value could not be loaded; the message names its source, what was expected and,
    once added with `add_context`, the task, row and column: "task 'x', row 12, column 'img': ..."."""

    def __init__(
        self,
        reason: str,
        *,
        source: Optional[str] = None,
        task: Optional[str] = None,
        row: Optional[int] = None,
        column: Optional[str] = None,
    ):
        super().__init__(reason)
        self.reason, self.source = reason, source
        self.task, self.row, self.column = task, row, column

    def add_context(
        self, *, task: Optional[str] = None, row: Optional[int] = None, column: Optional[str] = None
    ) -> "MediaError":
        """Record where the failing value came from; returns self, for `raise err.add_context(...)`."""
        self.task = task if task is not None else self.task
        self.row = row if row is not None else self.row
        self.column = column if column is not None else self.column
        return self

    def __str__(self) -> str:
        where = []
        if self.task is not None:
            where.append(f"task {self.task!r}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


# --------------------------------------------------------------------------------------------------
# Public loaders


def load_image(
    value: Any, base_dir: Optional[PathLike] = None, *, fetch_limits: Optional[FetchLimits] = None
) -> Image.Image:
    """Load one image as an RGB PIL image from any accepted form (see module docstring)."""
    if isinstance(value, Image.Image):  # possibly lazily opened (Hugging Face Image features are)
        with _decoding(f"PIL image {getattr(value, 'filename', '') or value.mode!r}", _IMAGE_FILES):
            return value.convert("RGB")
    if _is_array(value):
        array = _to_numpy(value)
        return Image.fromarray(_rgb_pixels(array, f"image array of shape {array.shape}", frames=False))
    encoded = encoded_source(value, base_dir, fetch_limits, "image", _IMAGE_FORMS)
    with _decoding(encoded.source, _IMAGE_FILES), encoded.opened() as file:
        with Image.open(file, formats=_IMAGE_DECODERS) as image:
            return image.convert("RGB")


def load_audio(
    value: Any,
    base_dir: Optional[PathLike] = None,
    target_rate: int = 16000,
    *,
    fetch_limits: Optional[FetchLimits] = None,
) -> torch.Tensor:
    """Load audio as a mono float32 waveform [num_samples] at `target_rate` Hz (channels averaged)."""
    channels, rate, source = _audio_channels(value, base_dir, fetch_limits)
    if channels.numel() == 0:
        raise MediaError(f"{source} contains no audio samples; expected a non-empty waveform", source=source)
    if not torch.isfinite(channels).all():
        raise MediaError(f"{source} contains NaN or infinite samples", source=source)
    mono = channels.mean(dim=0)
    if rate != target_rate:
        with torch.no_grad():
            mono = _resampler(rate, target_rate)(mono)
    return mono.contiguous()


@functools.lru_cache(maxsize=16)
def _resampler(rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    """torchaudio's resampler with its filter kernel computed once per pair of rates (functional.resample
    recomputes it per call: a tenth of a training step's data time where every clip is resampled)."""
    return torchaudio.transforms.Resample(rate, target_rate)


def load_video(
    value: Any,
    base_dir: Optional[PathLike] = None,
    num_frames: int = 8,
    rng: Optional[np.random.Generator] = None,
    *,
    fetch_limits: Optional[FetchLimits] = None,
) -> torch.Tensor:
    """Sample `num_frames` frames uniformly across a clip: uint8 [num_frames, 3, H, W].

    Without `rng` each segment contributes its middle frame (deterministic); with a numpy Generator
    a random frame of each segment (training jitter). Clips shorter than `num_frames` repeat frames.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if isinstance(value, (list, tuple)):
        frames = _frames_from_images(value, base_dir, num_frames, rng, fetch_limits)
    elif _is_array(value):
        array = _to_numpy(value)
        source = f"video frame array of shape {array.shape}"
        indices = _frame_indices(array.shape[0] if array.ndim else 0, num_frames, rng, source)
        frames = _rgb_pixels(array[indices], source, frames=True)
    elif hasattr(value, "get_frames_at"):  # a torchcodec VideoDecoder, as datasets>=4 Video features give
        frames = _frames_from_torchcodec(value, num_frames, rng)
    else:
        frames = _decode_video(encoded_source(value, base_dir, fetch_limits, "video", _VIDEO_FORMS), num_frames, rng)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------------------------
# Sources: value -> still-encoded bytes or file


@dataclasses.dataclass(frozen=True)
class _Encoded:
    """Still-encoded media, in a local file or in memory, and how to name it in error messages."""

    source: str
    path: Optional[Path] = None
    data: Optional[bytes] = None

    @contextlib.contextmanager
    def opened(self) -> Iterator[BinaryIO]:
        # A file object rather than a path string, so that no decoder applies its own protocol
        # or pattern rules to the name (FFmpeg would to "concat:..." or "%03d.png").
        with (open(self.path, "rb") if self.path is not None else io.BytesIO(self.data)) as file:
            yield file


def encoded_source(
    value: Any, base_dir: Optional[PathLike], limits: Optional[FetchLimits], kind: str, forms: str
) -> _Encoded:
    """The encoded bytes (or local file) behind any supported media value, undecoded; `.opened()` reads it."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _Encoded(f"{len(data)} raw bytes starting {data[:16]!r}", data=data)
    if isinstance(value, os.PathLike):
        local = _local_file(os.fspath(value), base_dir)
        if local is None:
            raise _missing_file_error(os.fspath(value), base_dir)
        return local
    if isinstance(value, str):
        return _encoded_from_string(value, base_dir, limits)
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        return _encoded_from_feature_dict(value, base_dir, limits)
    kind_of_value = f"dict with keys {sorted(map(str, value))}" if isinstance(value, dict) else type(value).__name__
    raise MediaError(f"unsupported {kind} value ({kind_of_value}); expected {forms}", source=kind_of_value)


def _encoded_from_feature_dict(value: dict, base_dir: Optional[PathLike], limits: Optional[FetchLimits]) -> _Encoded:
    """A Hugging Face Image/Audio/Video feature stored undecoded: {"bytes": ..., "path": ...}."""
    data, path = value.get("bytes"), value.get("path")
    if data:
        source = f"{len(data)} bytes of {path or 'an unnamed file'!r} (from a {{'bytes', 'path'}} dict)"
        return _Encoded(source, data=bytes(data))
    if path:
        return _encoded_from_string(str(path), base_dir, limits)
    raise MediaError("a {'bytes', 'path'} dict with neither bytes nor a path; expected one of them", source="dict")


def _encoded_from_string(text: str, base_dir: Optional[PathLike], limits: Optional[FetchLimits]) -> _Encoded:
    """Classify a string: http(s) URL, data: URI, existing file, base64, else a missing file."""
    if _HTTP_PREFIX.match(text):
        url = text.strip()
        source = f"URL {_preview(url, 200)}"
        try:
            return _Encoded(source, data=fetch_url(url, limits or FetchLimits()))
        except FetchError as err:
            raise MediaError(f"cannot fetch {source}: {err}", source=source) from err
    if text[:5].lower() == "data:":
        return _decode_data_uri(text)
    local = _local_file(text, base_dir)
    if local is not None:
        return local
    compact = "".join(text.split())
    if len(compact) >= _MIN_BASE64_CHARS and _BASE64_TEXT.fullmatch(compact):
        source = f"base64 string {_preview(text)} (no file of that name exists)"
        return _Encoded(source, data=_decode_base64(compact, source))
    scheme = _OTHER_SCHEME.match(text)
    if scheme:
        source = f"URL {_preview(text, 200)}"
        raise MediaError(
            f"unsupported URL scheme {scheme.group(1)!r} in {source}: only http and https URLs are fetched, "
            "and no local file has that name",
            source=source,
        )
    raise _missing_file_error(text, base_dir)


def _resolve_path(text: str, base_dir: Optional[PathLike]) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir).expanduser() / path
    return path


def _local_file(text: str, base_dir: Optional[PathLike]) -> Optional[_Encoded]:
    path = _resolve_path(text, base_dir)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte
        return None
    return _Encoded(f"file '{path}'", path=path) if is_file else None


def _missing_file_error(text: str, base_dir: Optional[PathLike]) -> MediaError:
    path = _resolve_path(text, base_dir)
    source = f"file '{path}'"
    try:
        problem = "is not a regular file" if path.exists() else "does not exist"
    except (OSError, ValueError):
        problem = "cannot be accessed"
    if path.is_absolute():
        relative = base_dir is not None and not Path(text).expanduser().is_absolute()
        detail = f" (relative path {_preview(text)} resolved against base_dir '{base_dir}')" if relative else ""
    else:
        detail = f" (relative to the working directory '{Path.cwd()}'; no base_dir was given)"
    return MediaError(f"{source} {problem}{detail}; expected {_SOURCE_FORMS}", source=source)


def _decode_data_uri(text: str) -> _Encoded:
    source = f"data URI {_preview(text)}"
    header, comma, payload = text.partition(",")
    if not comma:
        raise MediaError(f"malformed {source}: expected 'data:[<media type>][;base64],<data>'", source=source)
    if header.lower().endswith(";base64"):
        return _Encoded(source, data=_decode_base64("".join(payload.split()), source))
    return _Encoded(source, data=urllib.parse.unquote_to_bytes(payload))


def _decode_base64(compact: str, source: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    standard = compact.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError) as err:
        raise MediaError(f"invalid base64 in {source}: {err}", source=source) from err


def _preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"


@contextlib.contextmanager
def _decoding(source: str, expected: str) -> Iterator[None]:
    """Turn any decoder failure (PIL, soundfile, PyAV raise many types) into a MediaError."""
    try:
        yield
    except (MediaError, MemoryError):
        raise
    except Exception as err:
        raise MediaError(
            f"cannot decode {source}: expected {expected}; the decoder reported {type(err).__name__}: {err}",
            source=source,
        ) from err


# --------------------------------------------------------------------------------------------------
# Arrays


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, torch.Tensor))


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        return (tensor.float() if tensor.is_floating_point() else tensor).numpy()
    return np.asarray(value)


def _rgb_pixels(array: np.ndarray, source: str, frames: bool) -> np.ndarray:
    """uint8 [..., H, W, 3] from channels-last or channels-first pixels with 1, 3 or 4 channels.

    Images may also be [H, W] (grey); frame arrays must be 4-D, so one image is never read as a clip.
    """
    expected = "[T, H, W, C] or [T, C, H, W]" if frames else "[H, W], [H, W, C] or [C, H, W]"
    if not frames and array.ndim == 2:
        array = array[..., None]
    if array.ndim != (4 if frames else 3) or array.size == 0:
        raise MediaError(f"{source}: expected a non-empty {expected} array with C in {_CHANNEL_COUNTS}", source=source)
    if array.shape[-1] not in _CHANNEL_COUNTS:
        if array.shape[-3] not in _CHANNEL_COUNTS:
            raise MediaError(f"{source}: expected {expected} with C in {_CHANNEL_COUNTS}", source=source)
        array = np.moveaxis(array, -3, -1)
    pixels = _uint8_pixels(array, source)
    if pixels.shape[-1] == 1:
        return np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])  # RGBA: alpha dropped


def _uint8_pixels(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind != "f":
        raise MediaError(f"{source} has dtype {array.dtype}; expected uint8 or float in [0, 1]", source=source)
    low, high = float(np.min(array)), float(np.max(array))
    if not (0.0 <= low and high <= 1.0):  # also false for NaN
        raise MediaError(f"{source}: float pixels must be in [0, 1], got range [{low}, {high}]", source=source)
    return np.round(array * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Audio


def _audio_channels(
    value: Any, base_dir: Optional[PathLike], limits: Optional[FetchLimits]
) -> tuple[torch.Tensor, int, str]:
    """Any audio form -> (float32 [channels, samples], sample rate, source description)."""
    if isinstance(value, tuple) and len(value) == 2:
        return _audio_array(value[0], value[1], "(array, sampling_rate) tuple")
    if isinstance(value, dict) and "array" in value:
        return _audio_array(value["array"], value.get("sampling_rate"), "{'array', 'sampling_rate'} dict")
    if hasattr(value, "get_all_samples"):  # a torchcodec AudioDecoder, as datasets>=4 Audio features give
        source = f"audio decoder {type(value).__name__}"
        with _decoding(source, "decodable audio"):
            samples = value.get_all_samples()
            return samples.data.float(), _sample_rate(samples.sample_rate, source), source
    if _is_array(value):
        source = f"audio array of shape {tuple(value.shape)}"
        raise MediaError(
            f"{source} has no sampling rate; pass (array, rate) or {{'array': ..., 'sampling_rate': ...}}",
            source=source,
        )
    encoded = encoded_source(value, base_dir, limits, "audio", _AUDIO_FORMS)
    with _decoding(encoded.source, _AUDIO_FILES), encoded.opened() as file:
        samples, rate = soundfile.read(file, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(samples.T)), _sample_rate(rate, encoded.source), encoded.source


def _audio_array(array: Any, rate: Any, form: str) -> tuple[torch.Tensor, int, str]:
    """[samples], [channels, samples] or [samples, channels] (the longer axis is time) -> [channels, samples]."""
    samples = _to_numpy(array)
    source = f"audio {form} with an array of shape {samples.shape} and dtype {samples.dtype}"
    rate = _sample_rate(rate, source)
    if samples.ndim == 1:
        samples = samples[None]
    elif samples.ndim != 2:
        raise MediaError(f"{source}: expected [samples] or a 2-D [channels, samples] array", source=source)
    elif samples.shape[0] > samples.shape[1]:
        samples = samples.T
    if samples.dtype.kind == "f":
        waveform = samples.astype(np.float32)
    elif samples.dtype.kind == "i":  # PCM integers, e.g. int16 from scipy.io.wavfile
        waveform = samples.astype(np.float32) / float(2 ** (8 * samples.dtype.itemsize - 1))
    else:
        raise MediaError(f"{source}: expected float or signed integer samples", source=source)
    return torch.from_numpy(np.ascontiguousarray(waveform)), rate, source


def _sample_rate(rate: Any, source: str) -> int:
    integral = isinstance(rate, numbers.Integral) or (isinstance(rate, float) and rate.is_integer())
    if isinstance(rate, bool) or not integral or rate <= 0:
        raise MediaError(f"{source}: sampling rate must be a positive integer, got {rate!r}", source=source)
    if rate < MIN_SAMPLE_RATE:  # resampling multiplies the samples by target/rate: a tiny file could fill memory
        raise MediaError(f"{source}: sampling rate {int(rate)} Hz is below {MIN_SAMPLE_RATE} Hz; expected a "
                         f"recording's rate (8000 Hz and up is usual)", source=source)
    return int(rate)


# --------------------------------------------------------------------------------------------------
# Video


def _frame_indices(total: int, num_frames: int, rng: Optional[np.random.Generator], source: str) -> np.ndarray:
    """Split [0, total) into num_frames equal segments and pick one frame in each."""
    if total < 1:
        raise MediaError(f"{source} has no frames; expected at least one", source=source)
    segment = np.arange(num_frames)
    if rng is None:
        return (2 * segment + 1) * total // (2 * num_frames)
    low = segment * total // num_frames
    high = np.maximum((segment + 1) * total // num_frames, low + 1)
    return rng.integers(low, high)


def _frames_from_images(
    images: Union[list, tuple],
    base_dir: Optional[PathLike],
    num_frames: int,
    rng: Optional[np.random.Generator],
    limits: Optional[FetchLimits],
) -> np.ndarray:
    """Only the sampled images are loaded; all must share one size."""
    source = f"list of {len(images)} video frames"
    indices = _frame_indices(len(images), num_frames, rng, source)
    loaded = {}
    for index in sorted(set(indices.tolist())):
        try:
            loaded[index] = np.asarray(load_image(images[index], base_dir, fetch_limits=limits))
        except MediaError as err:
            raise MediaError(f"frame {index} of the {source}: {err.reason}", source=err.source) from err
    sizes = {index: frame.shape[1::-1] for index, frame in loaded.items()}
    if len(set(sizes.values())) > 1:
        raise MediaError(
            f"{source}: frames differ in size (frame: width x height) {sizes}; expected one size", source=source
        )
    return np.stack([loaded[index] for index in indices.tolist()])


def _frames_from_torchcodec(decoder: Any, num_frames: int, rng: Optional[np.random.Generator]) -> np.ndarray:
    source = f"video decoder {type(decoder).__name__}"
    indices = _frame_indices(len(decoder), num_frames, rng, source)
    with _decoding(source, "decodable video frames"):
        batch = decoder.get_frames_at(indices=indices.tolist()).data
    return _rgb_pixels(_to_numpy(batch), f"frames of the {source}", frames=True)


def _decode_video(encoded: _Encoded, num_frames: int, rng: Optional[np.random.Generator]) -> np.ndarray:
    with _decoding(encoded.source, _VIDEO_FILES):
        with _video_stream(encoded) as (container, stream):
            declared = int(stream.frames or 0)
            indices = _frame_indices(declared, num_frames, rng, encoded.source) if declared > 0 else None
            kept, decoded = _decode_frames(container, stream, indices)
        if indices is None or len(kept) < len(set(indices.tolist())):
            # The container did not state its frame count, or overstated it: sample the decoded count.
            indices = _frame_indices(decoded, num_frames, rng, encoded.source)
            with _video_stream(encoded) as (container, stream):
                kept, _ = _decode_frames(container, stream, indices)
        return np.stack([kept[index] for index in indices.tolist()])


@contextlib.contextmanager
def _video_stream(encoded: _Encoded) -> Iterator[tuple[Any, Any]]:
    # A protocol whitelist naming no protocol: playlists (HLS, concat, DASH, SDP) cannot make FFmpeg
    # open other files or network addresses; a media file must be self-contained.
    with encoded.opened() as file, av.open(file, options={"protocol_whitelist": "none"}) as container:
        if not container.streams.video:
            raise MediaError(f"{encoded.source} has no video stream; expected {_VIDEO_FILES}", source=encoded.source)
        yield container, container.streams.video[0]


def _decode_frames(
    container: Any, stream: Any, indices: Optional[np.ndarray]
) -> tuple[dict[int, np.ndarray], int]:
    """Decode in order, keeping the frames at `indices` as RGB arrays and stopping after the last of
    them (every frame is decoded, only counted, when `indices` is None). Returns (kept, decoded count)."""
    wanted = set() if indices is None else set(indices.tolist())
    last = max(wanted, default=None)
    kept, decoded = {}, 0
    for index, frame in enumerate(container.decode(stream)):
        decoded = index + 1
        if index in wanted:
            kept[index] = frame.to_ndarray(format="rgb24")
            if index == last:
                break
    return kept, decoded
