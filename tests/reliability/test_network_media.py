"""Network media (docs/reliability.md, guarantee 5): http(s) only, with connect and read timeouts, a total deadline,
a size cap and a redirect limit, against a local server on 127.0.0.1.

tests/test_media.py already covers: non-http(s) URLs and redirects to them, HTTP errors, a body that is not an
image, a server too slow to answer (read timeout), declared and streamed bodies over the size cap, redirect
chains and loops. This file adds servers that trickle bytes (the total deadline), a connect timeout, replies that
are not HTTP or end early, and URL cells going through ofasys-preprocess (one line naming file, row and column,
no manifest; or skipped and counted).
"""
import http.server
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ofasys_fs.cli.preprocess import main as preprocess_main
from ofasys_fs.data.shards import MANIFEST, read_manifest
from ofasys_fs.media import FetchLimits, MediaError, load_image

TRICKLE_SECONDS = 0.05  # between two bytes of a trickling reply
ANNOUNCED = 100_000  # the Content-Length of /cut-short


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """/img.png: a good image; /missing: 404; /loop: redirects to itself; /trickle-body and /trickle-headers:
    one byte every TRICKLE_SECONDS forever; /not-http: bytes that are no HTTP reply; /cut-short: a body shorter
    than its Content-Length."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            self.reply()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            pass

    def reply(self):
        if self.path == "/img.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path.startswith("/trickle"):
            self.wfile.write(b"HTTP/1.0 200 OK\r\n" + (b"\r\n" if self.path == "/trickle-body" else b"X-Slow: "))
            while not self.server.stopping.wait(TRICKLE_SECONDS):
                self.wfile.write(b"x")
                self.wfile.flush()
        elif self.path == "/not-http":
            self.wfile.write(b"\x00\x17SSH-2.0-garbage\r\n\r\n" + bytes(range(256)))
        elif self.path == "/cut-short":
            self.send_response(200)
            self.send_header("Content-Length", str(ANNOUNCED))
            self.end_headers()
            self.wfile.write(PNG)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    httpd.daemon_threads, httpd.stopping = True, threading.Event()
    httpd.handle_error = lambda request, address: None
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.stopping.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_server_trickling_bytes_is_cut_off_at_the_total_deadline(server, path):
    started = time.monotonic()
    with pytest.raises(MediaError, match=rf"cannot fetch URL '{server}{path}': timed out: the download exceeded its "
                                         rf"total time limit"):
        load_image(server + path, fetch_limits=FetchLimits(read_timeout=5, total_timeout=0.5))
    assert time.monotonic() - started < 2  # each byte arrives well within the read timeout


def test_a_server_that_never_accepts_the_connection_times_out(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    waiting = []  # fill the accept queue; further connection attempts get no answer
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(listener.getsockname())
        waiting.append(client)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/img.png"
    started = time.monotonic()
    try:
        with pytest.raises(MediaError, match=rf"cannot fetch URL '{url}': timed out"):
            load_image(url, fetch_limits=FetchLimits(connect_timeout=0.5, read_timeout=30))
    finally:
        for sock in (*waiting, listener):
            sock.close()
    assert time.monotonic() - started < 3


CUT_SHORT = (f"incomplete: the server closed the connection after {len(PNG)} bytes, {ANNOUNCED - len(PNG)} bytes "
             f"short of its Content-Length")


@pytest.mark.parametrize("path, reason", [("/not-http", "network error: BadStatusLine"), ("/cut-short", CUT_SHORT)])
def test_replies_that_are_not_http_or_end_early_name_the_url(server, path, reason):
    with pytest.raises(MediaError, match=rf"cannot fetch URL '{server}{path}': {reason}"):
        load_image(server + path)


def url_rows(tmp_path, server) -> str:
    rows = [{"img": f"{server}/img.png", "cap": "good"}, {"img": f"{server}/missing", "cap": "gone"},
            {"img": f"{server}/loop", "cap": "loop"}, {"img": f"{server}/img.png", "cap": "good again"}]
    path = tmp_path / "urls.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_preprocess_stops_at_an_unfetchable_url_naming_file_row_and_column(server, tmp_path, capsys):
    data, destdir = url_rows(tmp_path, server), tmp_path / "shards"
    assert preprocess_main(["--input", data, "--destdir", str(destdir), "--media-columns", "img"]) == 1
    message = capsys.readouterr().err
    assert message == (f"ofasys-preprocess: error: {data}, line 2 (row 1): column 'img': cannot fetch URL "
                       f"'{server}/missing': HTTP 404 Not Found\n")
    assert not (destdir / MANIFEST).exists() and not list(destdir.glob("*.bin"))


def test_preprocess_skips_and_counts_unfetchable_urls_when_asked(server, tmp_path, capsys):
    data, destdir = url_rows(tmp_path, server), tmp_path / "shards"
    assert preprocess_main(["--input", data, "--destdir", str(destdir), "--media-columns", "img",
                            "--skip-bad-rows"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "row 1): column 'img': cannot fetch URL" in err and "too many redirects" in err
    manifest = read_manifest(destdir)
    assert manifest["splits"]["train"]["rows"] == 2 and manifest["skipped_rows"]["train"] == 2
