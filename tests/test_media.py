"""Media loading (ofasys_fs.media, ofasys_fs.fetch): every input form, real file formats, corrupt
files, and http(s) fetching against a local server on 127.0.0.1 (normal, 404, redirects, size cap,
timeout, garbage)."""
import base64
import http.server
import io
import pickle
import threading
import time

import av
import numpy as np
import pytest
import soundfile
import torch
from media_files import FRAMES, SQUARE, STEP, moving_square_video
from PIL import Image

from ofasys_fs.media import FetchLimits, MediaError, load_audio, load_image, load_video

# ---------------------------------------------------------------------------------------------
# Real-format fixtures


def _two_colour_pixels(width=32, height=24) -> np.ndarray:
    """Red left half, blue right half: survives JPEG roughly, PNG exactly."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2 :, 2] = 255
    return pixels


def _image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_two_colour_pixels()).save(buffer, format=fmt)
    return buffer.getvalue()


def _square_frame_index(frame: torch.Tensor) -> float:
    """Which source frame a decoded [3, H, W] frame shows, from the square's horizontal centroid."""
    columns = torch.nonzero(frame.float().mean(0) > 128)[:, 1].float()
    return float((columns.mean() - (SQUARE - 1) / 2) / STEP)


def _stereo_sine(rate: int, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    """[samples, 2]: the same sine at amplitude 0.6 (left) and 0.2 (right): the mono mean is 0.4."""
    t = np.arange(int(rate * seconds)) / rate
    wave = np.sin(2 * np.pi * hz * t)
    return np.stack([0.6 * wave, 0.2 * wave], axis=1).astype(np.float32)


def _dominant_hz(wave: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return float(torch.argmax(spectrum)) * rate / len(wave)


@pytest.fixture
def png_path(tmp_path):
    path = tmp_path / "img.png"
    path.write_bytes(_image_bytes("PNG"))
    return path


@pytest.fixture(scope="module")
def mp4_bytes():
    return moving_square_video("mp4")


# ---------------------------------------------------------------------------------------------
# Images


def test_image_from_png_and_jpeg_files(tmp_path, png_path):
    (tmp_path / "img.jpg").write_bytes(_image_bytes("JPEG"))
    expected = _two_colour_pixels()
    for value in (str(png_path), png_path):
        image = load_image(value)
        assert image.mode == "RGB" and image.size == (32, 24)
        assert np.array_equal(np.asarray(image), expected)
    relative = load_image("img.png", base_dir=tmp_path)
    assert np.array_equal(np.asarray(relative), expected)
    jpeg = np.asarray(load_image("img.jpg", base_dir=str(tmp_path))).astype(int)
    assert np.abs(jpeg[4:-4, 4:12] - [255, 0, 0]).max() < 40
    assert np.abs(jpeg[4:-4, 20:28] - [0, 0, 255]).max() < 40


def test_image_from_bytes_base64_data_uri_and_hf_dicts(tmp_path, png_path):
    data = png_path.read_bytes()
    encoded = base64.b64encode(data).decode()
    urlsafe_unpadded = base64.urlsafe_b64encode(data).decode().rstrip("=")
    values = [
        data,
        bytearray(data),
        encoded,
        urlsafe_unpadded,
        "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)),  # MIME line breaks
        f"data:image/png;base64,{encoded}",
        {"bytes": data, "path": "whatever.png"},
        {"bytes": None, "path": "img.png"},
    ]
    for value in values:
        assert np.array_equal(np.asarray(load_image(value, base_dir=tmp_path)), _two_colour_pixels())


def test_image_from_pil_and_arrays():
    pixels = _two_colour_pixels()
    grey = Image.fromarray(pixels[..., 0])
    assert np.array_equal(np.asarray(load_image(grey)), np.repeat(pixels[..., :1], 3, axis=-1))
    chw_float = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    rgba = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    for value in (pixels, chw_float, rgba, Image.fromarray(pixels)):
        assert np.array_equal(np.asarray(load_image(value)), pixels)
    assert np.asarray(load_image(pixels[..., 2])).shape == (24, 32, 3)  # [H, W] grey


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((4, 4, 3), 2.0, np.float32), "[0, 1]"),
        (np.zeros((4, 4, 3), np.int64), "dtype int64"),
        (np.zeros((5,), np.uint8), "[H, W, C]"),
        (np.zeros((5, 6, 7), np.uint8), "C in (1, 3, 4)"),
    ],
)
def test_bad_image_arrays_are_refused(array, message):
    with pytest.raises(MediaError, match="image array") as info:
        load_image(array)
    assert message in str(info.value)


def test_corrupt_images_name_the_file(tmp_path):
    good = _image_bytes("PNG")
    truncated, garbage = tmp_path / "truncated.png", tmp_path / "garbage.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    garbage.write_bytes(b"\x00not an image at all" * 20)
    for path in (truncated, garbage):
        with pytest.raises(MediaError) as info:
            load_image(str(path))
        assert str(path) in str(info.value) and "expected an image file" in str(info.value)
        assert info.value.__cause__ is not None  # the decoder's own error is kept as the cause
    with pytest.raises(MediaError, match="raw bytes starting"):
        load_image(good[:40])
    eps = io.BytesIO()
    Image.fromarray(_two_colour_pixels()).save(eps, format="EPS")  # PIL would run Ghostscript on it
    with pytest.raises(MediaError, match="expected an image file.*UnidentifiedImageError"):
        load_image(eps.getvalue())  # refused before any decoder runs
    with Image.open(truncated) as lazy, pytest.raises(MediaError, match=f"PIL image '{truncated}'"):
        load_image(lazy)  # lazily opened, as Hugging Face Image features are


def test_missing_files_and_unknown_strings(tmp_path):
    with pytest.raises(MediaError) as info:
        load_image("nope.png", base_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "nope.png") in message and "does not exist" in message and "base_dir" in message
    with pytest.raises(MediaError, match="is not a regular file"):
        load_image(tmp_path)
    with pytest.raises(MediaError, match="invalid base64"):
        load_image("A" * 65)  # looks like base64, but 65 characters cannot be
    with pytest.raises(MediaError, match="cannot decode base64 string 'QUJD"):
        load_image(base64.b64encode(b"ABC" * 40).decode())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/img.png", "javascript:alert(1)"])
def test_non_http_urls_are_refused(url):
    with pytest.raises(MediaError, match="only http and https") as info:
        load_image(url)
    assert url[:10] in str(info.value)


def test_unsupported_types_say_what_is_expected():
    with pytest.raises(MediaError, match=r"unsupported image value \(int\); expected a path"):
        load_image(12)
    with pytest.raises(MediaError, match="neither bytes nor a path"):
        load_image({"bytes": None, "path": None})


def test_media_error_context_is_added_by_callers(tmp_path):
    with pytest.raises(MediaError) as info:
        load_image("missing.png", base_dir=tmp_path)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.add_context(task="caption", row=12, column="img") is error
    assert str(error).startswith(f"task 'caption', row 12, column 'img': file '{tmp_path / 'missing.png'}'")
    restored = pickle.loads(pickle.dumps(error))  # DataLoader workers send errors across processes
    assert str(restored) == str(error) and restored.row == 12
    assert str(MediaError("bad", column="wav")) == "column 'wav': bad"


# ---------------------------------------------------------------------------------------------
# Audio


@pytest.mark.parametrize("fmt, suffix", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg")])
def test_audio_files_become_16k_mono(tmp_path, fmt, suffix):
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(str(path), _stereo_sine(8000), 8000, format=fmt)
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.shape == (8000,)  # 0.5 s at 16 kHz
    assert abs(_dominant_hz(wave, 16000) - 440) < 10
    rms = float(wave[1000:-1000].pow(2).mean().sqrt())
    assert abs(rms - 0.4 / np.sqrt(2)) < 0.03  # the mean of both channels, not one or their sum
    assert load_audio(str(path), target_rate=8000).shape == (4000,)


def test_audio_arrays_need_and_use_a_sampling_rate(tmp_path):
    stereo = _stereo_sine(16000)
    mono = torch.from_numpy(stereo.mean(axis=1))
    for value in (
        (stereo, 16000),  # [samples, channels]
        (torch.from_numpy(stereo.T.copy()), 16000),  # [channels, samples]
        {"array": stereo, "sampling_rate": 16000, "path": None},
    ):
        assert torch.allclose(load_audio(value), mono, atol=1e-6)
    pcm = (stereo[:, 0] * 32767).astype(np.int16)
    assert abs(float(load_audio((pcm, 16000)).abs().max()) - 0.6) < 0.01
    assert load_audio((pcm[:8000], 8000)).shape == (16000,)
    with pytest.raises(MediaError, match="no sampling rate"):
        load_audio(stereo)
    with pytest.raises(MediaError, match="positive integer, got 0"):
        load_audio((stereo, 0))
    with pytest.raises(MediaError, match="NaN"):
        load_audio((np.array([0.0, np.nan], np.float32), 16000))


def test_audio_from_bytes_hf_dicts_and_decoder_objects(tmp_path):
    buffer = io.BytesIO()
    soundfile.write(buffer, _stereo_sine(16000), 16000, format="WAV")
    (tmp_path / "a.wav").write_bytes(buffer.getvalue())
    expected = load_audio("a.wav", base_dir=tmp_path)
    for value in (buffer.getvalue(), {"bytes": buffer.getvalue(), "path": "a.wav"}, {"bytes": None, "path": "a.wav"}):
        assert torch.equal(load_audio(value, base_dir=tmp_path), expected)

    class AudioDecoderStandIn:  # the get_all_samples() API of torchcodec's AudioDecoder
        def get_all_samples(self):
            return type("Samples", (), {"data": torch.from_numpy(_stereo_sine(16000).T.copy()), "sample_rate": 16000})

    assert torch.allclose(load_audio(AudioDecoderStandIn()), expected, atol=1e-4)


def test_corrupt_audio_names_the_file(tmp_path):
    flac, ogg = io.BytesIO(), io.BytesIO()
    soundfile.write(flac, _stereo_sine(8000), 8000, format="FLAC")
    soundfile.write(ogg, _stereo_sine(8000), 8000, format="OGG")
    cases = {
        "garbage.wav": b"RIFF not really a wave file" * 10,
        "truncated.flac": flac.getvalue()[: len(flac.getvalue()) // 2],
        "truncated.ogg": ogg.getvalue()[: len(ogg.getvalue()) // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MediaError) as info:
            load_audio(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "expected an audio file" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Video


def test_mp4_frames_are_sampled_uniformly_in_order(tmp_path, mp4_bytes):
    (tmp_path / "clip.mp4").write_bytes(mp4_bytes)
    frames = load_video("clip.mp4", base_dir=tmp_path, num_frames=4)
    assert frames.dtype == torch.uint8 and frames.shape == (4, 3, 48, 64)
    shown = [_square_frame_index(frame) for frame in frames]
    assert np.allclose(shown, [2, 6, 10, 14], atol=0.5)  # segment centres of 16 frames
    assert torch.equal(load_video(mp4_bytes, num_frames=4), frames)


def test_video_without_a_declared_frame_count_is_counted(tmp_path, mp4_bytes):
    mkv = moving_square_video("matroska")
    with av.open(io.BytesIO(mkv)) as container:
        assert container.streams.video[0].frames == 0  # so the counting path is the one under test
    assert torch.equal(load_video(mkv, num_frames=4), load_video(mp4_bytes, num_frames=4))
    repeated = load_video(mkv, num_frames=FRAMES * 2)  # a short clip repeats frames
    shown = [_square_frame_index(frame) for frame in repeated]
    assert repeated.shape[0] == 32 and shown == sorted(shown) and round(shown[0]) == 0 and round(shown[-1]) == 15


def test_rng_jitters_within_segments():
    clip = np.stack([np.full((4, 6, 3), 10 * t, np.uint8) for t in range(20)])  # frame t has value 10 t

    def picked(**kwargs):
        return (load_video(clip, num_frames=5, **kwargs)[:, 0, 0, 0] // 10).tolist()

    assert picked() == [2, 6, 10, 14, 18]
    draws = [picked(rng=np.random.default_rng(seed)) for seed in range(6)]
    for draw in draws:
        assert all(4 * i <= index < 4 * (i + 1) for i, index in enumerate(draw))
    assert len({tuple(draw) for draw in draws}) > 1
    assert picked(rng=np.random.default_rng(3)) == draws[3]


def test_frame_arrays_and_image_lists(tmp_path):
    clip = np.random.default_rng(0).integers(0, 256, (6, 8, 10, 3), dtype=np.uint8)
    expected = load_video(clip, num_frames=3)
    assert expected.shape == (3, 3, 8, 10)
    assert torch.equal(load_video(torch.from_numpy(clip).permute(0, 3, 1, 2), num_frames=3), expected)
    for t, frame in enumerate(clip):
        Image.fromarray(frame).save(tmp_path / f"{t}.png")
    assert torch.equal(load_video([f"{t}.png" for t in range(6)], base_dir=tmp_path, num_frames=3), expected)
    assert torch.equal(load_video([Image.fromarray(frame) for frame in clip], num_frames=3), expected)
    with pytest.raises(MediaError, match="frames differ in size"):
        load_video([clip[0], clip[1, :4]], num_frames=2)
    with pytest.raises(MediaError, match="frame 1 of the list of 2 video frames: file"):
        load_video([clip[0], "missing.png"], base_dir=tmp_path, num_frames=2)
    with pytest.raises(MediaError, match="has no frames"):
        load_video([], num_frames=2)
    with pytest.raises(MediaError, match=r"\[T, H, W, C\]"):
        load_video(clip[0], num_frames=2)  # one image is not a clip


def test_corrupt_and_unsafe_videos_are_refused(tmp_path, mp4_bytes):
    wav = io.BytesIO()
    soundfile.write(wav, _stereo_sine(8000), 8000, format="WAV")
    (tmp_path / "clip.mp4").write_bytes(mp4_bytes)
    cases = {
        "truncated.mp4": (mp4_bytes[: len(mp4_bytes) // 2], "expected a self-contained video file"),
        "garbage.mp4": (bytes(range(256)) * 8, "expected a self-contained video file"),
        "sound.wav": (wav.getvalue(), "has no video stream"),
        # A playlist would make FFmpeg read other files; media files must be self-contained.
        "playlist.m3u8": (
            f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{tmp_path / 'clip.mp4'}\n#EXT-X-ENDLIST\n".encode(),
            "expected a self-contained video file",
        ),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MediaError) as info:
            load_video(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and message in str(info.value)


def test_video_decoder_objects(mp4_bytes):
    clip = load_video(mp4_bytes, num_frames=FRAMES)

    class VideoDecoderStandIn:  # the len() / get_frames_at(indices=...).data API of torchcodec
        def __len__(self):
            return FRAMES

        def get_frames_at(self, indices):
            return type("FrameBatch", (), {"data": clip[indices]})

    assert torch.equal(load_video(VideoDecoderStandIn(), num_frames=4), load_video(mp4_bytes, num_frames=4))


# ---------------------------------------------------------------------------------------------
# URLs, against a local server on 127.0.0.1


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients abort on purpose (size cap, timeout)
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        files, path = self.server.files, self.path
        if path in files:
            self._send(200, files[path], [("Content-Length", str(len(files[path])))])
        elif path.startswith("/hop/"):  # /hop/n redirects n times, then serves the image
            hops = int(path.rsplit("/", 1)[1])
            target = f"/hop/{hops - 1}" if hops > 1 else "/img.png"
            self._send(302, headers=[("Location", target), ("Content-Length", "0")])
        elif path == "/loop":
            self._send(302, headers=[("Location", "/loop"), ("Content-Length", "0")])
        elif path == "/to-ftp":
            self._send(302, headers=[("Location", "ftp://127.0.0.1/img.png"), ("Content-Length", "0")])
        elif path == "/declared-huge":
            self._send(200, b"x" * 100, [("Content-Length", str(10**9))])
        elif path == "/streamed-huge":  # HTTP/1.0 without Content-Length: the body ends at close
            self._send(200)
            for _ in range(50):
                self.wfile.write(b"x" * 1000)
        elif path == "/slow":
            self.server.release.wait(5)
            self._send(200, b"late")
        else:
            self._send(404, b"not found")


@pytest.fixture(scope="module")
def http_server(mp4_bytes):
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()
    server.files = {"/img.png": _image_bytes("PNG"), "/clip.mp4": mp4_bytes, "/garbage.png": bytes(range(256)) * 4}
    buffer = io.BytesIO()
    soundfile.write(buffer, _stereo_sine(8000), 8000, format="FLAC")
    server.files["/tone.flac"] = buffer.getvalue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def base_url(http_server, monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return f"http://127.0.0.1:{http_server.server_address[1]}"


def test_urls_load_every_modality(base_url, mp4_bytes):
    assert np.array_equal(np.asarray(load_image(f"{base_url}/img.png")), _two_colour_pixels())
    assert load_audio(f"  {base_url}/tone.flac ").shape == (8000,)
    assert torch.equal(load_video(f"{base_url}/clip.mp4", num_frames=4), load_video(mp4_bytes, num_frames=4))


def test_url_http_errors_and_garbage_name_the_url(base_url):
    with pytest.raises(MediaError, match=rf"cannot fetch URL '{base_url}/missing.png': HTTP 404"):
        load_image(f"{base_url}/missing.png")
    with pytest.raises(MediaError, match=rf"cannot decode URL '{base_url}/garbage.png': expected an image"):
        load_image(f"{base_url}/garbage.png")


def test_url_redirect_limit(base_url):
    assert load_image(f"{base_url}/hop/5").size == (32, 24)  # the default limit is 5
    for path in ("/hop/6", "/loop"):
        with pytest.raises(MediaError, match=r"too many redirects \(more than 5\)"):
            load_image(base_url + path)
    with pytest.raises(MediaError, match=r"more than 1\)"):
        load_image(f"{base_url}/hop/2", fetch_limits=FetchLimits(max_redirects=1))
    with pytest.raises(MediaError, match="non-http"):
        load_image(f"{base_url}/to-ftp")


def test_url_size_cap(base_url):
    limits = FetchLimits(max_bytes=1000)
    with pytest.raises(MediaError, match="too large: Content-Length 1000000000"):
        load_image(f"{base_url}/declared-huge", fetch_limits=limits)
    with pytest.raises(MediaError, match="too large: the body exceeds the cap of 1000 bytes"):
        load_image(f"{base_url}/streamed-huge", fetch_limits=limits)
    with pytest.raises(MediaError, match="Content-Length"):
        load_image(f"{base_url}/clip.mp4", fetch_limits=limits)


def test_url_slow_server_times_out(base_url):
    start = time.monotonic()
    with pytest.raises(MediaError, match=rf"cannot fetch URL '{base_url}/slow': timed out"):
        load_image(f"{base_url}/slow", fetch_limits=FetchLimits(read_timeout=0.3))
    assert time.monotonic() - start < 3
