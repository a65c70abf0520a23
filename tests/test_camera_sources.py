"""Camera sources that hang, answer garbage or stall never hold up the other cameras or shutdown.

Network streams are read by one ffmpeg process each (facetrack.camera.stream). The fakes here are
real sockets on 127.0.0.1: an "RTSP camera" that accepts the TCP connection and never answers,
one that answers garbage, and an HTTP server that sends part of a stream and then goes silent.
The end-to-end test runs the real ``facetrack serve`` with a real Mosquitto.
"""

from __future__ import annotations

import http.server
import itertools
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
import pytest

import test_service_e2e
from facetrack.camera import open_source
from facetrack.errors import VideoSourceError
from mqtt_helpers import Broker, Subscriber
from test_service_e2e import Engine

broker = test_service_e2e.broker  # the e2e module's fixtures: a real Mosquitto, a validating subscriber
sub = test_service_e2e.sub
pytestmark = pytest.mark.timeout(300)
PASSWORD = "s3cretpw"


# ---- fake cameras ---------------------------------------------------------------------------------


@dataclass
class Connection:
    accepted: float
    closed: float | None = None


@dataclass
class FakeCamera:
    """A TCP listener on 127.0.0.1: ``hang`` accepts and never answers; ``garbage`` answers the
    first request with bytes that are not RTSP and closes. Records when each connection was
    accepted and when the client closed it (``time.time()``)."""

    kind: str
    connections: list[Connection] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, user: str | None = None) -> str:
        cred = f"{user}:{PASSWORD}@" if user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/live"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            record = Connection(time.time())
            with self.cond:
                self.connections.append(record)
                self.cond.notify_all()
            threading.Thread(target=self._serve, args=(conn, record), daemon=True).start()

    def _serve(self, conn: socket.socket, record: Connection) -> None:
        with conn:
            try:
                if self.kind == "garbage":
                    conn.recv(4096)
                    conn.sendall(b"\x00\xff\x13 this is not RTSP \r\n\r\n" * 8)
                else:
                    while conn.recv(4096):  # read the request, never answer; b"": client gone
                        pass
            except OSError:
                pass
        with self.cond:
            record.closed = time.time()
            self.cond.notify_all()

    def wait(self, pred: Any, timeout: float = 60.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.connections), timeout), f"{self.kind}: {self.connections}"

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def hanging() -> Iterator[FakeCamera]:
    cam = FakeCamera("hang")
    yield cam
    cam.close()


@pytest.fixture
def garbage() -> Iterator[FakeCamera]:
    cam = FakeCamera("garbage")
    yield cam
    cam.close()


def _make_clip(path: Path, seconds: float, fmt: str = "mp4") -> Path:
    codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p"] if fmt == "mp4" else ["-c:v", "mpeg2video", "-f", "mpegts"]
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc=size=320x240:rate=25:duration={seconds}", *codec, str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.5 s of ffmpeg's test pattern, 320x240 at 25 fps (38 frames): a camera replaying it
    restarts every couple of seconds."""
    return _make_clip(tmp_path_factory.mktemp("clips") / "short.mp4", 1.5)


class _Http(http.server.BaseHTTPRequestHandler):
    """Serves ``body``; with ``stall`` set, sends only its first half, then holds the connection
    open without a byte more until the server is shut down."""

    body: bytes = b""
    stall: threading.Event | None = None

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.stall is None:
            self.wfile.write(self.body)
            return
        self.wfile.write(self.body[: len(self.body) // 2])
        self.wfile.flush()
        self.stall.wait(120)

    def log_message(self, *_a: object) -> None:
        pass


def _http_server(body: bytes, stall: threading.Event | None) -> http.server.ThreadingHTTPServer:
    handler = type("Handler", (_Http,), {"body": body, "stall": stall})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # ended meanwhile
        return ""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ---- the source on its own -----------------------------------------------------------------------


def test_a_hanging_stream_never_blocks_another_open_and_stops_on_request(hanging: FakeCamera, clip: Path) -> None:
    stop = threading.Event()
    outcome: list[BaseException | object] = []

    def open_hanging() -> None:
        try:
            outcome.append(open_source(hanging.url("admin"), timeout=240, stop=stop))
        except BaseException as err:
            outcome.append(err)

    opener = threading.Thread(target=open_hanging)
    opener.start()
    hanging.wait(lambda c: len(c) == 1)  # ffmpeg connected; the camera will never answer
    # A file opens and plays completely meanwhile (OpenCV's opens share one lock: this waited).
    with open_source(str(clip)) as video:
        frames = [f for _, _, f in video.frames()]
    assert len(frames) == 38
    assert opener.is_alive() and not outcome, "the hanging open returned before it was stopped"
    stop.set()
    opener.join(60)
    assert not opener.is_alive()
    assert isinstance(outcome[0], VideoSourceError)
    assert "stopped while opening" in str(outcome[0])
    hanging.wait(lambda c: c[0].closed is not None)  # its ffmpeg was killed: the socket closed


def test_a_silent_stream_fails_after_its_timeout_naming_it_without_the_password(hanging: FakeCamera) -> None:
    with pytest.raises(VideoSourceError) as err:
        open_source(hanging.url("admin"), timeout=2)
    message = str(err.value)
    assert "no video within 2 s" in message
    assert PASSWORD not in message and "admin:***@" in message
    hanging.wait(lambda c: len(c) == 1 and c[0].closed is not None)


def test_garbage_and_refused_streams_fail_with_ffmpegs_reason(garbage: FakeCamera) -> None:
    with pytest.raises(VideoSourceError) as err:
        open_source(garbage.url("admin"), timeout=60)
    message = str(err.value)
    assert "Invalid data" in message, message
    assert PASSWORD not in message
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(VideoSourceError, match="Connection refused"):
        open_source(f"rtsp://127.0.0.1:{port}/live", timeout=60)


def test_an_http_stream_gives_every_frame_with_live_timestamps(tmp_path: Path) -> None:
    ts_file = _make_clip(tmp_path / "clip.ts", 2.0, "ts")
    server = _http_server(ts_file.read_bytes(), None)
    try:
        with open_source(f"http://127.0.0.1:{server.server_address[1]}/clip.ts", timeout=60) as video:
            assert (video.width, video.height, video.fps, video.live, video.frame_count) == (320, 240, 25.0, True, None)
            got = list(video.frames())
            assert video.error is not None and video.error.endswith("ended")  # end of stream, no failure
    finally:
        server.shutdown()
    cap = cv2.VideoCapture(str(ts_file))
    reference = []
    while (ok_frame := cap.read())[0]:
        reference.append(ok_frame[1])
    cap.release()
    assert [i for i, _, _ in got] == list(range(len(reference)))  # every frame, in order
    ts = [t for _, t, _ in got]
    assert ts == sorted(ts) and ts[0] >= 0  # seconds since frames() started, never backwards
    for (_, _, frame), ref in zip(got, reference, strict=True):
        assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.flags.writeable
        assert np.abs(frame.astype(np.int16) - ref).mean() < 3  # same picture (decoders may round differently)


@pytest.mark.parametrize("threads", [0, 1])
def test_frames_over_a_cap_are_skipped_undecoded_and_the_rest_are_the_same_pictures(clip: Path, threads: int) -> None:
    """``frames(keep)``: the frames ``keep`` refuses are not yielded (not converted to BGR), the
    others keep their index, timestamp and picture; one decoder thread changes no pixel."""
    with open_source(str(clip)) as video:
        every = list(video.frames())
    with open_source(str(clip), decode_threads=threads) as video:
        asked: list[float] = []
        kept = list(video.frames(lambda ts: asked.append(ts) or len(asked) % 3 == 1))
    assert len(every) == len(asked) == 38  # every frame decoded, in order
    assert [i for i, _, _ in kept] == [i for i, _, _ in every][::3]
    assert [t for _, t, _ in kept] == [t for _, t, _ in every][::3] == asked[::3]
    for (_, _, a), (_, _, b) in zip(kept, every[::3], strict=True):
        assert np.array_equal(a, b)


def test_frames_without_their_picture_are_yielded_as_none(clip: Path) -> None:
    """``frames(picture=...)``: a frame whose picture is not wanted keeps its index and time, with
    ``None`` for the picture; the next wanted picture is the right one (decoding went on)."""
    with open_source(str(clip)) as video:
        every = list(video.frames())
    with open_source(str(clip)) as video:
        got = list(video.frames(picture=lambda ts: round(ts * 25) % 2 == 0))
    assert [(i, t) for i, t, _ in got] == [(i, t) for i, t, _ in every]
    assert all((f is None) == (i % 2 == 1) for i, _, f in got)
    for (i, _, a), (_, _, b) in zip(got, every, strict=True):
        if a is not None:
            assert np.array_equal(a, b), i


def test_a_stream_skips_what_keep_refuses(tmp_path: Path) -> None:
    ts_file = _make_clip(tmp_path / "clip.ts", 2.0, "ts")
    server = _http_server(ts_file.read_bytes(), None)
    m = iter(range(10**6))
    try:
        with open_source(f"http://127.0.0.1:{server.server_address[1]}/clip.ts", timeout=60) as video:
            n = iter(range(10**6))
            got = list(video.frames(lambda ts: next(n) % 2 == 0, lambda ts: next(m) % 3 != 1))
    finally:
        server.shutdown()
    assert [i for i, _, _ in got] == list(range(0, 50, 2))  # 50 frames read, every other one kept
    pictures = [f for _, _, f in got if f is not None]
    assert [f is None for _, _, f in got] == [k % 3 == 1 for k in range(25)]  # ... a third without picture
    assert len({id(f) for f in pictures}) == len(pictures) and all(f.flags.writeable for f in pictures)
    assert not np.array_equal(pictures[0], pictures[1])  # each its own buffer, not overwritten


def test_a_stream_that_goes_silent_ends_after_its_timeout_or_on_stop(tmp_path: Path) -> None:
    body = _make_clip(tmp_path / "long.ts", 20.0, "ts").read_bytes()  # half: past the 5 s ffmpeg probes
    release = threading.Event()
    server = _http_server(body, release)
    url = f"http://127.0.0.1:{server.server_address[1]}/long.ts"
    try:
        video = open_source(url, timeout=3)
        frames = sum(1 for _ in video.frames())  # the first half arrives, then nothing
        assert 0 < frames < 500
        assert video.error == f"no frame from {url} for 3 s"
        video.close()
        assert _gone(video._proc.pid)  # type: ignore[attr-defined]

        stop = threading.Event()
        video = open_source(url, timeout=240, stop=stop)
        counted: list[int] = []
        reader = threading.Thread(target=lambda: counted.append(sum(1 for _ in video.frames())))
        reader.start()
        stop.set()
        reader.join(60)
        assert not reader.is_alive() and video.error is None  # stopped, not failed
        video.close()
        assert _gone(video._proc.pid)  # type: ignore[attr-defined]
    finally:
        release.set()
        server.shutdown()


# ---- the engine ---------------------------------------------------------------------------------


def _restarts_between(sub: Subscriber, camera: str, start: float, end: float) -> int:
    """Passes of ``camera`` over its file that started between ``start`` and ``end``
    (``time.time()``). A file replays without going offline; the first frame of each pass reports
    the ``online`` state (the state otherwise repeats every 10 s, longer than the 1.5 s clip). The
    first pass also reports it on opening, at most a few ms earlier: those count once."""
    count, previous = 0, 0.0
    for m in sub.find(f"/{camera}/state"):
        if m.payload.get("state") == "online":
            count += start < m.at < end and m.at - previous > 0.5
            previous = m.at
    return count


def test_hanging_and_garbage_cameras_never_stall_the_healthy_ones_or_shutdown(
    tmp_path: Path, broker: Broker, sub: Subscriber, clip: Path, hanging: FakeCamera, garbage: FakeCamera
) -> None:
    cameras = [
        {"name": "door", "source": str(clip)},
        {"name": "yard", "source": str(clip)},
        {"name": "stuck", "source": hanging.url("admin")},
        {"name": "junk", "source": garbage.url("admin")},
    ]
    engine = Engine(tmp_path, broker.port, tmp_path / "no-library", clip, cameras=cameras).start()
    try:
        sub.wait_for("facetrack/status", lambda m: m.payload == "online", timeout=90)
        # The healthy cameras replay their clip (at once, staying online) while the stuck camera
        # keeps trying: between two of its connection attempts (one hanging open and its retry
        # delay) both restart at least three times. With opens serialised they cannot reopen while
        # an open hangs, only in the retry delay (at most 2 s) between two attempts: twice at
        # most, as playing the 1.5 s clip takes longer than half of that.
        deadline = time.monotonic() + 180
        while True:
            with hanging.cond:
                accepted = [c.accepted for c in hanging.connections]
            counts = [
                [_restarts_between(sub, cam, a, b) for cam in ("door", "yard")] for a, b in itertools.pairwise(accepted)
            ]
            if any(min(c) >= 3 for c in counts):
                break
            assert time.monotonic() < deadline, f"healthy restarts between the stuck camera's attempts: {counts}"
            assert engine.proc is not None and engine.proc.poll() is None, engine.log.read_text()[-3000:]
            time.sleep(0.5)

        def offline_with_error(m: Any) -> bool:
            return m.payload.get("state") == "offline" and bool(m.payload.get("error"))

        stuck = sub.wait_for("/stuck/state", offline_with_error, timeout=120)[-1].payload["error"]
        junk = sub.wait_for("/junk/state", offline_with_error, timeout=120)[-1].payload["error"]
        assert "no video within" in stuck and "Invalid data" in junk, (stuck, junk)
        for text in (stuck, junk, engine.log.read_text()):
            assert PASSWORD not in text  # the retained state and the log never show the camera password
        assert all(
            not m.payload.get("error") for m in sub.find("/door/state") + sub.find("/yard/state")
            if m.payload.get("state") == "online"
        )  # fmt: skip

        # Shutdown while the stuck camera's open is in progress: the engine exits, no ffmpeg left.
        hanging.wait(lambda c: c[-1].closed is None, timeout=120)
        assert engine.proc is not None
        children = psutil.Process(engine.proc.pid).children(recursive=True)
        assert any(str(hanging.port) in _cmdline(p) for p in children)  # its own ffmpeg process
        engine.proc.send_signal(signal.SIGTERM)
        assert engine.proc.wait(timeout=60) == 0
        assert all(_gone(p.pid) for p in children), [p for p in children if not _gone(p.pid)]
        hanging.wait(lambda c: all(x.closed is not None for x in c), timeout=60)
    finally:
        engine.kill()
