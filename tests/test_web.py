"""The HTTP server over real loopback HTTP: snapshots, MJPEG, signed clips, tokens, the signer."""

from __future__ import annotations

import http.client
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.web.frames import FrameHub
from facetrack.web.server import WebServer
from facetrack.web.signing import UrlSigner, load_or_create_secret

pytestmark = pytest.mark.timeout(60)

SECRET = bytes(range(32))
CAMERA = "door"
KEY = "door/20260101T000000Z_7/original.mp4"
CLIP_SIZE = 1024 * 1024


def frame(value: int, w: int = 320, h: int = 240) -> np.ndarray:
    """A solid BGR frame with a value-dependent colour."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (value % 256, (value * 7) % 256, 128)
    return img


@pytest.fixture
def clip_root(tmp_path: Path) -> Path:
    root = tmp_path / "clips"
    clip = root / KEY
    clip.parent.mkdir(parents=True)
    clip.write_bytes(np.random.default_rng(1).integers(0, 256, CLIP_SIZE, dtype=np.uint8).tobytes())
    (clip.parent / "annotations.json").write_text('{"frames": []}')
    (tmp_path / "secret.txt").write_text("TOPSECRET")
    return root


@pytest.fixture
def hub() -> FrameHub:
    return FrameHub()


def _server(hub: FrameHub, clip_root: Path | None, **kw: object) -> Iterator[WebServer]:
    server = WebServer("127.0.0.1", 0, hub, UrlSigner(SECRET), clip_root, **kw)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(hub: FrameHub, clip_root: Path) -> Iterator[WebServer]:
    yield from _server(hub, clip_root)


@pytest.fixture
def token_server(hub: FrameHub, clip_root: Path) -> Iterator[WebServer]:
    yield from _server(hub, clip_root, stream_token="s3cret-token")


def get(server: WebServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A GET with the path sent verbatim (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_until(pred: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


class Publisher:
    """Publishes a new frame every ``interval`` seconds in a thread (like a camera loop)."""

    def __init__(self, hub: FrameHub, interval: float = 0.02) -> None:
        self.hub, self.interval = hub, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            self.hub.publish(CAMERA, frame(i))
            time.sleep(self.interval)

    def __enter__(self) -> Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def read_part(resp: http.client.HTTPResponse) -> tuple[dict[str, str], bytes]:
    """One ``--frame`` part of a multipart/x-mixed-replace body."""
    line = resp.readline()
    while line in (b"\r\n", b"\n"):
        line = resp.readline()
    assert line.strip() == b"--frame", line
    headers: dict[str, str] = {}
    while (line := resp.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = resp.read(int(headers["content-length"]))
    assert resp.read(2) == b"\r\n"
    return headers, body


def open_stream(server: WebServer, query: str = "") -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", f"/api/cameras/{CAMERA}/stream.mjpeg{query}")
    return conn, conn.getresponse()


def signed(server: WebServer, key: str, expires_in: int = 60) -> str:
    """The path + query of a freshly signed clip URL."""
    url = server.sign_clip_url(key, expires_in)
    return url.removeprefix(server.origin)


# -- frames and snapshots ---------------------------------------------------------------------


def test_no_encoding_without_viewers(hub: FrameHub, server: WebServer) -> None:
    drawn: list[int] = []
    for i in range(100):
        hub.publish(CAMERA, frame(i, 640, 480), lambda f: drawn.append(1) or f)
    assert hub.encode_count() == 0 and not drawn
    assert hub.watchers(CAMERA) == 0
    # A snapshot encodes once; a second one of the same frame is served from the cache.
    assert get(server, f"/api/cameras/{CAMERA}/snapshot.jpg")[0] == 200
    assert get(server, f"/api/cameras/{CAMERA}/snapshot.jpg")[0] == 200
    assert hub.encode_count(CAMERA) == 1 and len(drawn) == 1


def test_snapshot_is_the_annotated_frame(hub: FrameHub, server: WebServer) -> None:
    src = frame(3, 400, 300)
    before = src.copy()

    def draw(img: np.ndarray) -> np.ndarray:
        cv2.rectangle(img, (10, 10), (100, 100), (255, 255, 255), -1)
        return img

    hub.publish(CAMERA, src, draw)
    status, headers, body = get(server, f"/api/cameras/{CAMERA}/snapshot.jpg")
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    assert headers["cache-control"] == "no-store"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (300, 400, 3)
    assert img[50, 50].min() > 240  # drawn
    assert np.array_equal(src, before)  # the published frame itself is untouched


def test_snapshot_unknown_camera_or_no_frame(hub: FrameHub, server: WebServer) -> None:
    assert get(server, "/api/cameras/nope/snapshot.jpg")[0] == 404
    hub.register("garden")
    assert get(server, "/api/cameras/garden/snapshot.jpg")[0] == 404


def test_stale_frame_not_served(hub: FrameHub, clip_root: Path) -> None:
    hub.publish(CAMERA, frame(1))
    for server in _server(hub, clip_root, frame_max_age_s=0.05):
        time.sleep(0.1)
        assert get(server, f"/api/cameras/{CAMERA}/snapshot.jpg")[0] == 503


# -- MJPEG -------------------------------------------------------------------------------------


def test_mjpeg_stream_advances_and_releases_watcher(hub: FrameHub, server: WebServer) -> None:
    hub.publish(CAMERA, frame(0))
    with Publisher(hub):
        conn, resp = open_stream(server)
        try:
            assert resp.status == 200
            assert resp.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
            assert wait_until(lambda: hub.watchers(CAMERA) == 1)
            seqs = []
            for _ in range(5):
                headers, body = read_part(resp)
                assert headers["content-type"] == "image/jpeg"
                assert body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"
                img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
                assert img.shape == (240, 320, 3)
                seqs.append(int(headers["x-frame-seq"]))
            assert seqs == sorted(seqs) and len(set(seqs)) == 5  # every part is a newer frame
        finally:
            conn.close()
        assert wait_until(lambda: hub.watchers(CAMERA) == 0)
    # Encoded at most once per frame, and encoding stops with the viewer.
    encoded = hub.encode_count(CAMERA)
    assert encoded <= hub.seq(CAMERA)
    for i in range(20):
        hub.publish(CAMERA, frame(i))
    assert hub.encode_count(CAMERA) == encoded


def test_mjpeg_viewer_leaves_while_camera_idle(hub: FrameHub, server: WebServer) -> None:
    hub.publish(CAMERA, frame(1))
    conn, resp = open_stream(server)
    read_part(resp)
    assert hub.watchers(CAMERA) == 1
    conn.close()  # no new frames arrive: the server notices the disconnect by itself
    assert wait_until(lambda: hub.watchers(CAMERA) == 0)


def test_mjpeg_shared_encoding_and_fps_cap(hub: FrameHub, server: WebServer) -> None:
    hub.publish(CAMERA, frame(0))
    with Publisher(hub, interval=0.01):
        streams = [open_stream(server, "?fps=5") for _ in range(2)]
        try:
            t0 = time.monotonic()
            for _, resp in streams:
                read_part(resp)
            for _ in range(3):
                read_part(streams[0][1])
            elapsed = time.monotonic() - t0
            assert hub.watchers(CAMERA) == 2
            assert elapsed >= 0.5  # 4 parts at <= 5 fps
        finally:
            for conn, _ in streams:
                conn.close()
        assert wait_until(lambda: hub.watchers(CAMERA) == 0)
    assert get(server, f"/api/cameras/{CAMERA}/stream.mjpeg?fps=abc")[0] == 400
    assert get(server, f"/api/cameras/{CAMERA}/stream.mjpeg?fps=0")[0] == 400
    assert get(server, "/api/cameras/nope/stream.mjpeg")[0] == 404


def test_stop_ends_open_streams(hub: FrameHub, clip_root: Path) -> None:
    hub.publish(CAMERA, frame(1))
    server = WebServer("127.0.0.1", 0, hub, UrlSigner(SECRET), clip_root)
    server.start()
    conn, resp = open_stream(server)
    read_part(resp)
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 3
    assert hub.watchers(CAMERA) == 0
    conn.close()


# -- tokens ------------------------------------------------------------------------------------


def test_token_protects_snapshot_and_stream(hub: FrameHub, token_server: WebServer) -> None:
    hub.publish(CAMERA, frame(1))
    snap = f"/api/cameras/{CAMERA}/snapshot.jpg"
    stream = f"/api/cameras/{CAMERA}/stream.mjpeg"
    assert get(token_server, snap)[0] == 401
    assert get(token_server, snap + "?token=wrong")[0] == 401
    assert get(token_server, snap, {"Authorization": "Bearer wrong"})[0] == 401
    assert get(token_server, snap + "?token=s3cret-token")[0] == 200
    assert get(token_server, snap, {"Authorization": "Bearer s3cret-token"})[0] == 200
    # Unknown cameras are not revealed without the token.
    assert get(token_server, "/api/cameras/nope/snapshot.jpg")[0] == 401
    status, headers, _ = get(token_server, stream)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    conn = http.client.HTTPConnection("127.0.0.1", token_server.port, timeout=10)
    try:
        conn.request("GET", stream + "?token=s3cret-token")
        resp = conn.getresponse()
        assert resp.status == 200
        assert read_part(resp)[1][:2] == b"\xff\xd8"
    finally:
        conn.close()
    # Clips use signatures, not the token; health is open.
    assert get(token_server, signed(token_server, KEY))[0] == 200
    assert get(token_server, "/healthz")[0] == 200


# -- clips -------------------------------------------------------------------------------------


def test_signed_clip_download_and_range(server: WebServer, clip_root: Path) -> None:
    data = (clip_root / KEY).read_bytes()
    url = signed(server, KEY)
    status, headers, body = get(server, url)
    assert status == 200 and body == data
    assert headers["content-type"] == "video/mp4"
    assert headers.get("accept-ranges") == "bytes"
    status, headers, body = get(server, url, {"Range": "bytes=1000-1999"})
    assert status == 206 and body == data[1000:2000]
    assert headers["content-range"] == f"bytes 1000-1999/{CLIP_SIZE}"
    status, _, body = get(server, url, {"Range": f"bytes=-{100}"})
    assert status == 206 and body == data[-100:]
    json_key = KEY.replace("original.mp4", "annotations.json")
    status, headers, body = get(server, signed(server, json_key))
    assert status == 200 and headers["content-type"] == "application/json" and body == b'{"frames": []}'


def test_clip_signature_required(server: WebServer) -> None:
    url = signed(server, KEY)
    path, _, query = url.partition("?")
    exp = int(query.split("&")[0].removeprefix("exp="))
    sig = query.split("sig=")[1]
    assert get(server, path)[0] == 403  # missing
    assert get(server, f"{path}?exp={exp}")[0] == 403
    assert get(server, f"{path}?sig={sig}")[0] == 403
    bad = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    assert get(server, f"{path}?exp={exp}&sig={bad}")[0] == 403  # tampered sig
    assert get(server, f"{path}?exp={exp + 1}&sig={sig}")[0] == 403  # tampered expiry
    assert get(server, f"{path}?exp={exp}&sig={sig.upper()}")[0] == 403
    # A valid signature for another key does not open this one.
    other = KEY.replace("original.mp4", "annotations.json")
    assert get(server, f"/clips/{other}?exp={exp}&sig={sig}")[0] == 403
    # Expired.
    past = int(time.time()) - 1
    q = UrlSigner(SECRET).sign(f"/clips/{KEY}", past)
    assert get(server, f"{path}?{q}")[0] == 403
    # Another server's secret.
    q = UrlSigner(b"x" * 32).sign(f"/clips/{KEY}", exp)
    assert get(server, f"{path}?{q}")[0] == 403


def test_missing_clip_is_404(server: WebServer, clip_root: Path) -> None:
    status, _, body = get(server, signed(server, "door/nothing_here/original.mp4"))
    assert status == 404
    assert str(clip_root).encode() not in body and b"nothing_here" not in body


@pytest.mark.parametrize(
    "raw",
    [
        "/clips/../../etc/passwd",
        "/clips/%2e%2e/%2e%2e/etc/passwd",
        "/clips/door/x/..%2f..%2f..%2fetc%2fpasswd",
        "/clips/door/x/..%2f..%2f..%2fsecret.txt",
        "/clips/..%2fsecret.txt",
        "/clips/%2Fetc%2Fpasswd",
        "/clips//etc/passwd",
        "/clips/door/../../secret.txt",
        "/clips/door/%2e%2e/%2e%2e/secret.txt",
        "/clips/door/x/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        "/clips/door/x/original.mp4%00.jpg",
        "/clips/door/x\\..\\..\\secret.txt",
    ],
)
def test_clip_traversal_rejected(server: WebServer, raw: str) -> None:
    signer = UrlSigner(SECRET)
    exp = int(time.time()) + 60
    # Even with a signature that is valid for the literal key, nothing outside clip_root comes back.
    for query in ("", "?" + signer.sign(raw, exp), "?" + signer.sign("/clips/" + raw.removeprefix("/clips/"), exp)):
        status, _, body = get(server, raw + query)
        assert status in (400, 403, 404), (raw, status)
        assert b"TOPSECRET" not in body and b"root:" not in body


def test_symlink_out_of_clip_root_rejected(server: WebServer, clip_root: Path, tmp_path: Path) -> None:
    link = clip_root / "door" / "evil" / "snapshot.jpg"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "secret.txt")
    status, _, body = get(server, signed(server, "door/evil/snapshot.jpg"))
    assert status == 404 and b"TOPSECRET" not in body


def test_no_listing_and_unknown_routes(server: WebServer, clip_root: Path) -> None:
    for path in ("/clips/", "/clips", "/clips/door/", "/clips/door", "/", "/api/cameras", "/api/cameras/door/"):
        status, _, body = get(server, path)
        assert status in (403, 404), path
        assert b"original.mp4" not in body and str(clip_root).encode() not in body
    status, _, body = get(server, "/healthz")
    assert (status, body) == (200, b"ok")
    assert get(server, "/no/such/thing")[0] == 404


def test_sign_clip_url(hub: FrameHub, server: WebServer) -> None:
    url = server.sign_clip_url(KEY, 60)
    assert url.startswith(f"http://127.0.0.1:{server.port}/clips/{KEY}?exp=")
    with pytest.raises(ValueError):
        server.sign_clip_url("../etc/passwd", 60)
    ext = WebServer("127.0.0.1", 0, hub, UrlSigner(SECRET), None, base_url="https://ha.example/ft/")
    assert ext.sign_clip_url(KEY, 60).startswith(f"https://ha.example/ft/clips/{KEY}?exp=")


def test_no_clip_root_serves_nothing(hub: FrameHub) -> None:
    for server in _server(hub, None):
        q = UrlSigner(SECRET).sign(f"/clips/{KEY}", int(time.time()) + 60)
        assert get(server, f"/clips/{KEY}?{q}")[0] == 404


# -- hub ---------------------------------------------------------------------------------------


def test_hub_wait_new_blocks_until_publish(hub: FrameHub) -> None:
    hub.register(CAMERA)
    assert hub.wait_new(CAMERA, 0, 0.01) is None
    timer = threading.Timer(0.05, hub.publish, (CAMERA, frame(1)))
    timer.start()
    t0 = time.monotonic()
    assert hub.wait_new(CAMERA, 0, 5) == 1
    assert time.monotonic() - t0 < 2
    assert hub.wait_new(CAMERA, 0, 5) == 1  # already newer: returns at once
    assert hub.wait_new("unknown", 0, 5) is None
    timer.join()


# -- signer ------------------------------------------------------------------------------------


def test_signer_roundtrip_and_tampering() -> None:
    signer = UrlSigner(SECRET)
    path, exp = "/clips/door/a/original.mp4", 2_000_000_000
    q = signer.sign(path, exp)
    assert q.startswith(f"exp={exp}&sig=")
    sig = q.split("sig=")[1]
    assert len(sig) == 64
    now = 1_900_000_000
    assert signer.verify(path, exp, sig, now=now)
    assert signer.verify(path, str(exp), sig, now=now)
    assert not signer.verify(path + "x", exp, sig, now=now)  # path
    assert not signer.verify("/clips/door/a/annotated.mp4", exp, sig, now=now)
    assert not signer.verify(path, exp + 1, sig, now=now)  # expiry
    assert not signer.verify(path, exp - 1, sig, now=now)
    for i in (0, 31, 63):  # each part of the signature
        flipped = sig[:i] + ("a" if sig[i] != "a" else "b") + sig[i + 1 :]
        assert not signer.verify(path, exp, flipped, now=now)
    for bad_exp in ("", "+2000000000", " 2000000000", "2e9", "-1", "20000000000000", None):
        assert not signer.verify(path, bad_exp, sig, now=now)
    for bad_sig in ("", sig[:-1], sig + "0", sig.upper(), "é" * 64, None):
        assert not signer.verify(path, exp, bad_sig, now=now)
    assert not UrlSigner(b"y" * 32).verify(path, exp, sig, now=now)


def test_signer_expiry() -> None:
    signer = UrlSigner(SECRET)
    sig = signer.sign("/p", 1000).split("sig=")[1]
    assert signer.verify("/p", 1000, sig, now=999.9)
    assert not signer.verify("/p", 1000, sig, now=1000)
    assert not signer.verify("/p", 1000, sig, now=5000)
    assert not signer.verify("/p", 1000, sig)  # real clock: long expired


def test_signer_rejects_weak_secret_and_bad_paths() -> None:
    with pytest.raises(ValueError):
        UrlSigner(b"short")
    with pytest.raises(ValueError):
        UrlSigner(SECRET).sign("/a\n1", 5)
    with pytest.raises(ValueError):
        UrlSigner(SECRET).sign("relative", 5)


def test_secret_file_reused_and_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "url_secret"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first  # reused across restarts
    # URLs signed before a restart still verify after it.
    q = UrlSigner(first).sign("/clips/k", 2_000_000_000)
    again = UrlSigner(load_or_create_secret(path))
    assert again.verify("/clips/k", 2_000_000_000, q.split("sig=")[1], now=0)
    # Lax permissions are tightened; a broken file is replaced.
    os.chmod(path, 0o644)
    assert load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"junk")
    replaced = load_or_create_secret(path)
    assert len(replaced) == 32 and replaced != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path / "other") != first  # random per file
    assert [p.name for p in path.parent.iterdir()] == ["url_secret"]  # no temporary files left
