"""Helpers of the web page tests: the real engine with its ingress listener, and a loopback
stand-in for Home Assistant's ingress proxy.

:class:`IngressProxy` does what HA's ingress does to a request: it serves
``/api/hassio_ingress/<token>/<path>``, forwards ``<path>`` to the app's ingress port with an
``X-Ingress-Path: /api/hassio_ingress/<token>`` header, and streams the answer back (MJPEG and video
ranges included). Other paths and other tokens get 404, as on HA.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from mqtt_helpers import Broker, Subscriber, free_port
from test_service_e2e import Engine

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
UI_TOKEN = "ui-token-for-the-tests-0123456789"
INGRESS_TOKEN = "x7Yk2pQwErTy"  # HA's per-session ingress token in the path
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def seed_demo(tmp: Path) -> tuple[Path, Path]:
    """The composed demo clip and a face library with its two people enrolled (3 photos each)."""
    sys.path.insert(0, str(ROOT / "demo"))
    import compose

    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.recognizer import FaceRecognizer

    clip = tmp / "demo.mp4"
    compose.compose(clip)
    db = tmp / "seed" / "faces.lance"
    backend = create_backend()
    rec = FaceRecognizer(backend, parse_config({}), FaceLibrary(db, backend.model_id, backend.embedding_dim))
    compose.enrol_demo_people(rec)
    return clip, db


@contextlib.contextmanager
def engine_stack(tmp: Path, make_engine: Callable[[Path, int], WebEngine]) -> Iterator[tuple[WebEngine, Subscriber]]:
    """A real Mosquitto, a validating subscriber and the engine ``make_engine(folder, broker_port)``
    started in ``tmp``; on exit the engine must have stopped with code 0 and every payload the
    subscriber saw must have matched its schema."""
    broker = Broker(tmp)
    broker.start()
    sub = Subscriber(broker.port).start()
    (tmp / "engine").mkdir()
    engine = make_engine(tmp / "engine", broker.port)
    try:
        engine.start()
        yield engine, sub
    finally:
        code = engine.stop()
        sub.stop()
        broker.stop()
        assert code == 0, engine.log.read_text()[-3000:]
        assert not sub.errors, sub.errors[:5]


class PeakRSS:
    """Samples a process's resident memory every 20 ms in a thread (``peak``, ``baseline``: bytes)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.baseline = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def now(self) -> int:
        """The resident memory now (bytes)."""
        return int(self.proc.memory_info().rss)

    @property
    def rise(self) -> int:
        return self.peak - self.baseline


class WebEngine(Engine):
    """``python -m facetrack serve`` with the HTTP server, the ingress listener and a UI token."""

    def __init__(self, tmp: Path, mqtt_port: int, db: Path | None, source: Path | str, **extra: Any) -> None:
        self.tmp = tmp
        self.http_port = free_port()
        self.ingress_port = free_port()
        http = {
            "host": "127.0.0.1",
            "port": self.http_port,
            "ingress_port": self.ingress_port,
            "ingress_allow": ["127.0.0.1"],
            "ui_token": UI_TOKEN,
        }
        alerts = {"alert_mode": "ON_ALL", "alert_once": True, "cooldown_seconds": 0}
        super().__init__(tmp, mqtt_port, db if db is not None else tmp / "no-seed", source, **{
            "http": http, "alerts": alerts, **extra,
        })  # fmt: skip

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def start(self, timeout: float = 60.0) -> WebEngine:
        """Start the engine and wait until its ingress listener answers."""
        super().start()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the engine exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.ingress}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the engine did not listen:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode

    def get_json(self, path: str) -> Any:
        """GET ``path`` on the ingress listener (trusted peer: no token)."""
        with urllib.request.urlopen(f"{self.ingress}/{path}", timeout=30) as r:
            return json.loads(r.read())


def wait_for(predicate: Any, timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request without following redirects: (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class IngressProxy:
    """A loopback reverse proxy shaped like HA's ingress, in its own thread."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.port = 0
        self.requests: list[tuple[str, str]] = []  # (method, forwarded path) seen
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def prefix(self) -> str:
        return f"/api/hassio_ingress/{INGRESS_TOKEN}"

    @property
    def url(self) -> str:
        """The page's URL as HA's sidebar opens it (with the trailing slash)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != INGRESS_TOKEN:
            raise web.HTTPNotFound()
        tail = request.match_info["tail"]
        self.requests.append((request.method, "/" + tail))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["X-Ingress-Path"] = self.prefix
        headers["X-Forwarded-For"] = request.remote or ""
        assert self._session is not None
        body = await request.read() if request.can_read_body else None
        async with self._session.request(
            request.method, f"{self.upstream}/{tail}", params=request.query, headers=headers, data=body,
            allow_redirects=False, auto_decompress=False,
        ) as up:  # fmt: skip
            out = web.StreamResponse(status=up.status)
            for k, v in up.headers.items():
                if k.lower() not in _HOP:
                    out.headers.add(k, v)
            if "Content-Length" in up.headers:
                out.content_length = int(up.headers["Content-Length"])
            await out.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    await out.write(chunk)
            except (ConnectionResetError, aiohttp.ClientPayloadError):
                pass
            return out

    async def _start(self) -> int:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/hassio_ingress/{token}/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def start(self) -> IngressProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()

        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
