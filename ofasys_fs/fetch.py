"""Bounded http(s) downloads for media columns that hold URLs (docs/design.md §12).

Only http and https are fetched (also after redirects), with a connect timeout, a per-read timeout,
a total deadline (enforced on every read, headers included, so a server trickling bytes cannot hold a
download open), a size cap enforced while streaming, and a redirect limit. Built on urllib so that
no extra dependency is needed; proxies from the usual environment variables are honoured.
"""
from __future__ import annotations

import dataclasses
import functools
import http.client
import io
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

ALLOWED_SCHEMES = ("http", "https")
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "ofasys_fs-media-loader/1.0"


@dataclasses.dataclass(frozen=True)
class FetchLimits:
    """How long and how much one media download may take before it is refused."""

    connect_timeout: float = 10.0  # seconds to open the connection (and finish the TLS handshake)
    read_timeout: float = 30.0  # seconds any single read may wait for data
    total_timeout: float = 300.0  # seconds for the whole download, redirects included
    max_bytes: int = 64 * 1024 * 1024
    max_redirects: int = 5


class FetchError(Exception):
    """A download was refused or failed; the message says why, without the URL (callers add it)."""


def is_http_url(text: str) -> bool:
    """True when `text` is an absolute http:// or https:// URL with a host."""
    try:
        parts = urllib.parse.urlsplit(text.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ALLOWED_SCHEMES and bool(parts.netloc)


def fetch_url(url: str, limits: FetchLimits = FetchLimits()) -> bytes:
    """Download `url` (http/https only) within `limits`; raises FetchError with a clear reason."""
    if not is_http_url(url):
        raise FetchError(f"not a valid {' or '.join(ALLOWED_SCHEMES)} URL with a host")
    deadline = time.monotonic() + limits.total_timeout
    try:
        with _build_opener(limits, deadline).open(url.strip(), timeout=limits.connect_timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
                raise FetchError(
                    f"too large: Content-Length {declared} bytes exceeds the cap of {limits.max_bytes} bytes"
                )
            return _read_capped(response, limits.max_bytes)
    except urllib.error.HTTPError as err:
        raise FetchError(f"HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise FetchError(_describe_network_error(err.reason)) from err
    except (OSError, http.client.HTTPException) as err:
        raise FetchError(_describe_network_error(err)) from err


def _read_capped(response, max_bytes: int) -> bytes:
    chunks, received = [], 0
    while True:
        chunk = response.read1(_CHUNK_BYTES)
        if not chunk:
            if response.length:  # what the Content-Length announced and never came
                raise FetchError(f"incomplete: the server closed the connection after {received} bytes, "
                                 f"{response.length} bytes short of its Content-Length")
            return b"".join(chunks)
        received += len(chunk)
        if received > max_bytes:
            raise FetchError(f"too large: the body exceeds the cap of {max_bytes} bytes")
        chunks.append(chunk)


def _describe_network_error(reason) -> str:
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out waiting for the server"
    if isinstance(reason, BaseException):
        return f"network error: {type(reason).__name__}: {reason}"
    return f"network error: {reason}"


def _build_opener(limits: FetchLimits, deadline: float) -> urllib.request.OpenerDirector:
    # Built by hand, not with build_opener, so that file:, ftp: and data: handlers are never present.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        _HTTPHandler(limits.read_timeout, deadline),
        _HTTPSHandler(limits.read_timeout, deadline),
        _CountingRedirectHandler(limits.max_redirects),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    opener.addheaders = [("User-Agent", _USER_AGENT)]
    return opener


class _DeadlineReader(io.RawIOBase):
    """The socket's raw reader, each read waiting at most `read_timeout` and never past `deadline`."""

    def __init__(self, sock: socket.socket, read_timeout: float, deadline: float):
        super().__init__()
        self.raw = sock.makefile("rb", buffering=0)  # keeps the socket open until this reader closes
        self.sock, self.read_timeout, self.deadline = sock, read_timeout, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining > 0:
            self.sock.settimeout(min(self.read_timeout, remaining))
            try:
                return self.raw.readinto(buffer)
            except TimeoutError:
                if time.monotonic() < self.deadline:
                    raise
        raise FetchError("timed out: the download exceeded its total time limit")

    def close(self) -> None:
        self.raw.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose `makefile` (what http.client reads the response through) obeys the deadline."""

    def __init__(self, sock: socket.socket, read_timeout: float, deadline: float):
        self._sock, self._read_timeout, self._deadline = sock, read_timeout, deadline

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._read_timeout, self._deadline))

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _ReadTimeoutMixin:
    """Connect under the request's timeout, then read with the per-read timeout and the total deadline."""

    def __init__(self, *args, read_timeout: float, deadline: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_timeout, self.deadline = read_timeout, deadline

    def connect(self):
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self.read_timeout, self.deadline)


class _HTTPConnection(_ReadTimeoutMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ReadTimeoutMixin, http.client.HTTPSConnection):
    pass


class _DeadlineHandlerMixin:
    """A urllib handler whose connections read with the per-read timeout and the total deadline."""

    def __init__(self, read_timeout: float, deadline: float):
        super().__init__()
        self.read_timeout, self.deadline = read_timeout, deadline

    def _connection_factory(self, connection_class: type) -> functools.partial:
        return functools.partial(connection_class, read_timeout=self.read_timeout, deadline=self.deadline)


class _HTTPHandler(_DeadlineHandlerMixin, urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(self._connection_factory(_HTTPConnection), req)


class _HTTPSHandler(_DeadlineHandlerMixin, urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(self._connection_factory(_HTTPSConnection), req, context=self._context)


class _CountingRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows at most `max_redirects` redirects, and only to http(s) URLs."""

    def __init__(self, max_redirects: int):
        super().__init__()
        self.max_redirects = max_redirects
        # urllib's own loop detection would fire first with a vaguer message; ours is the limit.
        self.max_repeats = self.max_redirections = max_redirects + 1

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        count = getattr(req, "ofasys_redirect_count", 0) + 1
        if not is_http_url(newurl):
            fp.close()
            raise FetchError(f"redirected to a non-http(s) URL {newurl[:200]!r}, which is not followed")
        if count > self.max_redirects:
            fp.close()
            raise FetchError(f"too many redirects (more than {self.max_redirects}); last target {newurl[:200]!r}")
        new_request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new_request is not None:
            new_request.ofasys_redirect_count = count
        return new_request
