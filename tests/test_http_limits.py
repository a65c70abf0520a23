"""The HTTP server under idle floods and slowloris, against the real engine.

One ``facetrack serve`` (demo clip, two people enrolled, a real Mosquitto, main and ingress
listeners) runs with ``RLIMIT_NOFILE`` lowered to 256 (``prlimit``) and 2 s HTTP timeouts. The
tests open sockets as an attacker does: connections that send nothing, headers sent a byte at a
time, a body that stops, a kept-alive connection left idle, then a flood of 2000 idle connections
on both listeners. They check that the server closes them, never runs out of file handles, keeps
answering ``/healthz`` and a signed clip URL, that MQTT commands and camera state go on, and that
the log stays short. Waits are generous; nothing asserts how long anything took.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mqtt_helpers import Subscriber
from test_service_e2e import Engine
from webui_helpers import UI_TOKEN, WebEngine, engine_stack, seed_demo, wait_for

pytestmark = pytest.mark.timeout(600)

NOFILE = 256  # the engine's file-handle limit in these tests
TIMEOUT_S = 2.0  # header, keep-alive and body timeouts of the engine under test
CLOSE_WAIT_S = 90.0  # how long a test waits for the server to close a connection
FLOOD_PER_PORT = 1000


class _NofileLimited(Engine):
    """Starts the engine under ``prlimit --nofile`` (which execs it: the pid is the engine's).

    Without ``-v``: the log is what a user would see, and its length is part of the test.
    """

    def start(self) -> Engine:
        cmd = [
            "prlimit", f"--nofile={NOFILE}:{NOFILE}", "--",
            sys.executable, "-m", "facetrack", "serve", "--config", str(self.config),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=self.config.parent
            )
        return self


class LimitedEngine(WebEngine, _NofileLimited):
    """The web engine (main + ingress listeners, UI token) with few file handles."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LimitedEngine, Subscriber]]:
    tmp = tmp_path_factory.mktemp("httplimits")
    clip, db = seed_demo(tmp)

    def make(folder: Path, port: int) -> LimitedEngine:
        engine = LimitedEngine(folder, port, db, clip)
        cfg = yaml.safe_load(engine.config.read_text())
        cfg["http"].update({f"{k}_timeout_seconds": TIMEOUT_S for k in ("header", "keepalive", "body")})
        engine.config.write_text(yaml.safe_dump(cfg))
        return engine

    with engine_stack(tmp, make) as (engine, sub):
        assert engine.proc is not None
        soft = int(Path(f"/proc/{engine.proc.pid}/limits").read_text().split("Max open files")[1].split()[0])
        assert soft == NOFILE
        yield engine, sub


# ---- socket helpers ------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    """A non-blocking connection to 127.0.0.1:port that sends nothing (connect may be pending)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    err = s.connect_ex(("127.0.0.1", port))
    assert err in (0, errno.EINPROGRESS), os.strerror(err)
    return s


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server has closed ``s`` (EOF or reset); reads and drops whatever it sent."""
    while True:
        poller = select.poll()  # not select(): the flood's descriptors go beyond 1024
        poller.register(s, select.POLLIN)
        if not poller.poll(0):
            return False
        try:
            if not s.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except BlockingIOError:
            return False
        except OSError as err:  # a connect the server never accepted, refused at last
            return err.errno in (errno.ECONNREFUSED, errno.ETIMEDOUT)


def wait_all_closed(socks: list[socket.socket], what: str, feed: bytes = b"") -> None:
    """Wait (generously) until the server closed every socket; ``feed`` is sent to the open ones
    every 0.3 s (a slowloris trickle)."""
    open_ = list(socks)
    deadline = time.monotonic() + CLOSE_WAIT_S
    while open_ and time.monotonic() < deadline:
        if feed:
            for s in open_:
                try:
                    s.send(feed)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass  # closed by the server: seen below
        time.sleep(0.3)
        open_ = [s for s in open_ if not closed_by_server(s)]
    for s in socks:
        s.close()
    assert not open_, f"{len(open_)} of {len(socks)} {what} connections still open after {CLOSE_WAIT_S} s"


def blocking(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(data)
    s.setblocking(False)
    return s


def engine_fds(engine: LimitedEngine) -> tuple[int, int]:
    """(open file handles, of which sockets) of the engine process."""
    assert engine.proc is not None
    fd_dir = Path(f"/proc/{engine.proc.pid}/fd")
    total = sockets = 0
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        total += 1
        sockets += target.startswith("socket:")
    return total, sockets


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def get_with_retries(url: str, tries: int = 60) -> tuple[int, bytes]:
    """GET, retrying a connection the server closed or refused with 503 (the limit at work)."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            status, body = get(url)
            if status == 200:
                return status, body
        except OSError as err:  # urllib's HTTPError (503) and URLError are OSErrors
            last = err
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered: {last}")


def log_lines(engine: LimitedEngine) -> int:
    return len(engine.log.read_bytes().splitlines())


# ---- the connection guard's pieces -------------------------------------------------------------


def test_auto_limit_is_a_share_of_the_file_handles() -> None:
    from facetrack.web.limits import HttpLimits, auto_max_connections

    assert auto_max_connections(256, 2) == 32  # 256 / (4 * 2): what the engine below gets
    assert auto_max_connections(1024, 2) == 128
    assert auto_max_connections(1024, 1) == 256
    assert auto_max_connections(64, 2) == 8  # the floor
    assert auto_max_connections(1 << 20, 2) == 512  # the cap
    with pytest.raises(ValueError):
        HttpLimits(header_timeout_s=0)


def test_rate_limit_filter_passes_a_burst_then_summarises() -> None:
    from facetrack.logutil import RateLimitFilter, rate_limit_loggers

    now = [0.0]
    flt = RateLimitFilter(burst=3, interval_s=60, clock=lambda: now[0])
    logger = logging.getLogger("facetrack.test.ratelimit")
    logger.propagate = False
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger.addHandler(Keep())
    logger.addFilter(flt)
    try:
        for i in range(1000):
            logger.warning("bad connection from %s", f"10.0.0.{i % 250}")
        logger.warning("another message")
        assert records == [
            "bad connection from 10.0.0.0", "bad connection from 10.0.0.1", "bad connection from 10.0.0.2",
            "another message",
        ]  # fmt: skip
        now[0] = 61.0
        assert flt.flush() == 1
        assert records[-1] == "997 similar messages suppressed in 60 s: bad connection from %s"
        logger.warning("bad connection from %s", "10.0.0.9")  # a new window
        assert records[-1] == "bad connection from 10.0.0.9" and flt.suppressed_total == 997
    finally:
        logger.removeFilter(flt)
        logger.handlers.clear()
    # Attaching is idempotent: one shared filter.
    names = ("facetrack.test.a", "facetrack.test.b")
    first = rate_limit_loggers(names)
    assert rate_limit_loggers(names) is first
    assert [f for f in logging.getLogger("facetrack.test.b").filters if isinstance(f, RateLimitFilter)] == [first]


# ---- against the engine ----------------------------------------------------------------------------


def test_idle_slowloris_stalled_body_and_kept_alive_connections_are_closed(
    stack: tuple[LimitedEngine, Subscriber],
) -> None:
    engine, _ = stack
    ports = (engine.http_port, engine.ingress_port)
    # Connections that never send a byte: 8 per port, within the listen backlog (the engine's is
    # 8 here), so that the kernel hands every one to the engine rather than dropping its handshake.
    wait_all_closed([connect(p) for p in ports for _ in range(8)], "idle")
    # Slowloris: a request line, then one header byte every 0.3 s, never the blank line.
    slow = [blocking(p, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ") for p in ports for _ in range(5)]
    wait_all_closed(slow, "slowloris", feed=b"a")
    # A body that stops: an upload announcing 100 kB, 100 bytes sent (ingress: no token needed;
    # the main port with the UI token).
    head = (
        "POST /api/enroll HTTP/1.1\r\nHost: x\r\nX-Requested-With: facetrack\r\n"
        "Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 100000\r\n{auth}\r\n"
    )
    body = b'--b0undary\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n' + b"x" * 30
    stalled = [
        blocking(engine.ingress_port, head.format(auth="").encode() + body),
        blocking(engine.http_port, head.format(auth=f"Authorization: Bearer {UI_TOKEN}\r\n").encode() + body),
    ]
    wait_all_closed(stalled, "stalled-body")
    # A kept-alive connection after a complete answer, then silence.
    kept = []
    for p in ports:
        s = socket.create_connection(("127.0.0.1", p), timeout=30)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.setblocking(False)
        kept.append(s)
    wait_all_closed(kept, "kept-alive idle")
    # The server still serves.
    assert get(f"{engine.direct}/healthz") == (200, b"ok")
    assert get(f"{engine.ingress}/healthz") == (200, b"ok")


class Flood(threading.Thread):
    """Opens ``per_port`` idle connections on each port, replacing those the server closes, so that
    hundreds are pending or open while the test works."""

    def __init__(self, ports: tuple[int, ...], per_port: int) -> None:
        super().__init__(daemon=True)
        self.ports, self.per_port = ports, per_port
        self.attempts = 0
        self.closed_by_server = 0
        self.open_now = 0
        self.max_open = 0
        self.stop = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        socks: list[socket.socket] = []
        try:
            while not self.stop.is_set() and self.attempts < self.per_port * len(self.ports):
                for port in self.ports:
                    for _ in range(25):
                        socks.append(connect(port))
                        self.attempts += 1
                still = [s for s in socks if not closed_by_server(s)]
                self.closed_by_server += len(socks) - len(still)
                for s in set(socks) - set(still):
                    s.close()
                socks = still
                self.open_now = len(socks)
                self.max_open = max(self.max_open, len(socks))
                time.sleep(0.02)
            self.done.set()
            while not self.stop.wait(0.3):  # hold what is left until told to stop
                still = [s for s in socks if not closed_by_server(s)]
                self.closed_by_server += len(socks) - len(still)
                socks = still
                self.open_now = len(socks)
        finally:
            for s in socks:
                s.close()
            self.done.set()


def test_a_flood_of_idle_connections_leaves_the_engine_working(stack: tuple[LimitedEngine, Subscriber]) -> None:
    engine, sub = stack
    assert engine.proc is not None
    clip_msg = sub.wait_for("/door/clip", timeout=180)[0].payload
    clip_url = clip_msg["urls"]["original"]
    clip_file = engine.tmp / "clips" / "door" / clip_msg["clip_id"] / "original.mp4"
    assert clip_url.startswith(engine.direct) and clip_file.is_file()
    lines_before = log_lines(engine)
    fds: list[tuple[int, int]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            fds.append(engine_fds(engine))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    flood = Flood((engine.http_port, engine.ingress_port), FLOOD_PER_PORT)
    flood_started = time.time()
    flood.start()
    try:
        wait_for(lambda: flood.open_now >= 100, 60, 0.05, "the flood to build up")
        answered = []
        # While the flood goes on: health checks on both listeners, the clip, an MQTT command.
        for _ in range(3):
            for base in (engine.direct, engine.ingress):
                answered.append((get_with_retries(f"{base}/healthz"), flood.open_now))
        status, clip = get_with_retries(clip_url)
        assert status == 200 and clip == clip_file.read_bytes()
        rid = uuid.uuid4().hex
        sub.publish("facetrack/command/list", {"request_id": rid})
        answer = sub.wait_for(f"/response/{rid}", timeout=120)[0].payload
        assert answer["ok"] is True and {p["name"] for p in answer["result"]["persons"]} >= {"John_Salley"}
        # The camera's state keeps coming (republished every 10 s) and it is online.
        sub.wait_for("/door/state", lambda m: m.at > flood_started and m.payload["state"] == "online", timeout=120)
        assert flood.done.wait(300), "the flood did not finish its attempts"
    finally:
        flood.stop.set()
        flood.join(30)
        sampling.set()
        sampler.join(10)
    assert all(body == b"ok" for (_, body), _ in answered)
    assert max(open_ for _, open_ in answered) >= 50  # answered while many idle connections were held
    assert flood.attempts == 2 * FLOOD_PER_PORT
    # The engine never came near its file-handle limit: connections are capped at 2 x 32.
    peak_fds = max(total for total, _ in fds)
    assert peak_fds < NOFILE - 16, f"{peak_fds} file handles of {NOFILE} (before the flood: {fds[0]})"
    # Every flood connection was closed by the server (a timeout, the limit) or ours at the end.
    wait_for(lambda: engine_fds(engine)[1] <= min(s for _, s in fds) + 8, 60, 0.5, "the flood's sockets to go")
    log = engine.log.read_text(errors="replace")
    assert "Too many open files" not in log
    added = log_lines(engine) - lines_before
    assert added < 200, f"{added} log lines for {flood.attempts} connections:\n{log[-3000:]}"
    print(
        f"\nflood: {flood.attempts} attempted, {flood.closed_by_server} closed by the server, at most "
        f"{flood.max_open} open from the client's side; engine peak {peak_fds} file handles "
        f"({max(s for _, s in fds)} sockets) of {NOFILE}; /healthz answered {len(answered)}/{len(answered)}; "
        f"{added} log lines"
    )
