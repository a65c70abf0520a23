"""Notifier: real Apprise json:// and form:// plugins posting to a real HTTP server on loopback."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facetrack.notify import InvalidNotificationURLError, NotificationConfig, Notifier, render_template

SECRET = "S3cr3t"
# A small but real JPEG header + payload; the notifier treats it as opaque bytes.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) * 8 + b"\xff\xd9"
CONTEXT: dict[str, object] = {
    "time": "2025-06-01T12:00:00",
    "camera": "front_door",
    "person": "Anna",
    "similarity": 0.71234,
    "clip_url": "http://ha.local/clips/42.mp4",
    "alert_id": "a-42",
}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """A loopback HTTP server that records requests; ``mode`` sets how it answers."""

    port: int
    requests: list[Recorded] = field(default_factory=list)
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    release: threading.Event = field(default_factory=threading.Event)
    mode: str = "ok"  # ok | silent (answer nothing until release) | dribble (one byte every 0.1 s)

    def wait_request(self, timeout: float = 5.0) -> Recorded:
        assert self.arrived.acquire(timeout=timeout), "no request reached the server"
        return self.requests[-1]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            server.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body))
            server.arrived.release()
            if server.mode == "silent":
                server.release.wait(10)
            elif server.mode == "dribble":  # never idle for a whole socket read timeout
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                while not server.release.wait(0.1):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    httpd.daemon_threads = True
    srv.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def snapshot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temp files of the notifier go here, so the test can see they are removed."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_render_template() -> None:
    ctx: dict[str, object] = {"person": None, "camera": "door", "similarity": 0.5, "time": "t"}
    assert render_template("${person} on ${camera} (${similarity}) ${clip_url} $$5", ctx) == (
        "unknown person on door (0.50) ${clip_url} $5"
    )
    assert render_template("$ stray ${", {}) == "$ stray ${"


def test_json_delivers_message_and_base64_attachment(server: Server, snapshot_dir: Path) -> None:
    notifier = Notifier(NotificationConfig(urls=(f"json://127.0.0.1:{server.port}/hook",), timeout_seconds=5))
    try:
        assert notifier.send(CONTEXT, attachment_jpeg=JPEG) is True
        req = server.wait_request()
        assert wait_until(lambda: notifier.sent == 1)
    finally:
        notifier.close(5)
    assert req.path == "/hook"
    payload = json.loads(req.body)
    assert payload["message"] == "Anna seen on front_door at 2025-06-01T12:00:00 (similarity 0.71)"
    assert payload["title"] == "FaceTrack: front_door"
    [attachment] = payload["attachments"]
    assert attachment["mimetype"] == "image/jpeg"
    assert base64.b64decode(attachment["base64"]) == JPEG
    assert (notifier.sent, notifier.failed, notifier.dropped) == (1, 0, 0)
    assert list(snapshot_dir.iterdir()) == []  # temp JPEG removed


def test_form_delivers_multipart_with_jpeg(server: Server, snapshot_dir: Path) -> None:
    config = NotificationConfig(
        urls=(f"form://127.0.0.1:{server.port}/alert",),
        message="${person} at ${camera}: ${similarity} ${clip_url} [${alert_mode}]",
        timeout_seconds=5,
    )
    notifier = Notifier(config)
    try:
        assert notifier.send({**CONTEXT, "person": None}, attachment_jpeg=JPEG)
        req = server.wait_request()
        assert wait_until(lambda: notifier.sent == 1)
    finally:
        notifier.close(5)
    content_type = req.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + req.body
    )
    fields: dict[str, object] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = part.get_content()
    assert fields["message"] == "unknown person at front_door: 0.71 http://ha.local/clips/42.mp4 [${alert_mode}]"
    files = [v for v in fields.values() if isinstance(v, bytes)]
    assert files == [JPEG]
    assert list(snapshot_dir.iterdir()) == []


@pytest.mark.parametrize("mode", ["silent", "dribble"])
def test_slow_server_is_bounded_and_secret_not_logged(
    server: Server, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """silent: the socket read timeout ends it; dribble: only the hard deadline can."""
    caplog.set_level(logging.DEBUG)
    server.mode = mode
    timeout = 0.5
    url = f"json://user:{SECRET}@127.0.0.1:{server.port}/hook?+X-Token={SECRET}"
    notifier = Notifier(NotificationConfig(urls=(url,), timeout_seconds=timeout))
    try:
        t0 = time.monotonic()
        assert notifier.send(CONTEXT, attachment_jpeg=JPEG) is True
        assert time.monotonic() - t0 < 0.1  # the camera loop is not held up
        req = server.wait_request()
        assert req.headers["X-Token"] == SECRET  # the secret did reach the service...
        assert wait_until(lambda: notifier.failed == 1, timeout=5)
        assert time.monotonic() - t0 < timeout + 1.5  # the server would have held it for 10 s
    finally:
        server.release.set()
        notifier.close(5)
    assert notifier.sent == 0
    log_text = caplog.text
    assert f"json://127.0.0.1:{server.port}" in log_text
    assert SECRET not in log_text  # ...but never reached the log
    assert base64.b64encode(f"user:{SECRET}".encode()).decode() not in log_text
    if mode == "dribble":
        assert "timed out" in log_text


def test_refused_connection_counts_failed() -> None:
    notifier = Notifier(NotificationConfig(urls=(f"json://127.0.0.1:{free_port()}/",), timeout_seconds=2))
    try:
        assert notifier.send(CONTEXT) is True
        assert wait_until(lambda: notifier.failed == 1)
    finally:
        notifier.close(5)
    assert (notifier.sent, notifier.failed, notifier.dropped) == (0, 1, 0)


def test_queue_full_drops_then_close_drains(server: Server) -> None:
    server.mode = "silent"
    notifier = Notifier(NotificationConfig(urls=(f"json://127.0.0.1:{server.port}/",), timeout_seconds=5, max_queue=2))
    try:
        assert notifier.send(CONTEXT)
        server.wait_request()  # the worker is now busy with alert 1
        assert notifier.send(CONTEXT)
        assert notifier.send(CONTEXT)  # queue holds 2
        t0 = time.monotonic()
        assert notifier.send(CONTEXT) is False
        assert time.monotonic() - t0 < 0.1
        assert notifier.dropped == 1
        server.mode = "ok"
        server.release.set()
    finally:
        notifier.close(5)
    assert (notifier.sent, notifier.failed, notifier.dropped) == (3, 0, 1)
    assert notifier.send(CONTEXT) is False  # closed
    assert notifier.dropped == 2


def test_close_gives_up_after_timeout(server: Server) -> None:
    server.mode = "silent"
    notifier = Notifier(NotificationConfig(urls=(f"json://127.0.0.1:{server.port}/",), timeout_seconds=1))
    assert notifier.send(CONTEXT)
    server.wait_request()
    assert notifier.send(CONTEXT)
    t0 = time.monotonic()
    notifier.close(0.1)
    assert time.monotonic() - t0 < 0.5
    server.release.set()
    # The worker finishes the alert in flight and discards the queued one.
    assert wait_until(lambda: notifier.sent + notifier.failed + notifier.dropped == 2)
    assert notifier.dropped == 1


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        (f"bogus://user:{SECRET}@example.com/x", "bogus"),
        (f"json://user:{SECRET}@", "json"),
        (f"mailto://user:{SECRET}@", "mailto"),
        (f"user:{SECRET} and more", "<no scheme>"),
    ],
)
def test_invalid_url_raises_without_secret(url: str, scheme: str) -> None:
    with pytest.raises(ValueError, match="not a valid Apprise URL") as info:
        Notifier(NotificationConfig(urls=(f"json://127.0.0.1:{free_port()}/", url)))
    assert isinstance(info.value, InvalidNotificationURLError)
    assert SECRET not in str(info.value)
    assert f"#2 ({scheme}://" in str(info.value)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="at least one"):
        NotificationConfig(urls=())
    with pytest.raises(ValueError, match="timeout_seconds"):
        NotificationConfig(urls=("json://h/",), timeout_seconds=0)
    with pytest.raises(ValueError, match="max_queue"):
        NotificationConfig(urls=("json://h/",), max_queue=0)
    assert NotificationConfig(urls="json://h/").urls == ("json://h/",)  # type: ignore[arg-type]
