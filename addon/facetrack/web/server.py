"""The engine's HTTP server: live snapshots and MJPEG streams, signed clip downloads, a health check.

aiohttp runs its own event loop in a background thread (the engine is threaded), started by
:meth:`WebServer.start` and stopped by :meth:`WebServer.stop`. Routes:

- ``GET /api/cameras/{camera}/snapshot.jpg``: the camera's latest annotated frame.
- ``GET /api/cameras/{camera}/stream.mjpeg[?fps=N]``: ``multipart/x-mixed-replace`` MJPEG.
- ``GET /clips/<camera>/<clip id>/<file>?exp=&sig=``: a clip file, only with a valid signature;
  ``410 Gone`` with ``{"error": "clip_lost", "message": ...}`` for a file marked lost.
- ``GET /alerts/<alert id>/snapshot.jpg?exp=&sig=``: an alert's own face snapshot, only with a
  valid signature (403), from the moment the alert is published (404 once it is no longer kept).
- ``GET /healthz``: ``ok``.
- The face library page and its JSON API (:mod:`facetrack.web.api`), when given as ``ui``, and
  the routes of the features given as ``routes`` (the inbox's signed crops, :mod:`facetrack.inbox.web`).

With ``ingress_port``, a second listener serves the same routes for Home Assistant ingress: only
to the allowed peers (the Supervisor), without tokens (HA has authenticated the user).

Snapshot and stream require ``?token=`` or ``Authorization: Bearer`` when a ``stream_token`` is set.
Nothing else is served: no directory listings, and error bodies never carry paths or exceptions.
Each listener has header, keep-alive and body timeouts and a connection limit derived from the
file-handle limit (:mod:`facetrack.web.limits`); its log messages are rate-limited.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from facetrack.logutil import RateLimitFilter, rate_limit_loggers
from facetrack.record.snapshots import valid_alert_id
from facetrack.record.storage import lost_reason
from facetrack.web.common import CLIP_KEY_RE, TRUSTED, Handler, Middleware
from facetrack.web.frames import EncodedFrame, FrameHub
from facetrack.web.limits import ConnectionGuard, HttpLimits, max_connections_for, nofile_limit
from facetrack.web.signing import UrlSigner

_LOG = logging.getLogger(__name__)

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".jpg": "image/jpeg",
}
BOUNDARY = "frame"
MAX_STREAM_FPS = 30.0
MIN_STREAM_FPS = 0.1
_WAIT_SLICE_S = 1.0  # how often an idle stream re-checks its connection and the stop flag

#: Loggers a flood of bad connections or requests could fill: rate-limited (10 similar messages a
#: minute each, then a count of what was suppressed).
RATE_LIMITED_LOGGERS = (
    __name__, "facetrack.web.limits", "facetrack.web.api",
    "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal", "asyncio",
)  # fmt: skip


class Routes(Protocol):
    """Routes a feature adds to every listener."""

    def add_routes(self, app: web.Application) -> None:
        """Register them on ``app``."""
        ...


class MountedUi(Routes, Protocol):
    """The face library page and its API (:class:`facetrack.web.api.WebUi`)."""

    def access_middleware(self, *, ingress: bool) -> Middleware:
        """Who may use the page and API on a listener (``ingress``: the ingress listener)."""
        ...


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, headers={"Cache-Control": "no-store"})


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes a short plain-text reply: no internal path, no exception text."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reply = _plain(exc.status, exc.reason)
        for name in ("WWW-Authenticate", "Allow"):
            if name in exc.headers:
                reply.headers[name] = exc.headers[name]
        return reply
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        _LOG.exception("HTTP handler failed for %s %s", request.method, request.path)
        return _plain(500, "Internal Server Error")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


class WebServer:
    """aiohttp server in a background thread, over a :class:`FrameHub` and a clip folder."""

    def __init__(
        self,
        host: str,
        port: int,
        hub: FrameHub,
        signer: UrlSigner,
        clip_root: Path | None,
        base_url: str | None = None,
        *,
        stream_token: str | None = None,
        frame_max_age_s: float | None = 30.0,
        ingress_port: int | None = None,
        ingress_host: str | None = None,
        limits: HttpLimits | None = None,
        ui: MountedUi | None = None,
        routes: Sequence[Routes] = (),
        alert_snapshot: Callable[[str], bytes | None] | None = None,
    ) -> None:
        """Configure; nothing is bound before :meth:`start`.

        ``port`` 0 binds a free port (read it from :attr:`port` after ``start``). ``clip_root``:
        where ``<camera>/<clip id>/<file>`` live (None: no clips served). ``base_url``: the
        externally visible origin for signed URLs (default ``http://host:port``; set it when
        binding ``0.0.0.0``). ``stream_token``: required (``?token=`` or a Bearer header) for
        snapshots and streams. ``frame_max_age_s``: frames older than this are not served (a
        stalled camera gives 503 rather than an old picture); None: no limit. ``ingress_port``:
        also listen there (on ``ingress_host``, default ``host``) for Home Assistant ingress; it
        serves only with a ``ui`` (the UI decides which peers it accepts).
        ``limits``: timeouts and the connection limit of each listener (:mod:`facetrack.web.limits`).
        ``ui``: the face library page and API, with its access rules. ``routes``: more routes
        (the inbox's signed crops), on every listener. ``alert_snapshot``: alert id -> its
        snapshot JPEG, or None (None: no alert snapshots served).
        """
        if stream_token is not None and not stream_token:
            raise ValueError("stream_token must be non-empty (or None)")
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.hub = hub
        self.signer = signer
        self.clip_root = clip_root.resolve() if clip_root is not None else None
        self.base_url = base_url.rstrip("/") if base_url else None
        self._token = stream_token.encode() if stream_token is not None else None
        self._max_age = frame_max_age_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._encoder: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.ingress_host = ingress_host or host
        self._requested_ingress_port = ingress_port
        self._ingress_port: int | None = None
        self._ingress_runner: web.AppRunner | None = None
        self.limits = limits if limits is not None else HttpLimits()
        #: Per listener (``main``, ``ingress``): connection counts and closures (after start).
        self.guards: dict[str, ConnectionGuard] = {}
        self._listeners: list[tuple[asyncio.Server, asyncio.Task[None]]] = []
        self._log_filter: RateLimitFilter | None = None
        #: The face library page and API (:class:`facetrack.web.api.WebUi`), or None.
        self.ui = ui
        self.routes = tuple(routes)
        self.alert_snapshot = alert_snapshot

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def ingress_port(self) -> int | None:
        """The bound ingress port (after :meth:`start`), or None without an ingress listener."""
        return self._ingress_port

    @property
    def running(self) -> bool:
        """Whether the server thread is up."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve in a background thread; raises (e.g. ``OSError``) if binding fails."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the server is already started")
            self._stopping = False
            self._log_filter = rate_limit_loggers(RATE_LIMITED_LOGGERS)
            self._encoder = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="facetrack-jpeg")
            ready: concurrent.futures.Future[int] = concurrent.futures.Future()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=self._run, args=(loop, ready), name="facetrack-web", daemon=True)
            self._loop, self._thread = loop, thread
            thread.start()
            try:
                self._port = ready.result(timeout=timeout)
            except BaseException:
                self._thread = None
                thread.join(timeout)
                self._loop = None
                self._encoder.shutdown(wait=False)
                self._encoder = None
                raise
        _LOG.info("HTTP server listening on %s:%d", self.host, self._port)
        if self._ingress_port is not None:
            _LOG.info("ingress listener on %s:%d", self.ingress_host, self._ingress_port)

    def _run(self, loop: asyncio.AbstractEventLoop, ready: concurrent.futures.Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                port = loop.run_until_complete(self._setup())
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(port)
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _make_app(self, *, ingress: bool, guard: ConnectionGuard) -> web.Application:
        middlewares: list[Any] = [guard.middleware, _errors]
        if self.ui is not None:
            middlewares.append(self.ui.access_middleware(ingress=ingress))
        app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/cameras/{camera}/snapshot.jpg", self._snapshot)
        app.router.add_get("/api/cameras/{camera}/stream.mjpeg", self._stream, allow_head=False)
        app.router.add_get("/clips/{key:.+}", self._clip)
        app.router.add_get("/alerts/{alert_id:[0-9a-f]{32}}/snapshot.jpg", self._alert_snapshot)
        for routes in self.routes:
            routes.add_routes(app)
        if self.ui is not None:
            self.ui.add_routes(app)
        return app

    async def _serve(self, name: str, host: str, port: int, listeners: int) -> tuple[web.AppRunner, int]:
        guard = ConnectionGuard(name, self.limits, max_connections_for(self.limits, listeners))
        app = self._make_app(ingress=name == "ingress", guard=guard)
        # handler_cancellation: a viewer that disconnects cancels its stream handler at once.
        # The access-log hook writes no log: it tells the guard that a response is complete.
        runner = web.AppRunner(
            app, access_log=logging.getLogger("aiohttp.access"), access_log_class=guard.access_log_class,
            handler_cancellation=True, shutdown_timeout=2.0, **guard.handler_args(),
        )  # fmt: skip
        await runner.setup()
        assert runner.server is not None
        try:
            # aiohttp's Server is the protocol factory (as TCPSite uses it), wrapped by the guard.
            server = await asyncio.get_running_loop().create_server(
                guard.protocol_factory(runner.server), host, port, backlog=guard.backlog
            )
        except BaseException:
            await runner.cleanup()
            raise
        log_filter = self._log_filter
        watch = asyncio.create_task(guard.watch(log_filter.flush if log_filter is not None else None))
        self._listeners.append((server, watch))
        self.guards[name] = guard
        _LOG.info(
            "HTTP %s listener: at most %d connections (RLIMIT_NOFILE %d); timeouts: header %g s, "
            "keep-alive %g s, body %g s",
            name, guard.max_connections, nofile_limit(), self.limits.header_timeout_s,
            self.limits.keepalive_timeout_s, self.limits.body_timeout_s,
        )  # fmt: skip
        return runner, int(server.sockets[0].getsockname()[1]) if server.sockets else port

    async def _setup(self) -> int:
        ingress = self._requested_ingress_port is not None and self.ui is not None
        listeners = 2 if ingress else 1
        try:
            self._runner, port = await self._serve("main", self.host, self._requested_port, listeners)
            if ingress:
                assert self._requested_ingress_port is not None
                self._ingress_runner, self._ingress_port = await self._serve(
                    "ingress", self.ingress_host, self._requested_ingress_port, listeners
                )
        except BaseException:
            await self._close_listeners()
            raise
        return port

    async def _close_listeners(self) -> None:
        """Stop accepting and watching, then close every connection (aiohttp's runner cleanup)."""
        for server, watch in self._listeners:
            server.close()
            watch.cancel()
        self._listeners.clear()
        for runner in (self._runner, self._ingress_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._ingress_runner = None

    def stop(self, timeout: float = 10.0) -> None:
        """Close open streams, stop listening and end the thread. Idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            self._stopping = True
            self.hub.wake_all()
            if not loop.is_closed():
                try:
                    asyncio.run_coroutine_threadsafe(self._close_listeners(), loop).result(timeout)
                except (concurrent.futures.TimeoutError, RuntimeError):
                    _LOG.warning("HTTP server did not shut down cleanly")
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if self._encoder is not None:
                self._encoder.shutdown(wait=False, cancel_futures=True)
            self._runner = self._ingress_runner = None
            self._thread = self._loop = self._encoder = None
            self._port = self._ingress_port = None

    def __enter__(self) -> WebServer:
        """``with WebServer(...) as server:`` starts and stops it."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    # -- URLs -------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """``base_url``, or ``http://host:port``."""
        if self.base_url:
            return self.base_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def sign_clip_url(self, key: str, expires_in: int) -> str:
        """Absolute URL of clip file ``key`` (``<camera>/<clip id>/<file>``), valid ``expires_in`` s."""
        if not CLIP_KEY_RE.match(key):
            raise ValueError("invalid clip key")
        if expires_in <= 0:
            raise ValueError("expires_in must be positive")
        path = f"/clips/{key}"
        return f"{self.origin}{path}?{self.signer.sign(path, int(time.time()) + int(expires_in))}"

    def sign_alert_snapshot_url(self, alert_id: str, expires_in: int) -> str:
        """Absolute URL of the snapshot of alert ``alert_id`` (32 hex digits), valid ``expires_in`` s."""
        if not valid_alert_id(alert_id):
            raise ValueError("invalid alert id")
        if expires_in <= 0:
            raise ValueError("expires_in must be positive")
        path = f"/alerts/{alert_id}/snapshot.jpg"
        return f"{self.origin}{path}?{self.signer.sign(path, int(time.time()) + int(expires_in))}"

    # -- handlers ---------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return _plain(200, "ok")

    def _authorise(self, request: web.Request) -> None:
        if self._token is None or request.get(TRUSTED):
            return
        supplied = request.query.get("token")
        if supplied is None:
            auth = request.headers.get("Authorization", "")
            scheme, _, credentials = auth.partition(" ")
            if scheme.lower() == "bearer":
                supplied = credentials.strip()
        if supplied is None or not hmac.compare_digest(supplied.encode(), self._token):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="facetrack"'})

    def _camera(self, request: web.Request) -> str:
        self._authorise(request)
        camera = request.match_info["camera"]
        if not self.hub.has_camera(camera):
            raise web.HTTPNotFound()
        return camera

    async def _encode(self, camera: str) -> EncodedFrame | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._encoder, self.hub.latest_jpeg, camera, self._max_age)

    async def _snapshot(self, request: web.Request) -> web.Response:
        camera = self._camera(request)
        if self.hub.seq(camera) == 0:
            raise web.HTTPNotFound()
        frame = await self._encode(camera)
        if frame is None:
            raise web.HTTPServiceUnavailable()
        return web.Response(
            body=frame.jpeg,
            content_type="image/jpeg",
            headers={"Cache-Control": "no-store", "X-Frame-Seq": str(frame.seq)},
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        camera = self._camera(request)
        min_interval = 0.0
        if "fps" in request.query:
            try:
                fps = float(request.query["fps"])
            except ValueError:
                raise web.HTTPBadRequest() from None
            if not (math.isfinite(fps) and MIN_STREAM_FPS <= fps <= MAX_STREAM_FPS):
                raise web.HTTPBadRequest()
            min_interval = 1.0 / fps
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store",
                "Pragma": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )
        await response.prepare(request)
        sent_seq = 0
        with self.hub.watching(camera):
            try:
                while not self._stopping:
                    if await self.hub.wait_new_async(camera, sent_seq, _WAIT_SLICE_S) is None:
                        transport = request.transport
                        if transport is None or transport.is_closing() or not self.hub.has_camera(camera):
                            break
                        continue
                    frame = await self._encode(camera)
                    if frame is None or frame.seq <= sent_seq:
                        # Stale or failed: wait for the next frame rather than spin.
                        sent_seq = max(sent_seq, self.hub.seq(camera))
                        continue
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
                        f"X-Frame-Seq: {frame.seq}\r\n\r\n"
                    ).encode("ascii")
                    await response.write(head + frame.jpeg + b"\r\n")
                    sent_seq = frame.seq
                    if min_interval:
                        await asyncio.sleep(min_interval)  # at most `fps` parts per second
            except ConnectionResetError:
                pass  # the viewer went away
        return response

    async def _alert_snapshot(self, request: web.Request) -> web.Response:
        if not self.signer.verify(request.path, request.query.get("exp"), request.query.get("sig")):
            raise web.HTTPForbidden()
        jpeg = None
        if self.alert_snapshot is not None:
            loop = asyncio.get_running_loop()  # may read a file: off the event loop
            jpeg = await loop.run_in_executor(self._encoder, self.alert_snapshot, request.match_info["alert_id"])
        if jpeg is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=jpeg,
            content_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    async def _clip(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if self.clip_root is None or not CLIP_KEY_RE.match(key):
            raise web.HTTPNotFound()
        if not self.signer.verify(f"/clips/{key}", request.query.get("exp"), request.query.get("sig")):
            raise web.HTTPForbidden()
        path = (self.clip_root / key).resolve()
        if not path.is_relative_to(self.clip_root):
            raise web.HTTPNotFound()
        if not path.is_file():
            # Lost for good (the engine was killed while recording it): say so, not 404 forever.
            reason = lost_reason(self.clip_root, key)
            if reason is None:
                raise web.HTTPNotFound()
            return web.json_response(
                {"error": "clip_lost", "message": reason}, status=410, headers={"Cache-Control": "no-store"}
            )
        return web.FileResponse(
            path,
            headers={
                "Content-Type": _CONTENT_TYPES[Path(key).suffix],
                "Cache-Control": "private, max-age=300",
                "X-Content-Type-Options": "nosniff",
            },
        )
