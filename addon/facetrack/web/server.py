"""The engine's HTTP server: live snapshots and MJPEG streams, signed clip downloads, a health check.

aiohttp runs its own event loop in a background thread (the engine is threaded), started by
:meth:`WebServer.start` and stopped by :meth:`WebServer.stop`. Routes:

- ``GET /api/cameras/{camera}/snapshot.jpg``: the camera's latest annotated frame.
- ``GET /api/cameras/{camera}/stream.mjpeg[?fps=N]``: ``multipart/x-mixed-replace`` MJPEG.
- ``GET /clips/<camera>/<clip id>/<file>?exp=&sig=``: a clip file, only with a valid signature.
- ``GET /healthz``: ``ok``.
- The face library page and its JSON API (:mod:`facetrack.web.api`), when attached as :attr:`WebServer.ui`.

With ``ingress_port``, a second listener serves the same routes for Home Assistant ingress: only
to the allowed peers (the Supervisor), without tokens (HA has authenticated the user).

Snapshot and stream require ``?token=`` or ``Authorization: Bearer`` when a ``stream_token`` is set.
Nothing else is served: no directory listings, and error bodies never carry paths or exceptions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from facetrack.web.frames import EncodedFrame, FrameHub
from facetrack.web.signing import UrlSigner

if TYPE_CHECKING:
    from facetrack.web.api import WebUi

_LOG = logging.getLogger(__name__)

CLIP_KEY_RE = re.compile(
    r"^[a-z0-9_]{1,32}/[A-Za-z0-9_\-]{1,64}/(original\.mp4|annotated\.mp4|annotations\.json|snapshot\.jpg)$"
)
_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".jpg": "image/jpeg",
}
BOUNDARY = "frame"
MAX_STREAM_FPS = 30.0
MIN_STREAM_FPS = 0.1
_WAIT_SLICE_S = 1.0  # how often an idle stream re-checks its connection and the stop flag

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Set on a request by the UI's access middleware when it came through ingress or carried the UI
#: token: such a request may also open snapshots and streams without the stream token.
TRUSTED = web.RequestKey("facetrack_trusted", bool)


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
    ) -> None:
        """Configure; nothing is bound before :meth:`start`.

        ``port`` 0 binds a free port (read it from :attr:`port` after ``start``). ``clip_root``:
        where ``<camera>/<clip id>/<file>`` live (None: no clips served). ``base_url``: the
        externally visible origin for signed URLs (default ``http://host:port``; set it when
        binding ``0.0.0.0``). ``stream_token``: required (``?token=`` or a Bearer header) for
        snapshots and streams. ``frame_max_age_s``: frames older than this are not served (a
        stalled camera gives 503 rather than an old picture); None: no limit. ``ingress_port``:
        also listen there (on ``ingress_host``, default ``host``) for Home Assistant ingress; it
        serves only when :attr:`ui` is attached (the UI decides which peers it accepts).
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
        #: The face library page and API (:class:`facetrack.web.api.WebUi`); attach before start.
        self.ui: WebUi | None = None
        #: ``inbox_crop(group_id, index)`` -> JPEG bytes or None: serves signed
        #: ``/inbox/<group_id>/<index>.jpg`` URLs (the unknown-face inbox); attach before start.
        self.inbox_crop: Callable[[str, int], bytes | None] | None = None

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

    def _make_app(self, *, ingress: bool) -> web.Application:
        middlewares: list[Any] = [_errors]
        if self.ui is not None:
            middlewares.append(self.ui.access_middleware(ingress=ingress))
        app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/cameras/{camera}/snapshot.jpg", self._snapshot)
        app.router.add_get("/api/cameras/{camera}/stream.mjpeg", self._stream, allow_head=False)
        app.router.add_get("/clips/{key:.+}", self._clip)
        app.router.add_get("/inbox/{group_id:[0-9a-f]{32}}/{index:[0-9]{1,3}}.jpg", self._inbox_crop)
        if self.ui is not None:
            self.ui.add_routes(app)
        return app

    async def _serve(self, app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
        # handler_cancellation: a viewer that disconnects cancels its stream handler at once.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        addresses = runner.addresses
        return runner, int(addresses[0][1]) if addresses else port

    async def _setup(self) -> int:
        self._runner, port = await self._serve(self._make_app(ingress=False), self.host, self._requested_port)
        if self._requested_ingress_port is not None and self.ui is not None:
            try:
                self._ingress_runner, self._ingress_port = await self._serve(
                    self._make_app(ingress=True), self.ingress_host, self._requested_ingress_port
                )
            except BaseException:
                await self._runner.cleanup()
                self._runner = None
                raise
        return port

    def stop(self, timeout: float = 10.0) -> None:
        """Close open streams, stop listening and end the thread. Idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            self._stopping = True
            self.hub.wake_all()
            for runner in (self._runner, self._ingress_runner):
                if runner is not None and not loop.is_closed():
                    try:
                        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout)
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

    async def _inbox_crop(self, request: web.Request) -> web.Response:
        group_id, index = request.match_info["group_id"], int(request.match_info["index"])
        if self.inbox_crop is None:
            raise web.HTTPNotFound()
        if not self.signer.verify(request.path, request.query.get("exp"), request.query.get("sig")):
            raise web.HTTPForbidden()
        try:
            jpeg = self.inbox_crop(group_id, index)
        except Exception:  # a group named or discarded since the URL was made
            jpeg = None
        if jpeg is None:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)

    async def _clip(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if self.clip_root is None or not CLIP_KEY_RE.match(key):
            raise web.HTTPNotFound()
        if not self.signer.verify(f"/clips/{key}", request.query.get("exp"), request.query.get("sig")):
            raise web.HTTPForbidden()
        path = (self.clip_root / key).resolve()
        if not path.is_relative_to(self.clip_root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            path,
            headers={
                "Content-Type": _CONTENT_TYPES[Path(key).suffix],
                "Cache-Control": "private, max-age=300",
                "X-Content-Type-Options": "nosniff",
            },
        )
