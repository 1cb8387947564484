"""snn_det_zoo.hub.download_url against a scripted http.server on 127.0.0.1: redirects, deadlines,
Content-Length rules and HTTP/connection errors."""

from __future__ import annotations

import email.message
import hashlib
import http.server
import io
import socket
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest

from snn_det_zoo import hub
from snn_det_zoo.errors import DownloadError, ZooError

PAYLOAD = b"weights-bytes" * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Web:
    """Routes of the test server: path -> function writing the whole response on the handler."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]] = {}
        self.log: list[str] = []
        self.base = ""


@pytest.fixture
def web():
    web = Web()

    class Handler(http.server.BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection
        def do_GET(self):
            web.log.append(self.path)
            route = web.routes.get(self.path)
            try:
                if route is None:
                    reply(self, b"no such file", status=404)
                else:
                    route(self)
            except OSError:  # the client hung up: a refused, timed-out or over-deadline download
                pass

        def log_message(self, fmt, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    web.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield web
    finally:
        httpd.shutdown()
        httpd.server_close()


def reply(h, body: bytes, status: int = 200, headers: dict[str, str] | None = None,
          length: bool = True) -> None:
    h.send_response(status)
    if length:
        h.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(body)


def redirect(target: str, code: int = 302) -> Callable:
    return lambda h: reply(h, b"", status=code, headers={"Location": target})


def nothing_left(dest) -> bool:
    """Neither the file nor a temporary of it is on disk."""
    return not dest.exists() and not list(dest.parent.glob(f".{dest.name}.*"))


# ------------------------------------------------------------------------------------------------ redirects


def test_redirect_within_loopback_http_is_followed(web, tmp_path):
    web.routes["/w.bin"] = lambda h: reply(h, PAYLOAD)
    web.routes["/old"] = redirect("/w.bin", code=301)
    dest = hub.download_url(f"{web.base}/old", tmp_path / "w.bin", sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and web.log == ["/old", "/w.bin"]


def test_redirect_that_changes_the_scheme_is_refused(web, tmp_path):
    """http -> https is a scheme change too, even to this machine: not followed, nothing written."""
    port = web.base.rsplit(":", 1)[1]
    web.routes["/old"] = redirect(f"https://127.0.0.1:{port}/w.bin")
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match=r"redirect from http://127\.0\.0\.1.*/old to https://.*changes "
                       "the scheme from http to https"):
        hub.download_url(f"{web.base}/old", dest, sha(PAYLOAD))
    assert web.log == ["/old"] and nothing_left(dest)


def test_redirect_to_remote_plain_http_is_refused(web, tmp_path):
    web.routes["/old"] = redirect("http://example.com/w.bin")
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match=r"to http://example\.com/w\.bin.*only https://"):
        hub.download_url(f"{web.base}/old", dest, sha(PAYLOAD))
    assert web.log == ["/old"] and nothing_left(dest)


def test_https_to_http_redirect_is_refused():
    """The redirect policy itself (no https server here): a downgrade is refused, https -> https allowed."""
    handler = hub._CheckedRedirects()
    request = urllib.request.Request("https://example.com/w.bin")
    fp = io.BytesIO()
    with pytest.raises(DownloadError, match="changes the scheme from https to http"):
        handler.redirect_request(request, fp, 302, "Found", email.message.Message(), "http://127.0.0.1/w.bin")
    assert fp.closed  # the refused response does not keep its connection open
    new = handler.redirect_request(request, io.BytesIO(), 302, "Found", email.message.Message(),
                                   "https://cdn.example.org/w.bin")
    assert new.full_url == "https://cdn.example.org/w.bin"


def test_redirects_are_bounded(web, tmp_path):
    for i in range(30):
        web.routes[f"/hop/{i}"] = redirect(f"/hop/{i + 1}")
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match=r"/hop/0 failed: HTTP 302 .*redirect"):
        hub.download_url(f"{web.base}/hop/0", dest, sha(PAYLOAD))
    assert len(web.log) <= 11 and nothing_left(dest)


# ---------------------------------------------------------------------------------------- time limits


def test_deadline_stops_a_server_that_trickles_bytes(web, tmp_path):
    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(500):  # one byte every 20 ms: each read is quick, the transfer never ends
            h.wfile.write(b"x")
            time.sleep(0.02)

    web.routes["/slow"] = trickle
    dest = tmp_path / "w.bin"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"/slow did not finish within its deadline of 0\.3 s"):
        hub.download_url(f"{web.base}/slow", dest, None, timeout=5, deadline_s=0.3)
    assert time.monotonic() - start < 3 and nothing_left(dest)


def test_a_stalled_read_times_out(web, tmp_path):
    def stall(h):
        h.send_response(200)
        h.send_header("Content-Length", "10")
        h.end_headers()
        h.wfile.write(b"x")
        time.sleep(3)

    web.routes["/stall"] = stall
    dest = tmp_path / "w.bin"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"/stall failed: .*timed out"):
        hub.download_url(f"{web.base}/stall", dest, None, timeout=0.3)
    assert time.monotonic() - start < 2.5 and nothing_left(dest)


# ------------------------------------------------------------------------------------ Content-Length


def test_transfer_without_content_length_needs_a_sha256(web, tmp_path):
    web.routes["/w.bin"] = lambda h: reply(h, PAYLOAD, length=False)  # ends when the server closes
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match="no Content-Length and the weights entry no sha256"):
        hub.download_url(f"{web.base}/w.bin", dest, None)
    assert nothing_left(dest)
    assert hub.download_url(f"{web.base}/w.bin", dest, sha(PAYLOAD)).read_bytes() == PAYLOAD


def test_more_bytes_than_content_length_fail(web, tmp_path):
    """Chunked framing (which http.client follows) delivering 10 bytes under a Content-Length of 5."""
    web.routes["/w.bin"] = lambda h: reply(h, b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", length=False,
                                           headers={"Transfer-Encoding": "chunked", "Content-Length": "5"})
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match="more than its Content-Length of 5 bytes"):
        hub.download_url(f"{web.base}/w.bin", dest, None)
    assert nothing_left(dest)


def test_fewer_bytes_than_content_length_fail(web, tmp_path):
    web.routes["/w.bin"] = lambda h: reply(h, PAYLOAD[:10], headers={"Content-Length": "100"}, length=False)
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match="truncated: 10 of 100 bytes"):
        hub.download_url(f"{web.base}/w.bin", dest, None)
    assert nothing_left(dest)


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "path"), [(404, "/missing"), (500, "/boom")])
def test_http_errors_name_the_url_and_the_status(web, tmp_path, status, path):
    web.routes["/boom"] = lambda h: reply(h, b"oops", status=500)
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match=rf"download of {web.base}{path} failed: HTTP {status}") as info:
        hub.download_url(f"{web.base}{path}", dest, sha(PAYLOAD))
    assert isinstance(info.value, ZooError) and isinstance(info.value, OSError)
    assert nothing_left(dest)


def test_connection_errors_name_the_url(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w.bin"
    with pytest.raises(DownloadError, match=rf"download of {url} failed: .*refused"):
        hub.download_url(url, tmp_path / "w.bin", sha(PAYLOAD))


def test_bad_arguments_are_zoo_errors(tmp_path):
    from snn_det_zoo.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="only https://"):
        hub.download_url("http://example.com/w.bin", tmp_path / "w.bin", None)
    with pytest.raises(InvalidArgumentError, match="sha256 must be 64 hex digits"):
        hub.download_url("https://example.com/w.bin", tmp_path / "w.bin", "abc")
