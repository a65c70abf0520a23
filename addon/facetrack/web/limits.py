"""Connection limits and timeouts of the engine's HTTP listeners (slowloris, idle floods).

aiohttp bounds the request line and headers (``max_line_size``, ``max_field_size``), the body
(``client_max_size``) and the idle time between requests (``keepalive_timeout``, which recent
versions also apply to a new connection), but it has no time limit for reading a request head or
body and no connection limit: clients that connect and send nothing, or send a header byte by byte,
are held until the process runs out of file handles. :class:`ConnectionGuard` wraps aiohttp's
protocol factory (the documented ``web.Server`` protocol factory passed to ``loop.create_server``)
and adds, per listener:

- **a connection limit** (:func:`auto_max_connections`: a share of ``RLIMIT_NOFILE``). A new
  connection beyond it closes the oldest idle connection (one without a request in progress,
  those that never sent a request first); when every connection is busy it is answered ``503``
  and closed at once, before anything is read from it.
- **a header timeout**: a new connection must deliver its first request line and headers within
  ``header_timeout_s`` of connecting; on a kept-alive connection, within ``header_timeout_s`` of
  the next request's first byte.
- **a keep-alive timeout**: an idle connection between requests is closed after
  ``keepalive_timeout_s`` (also passed to aiohttp as ``keepalive_timeout``).
- **a body timeout**: while a request body is incomplete, a connection that receives nothing for
  ``body_timeout_s`` is closed; so is one whose client stops reading the response (writing stays
  paused for ``body_timeout_s``).

A request is "in progress" from the guard's middleware (the request head is parsed) until aiohttp
has written the response's end (its access-log hook, :class:`_RequestDone`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

_LOG = logging.getLogger(__name__)

#: All listeners together keep at most 1/FD_SHARE of the process's file handles for connections:
#: the rest is for cameras, the face library (LanceDB opens many files), clips, MQTT and logs.
FD_SHARE = 4
AUTO_MIN_CONNECTIONS = 8
#: Upper bound of the automatic limit per listener: a home engine has a few viewers and HA.
AUTO_MAX_CONNECTIONS = 512
_UNLIMITED_NOFILE = 1 << 20  # what RLIM_INFINITY counts as
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nbusy\n"
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Timeouts (seconds) and the connection limit of every HTTP listener.

    Attributes:
        header_timeout_s: a request line and headers must arrive within this time (of connecting,
            or of the next request's first byte on a kept-alive connection). nginx's
            ``client_header_timeout`` is 60 s; 10 s is plenty on a LAN and behind HA's proxy.
        keepalive_timeout_s: an idle kept-alive connection is closed after this time.
        body_timeout_s: a request body that stops arriving, or a response the client stops
            reading, for this long closes the connection.
        max_connections: per listener; None: :func:`auto_max_connections`.
    """

    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 60.0
    body_timeout_s: float = 60.0
    max_connections: int | None = None

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "keepalive_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")


def nofile_limit() -> int:
    """The process's soft ``RLIMIT_NOFILE`` (file handles); ``RLIM_INFINITY`` counts as 2**20."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED_NOFILE if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


def auto_max_connections(nofile: int, listeners: int) -> int:
    """Connections per listener: ``nofile / (FD_SHARE * listeners)``, within [8, 512].

    E.g. ``ulimit -n`` 1024 with two listeners (main and ingress): 128 each, 256 in all.
    """
    return max(AUTO_MIN_CONNECTIONS, min(AUTO_MAX_CONNECTIONS, nofile // (FD_SHARE * max(1, listeners))))


def max_connections_for(limits: HttpLimits, listeners: int, nofile: int | None = None) -> int:
    """The per-listener limit: ``limits.max_connections`` (capped at half the file handles, with a
    warning) or the automatic one."""
    nofile = nofile_limit() if nofile is None else nofile
    if limits.max_connections is None:
        return auto_max_connections(nofile, listeners)
    cap = max(AUTO_MIN_CONNECTIONS, nofile // (2 * max(1, listeners)))
    if limits.max_connections > cap:
        _LOG.warning(
            "http.max_connections %d is too close to the file-handle limit (%d): using %d",
            limits.max_connections, nofile, cap,
        )  # fmt: skip
        return cap
    return limits.max_connections


class _RequestDone(AbstractAccessLogger):
    """aiohttp's access-log hook, called once a response is fully written: ends the request.

    Subclassed per guard (:attr:`guard`); it writes no log.
    """

    guard: ConnectionGuard

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Mark the request's connection idle."""
        self.guard.request_done(request)


class _Connection(asyncio.Protocol):
    """One accepted connection: forwards to aiohttp's handler and keeps the guard's clocks."""

    def __init__(self, guard: ConnectionGuard, server: web.Server) -> None:
        self.guard = guard
        self._server = server
        self.inner: RequestHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        now = time.monotonic()
        self.opened = self.idle_since = self.last_rx = now
        self.head_started: float | None = None  # first byte of the next request (kept-alive)
        self.write_paused_since: float | None = None
        self.request: web.BaseRequest | None = None
        self.served = 0
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self.guard.admit(self):
            self.closed = True
            # Answered and closed before reading anything: costs one handle for one loop turn.
            with contextlib.suppress(Exception):
                transport.write(_REFUSAL)
            transport.close()
            return
        self.inner = self._server()
        self.guard.register(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        now = time.monotonic()
        self.last_rx = now
        if self.request is None and self.head_started is None:
            self.head_started = now
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            self.inner.eof_received()
        return None  # aiohttp's handler never keeps a half-closed connection open

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.guard.forget(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.write_paused_since = time.monotonic()
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused_since = None
        if self.inner is not None:
            self.inner.resume_writing()

    # -- the guard's view -------------------------------------------------------------------

    def begin(self, request: web.BaseRequest) -> None:
        self.request = request
        self.head_started = None
        self.last_rx = time.monotonic()  # the body's clock starts with the request

    def end(self) -> None:
        self.request = None
        self.served += 1
        self.idle_since = time.monotonic()
        self.head_started = None

    def expired(self, now: float, limits: HttpLimits) -> str | None:
        """Which timeout has passed (``header``, ``idle``, ``body``, ``send``), or None."""
        if self.request is None:
            if self.served == 0:
                return "header" if now - self.opened > limits.header_timeout_s else None
            if self.head_started is not None:
                return "header" if now - self.head_started > limits.header_timeout_s else None
            return "idle" if now - self.idle_since > limits.keepalive_timeout_s else None
        if self.write_paused_since is not None and now - self.write_paused_since > limits.body_timeout_s:
            return "send"
        if not self.request.content.is_eof() and now - self.last_rx > limits.body_timeout_s:
            return "body"
        return None

    def close(self, abort: bool) -> None:
        self.closed = True
        self.guard.forget(self)
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


class ConnectionGuard:
    """Limits and timeouts of one listener; see the module docstring.

    Use: ``runner = web.AppRunner(app, access_log_class=guard.access_log_class,
    access_log=..., **guard.handler_args())`` with :meth:`middleware` first in the app's
    middlewares, ``loop.create_server(guard.protocol_factory(runner.server), ...)``, and run
    :meth:`watch` as a task while the listener is open.
    """

    def __init__(self, name: str, limits: HttpLimits, max_connections: int) -> None:
        self.name = name
        self.limits = limits
        self.max_connections = max_connections
        self._conns: dict[RequestHandler, _Connection] = {}
        #: Connections closed, by reason: ``refused``, ``evicted``, ``header``, ``idle``,
        #: ``body``, ``send``.
        self.closed: dict[str, int] = {}
        self.peak = 0
        self.access_log_class: type[AbstractAccessLogger] = type(
            "_RequestDone_" + name, (_RequestDone,), {"guard": self}
        )

    @property
    def backlog(self) -> int:
        """The listen backlog: asyncio accepts up to this many sockets per event-loop turn before
        the guard sees them, so it bounds the handles a burst holds beyond the limit."""
        return max(8, min(128, self.max_connections // 4))

    @property
    def open_connections(self) -> int:
        """Connections admitted and not closed."""
        return len(self._conns)

    def handler_args(self) -> dict[str, Any]:
        """aiohttp ``RequestHandler`` options (documented ``AppRunner`` keywords)."""
        return {
            "keepalive_timeout": self.limits.keepalive_timeout_s,
            "max_line_size": 8190,  # aiohttp's defaults, stated: the head is bounded
            "max_field_size": 8190,
            "lingering_time": min(10.0, self.limits.body_timeout_s),
        }

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that wraps ``server``'s handlers."""
        return lambda: _Connection(self, server)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Marks the request in progress (its head is complete) on its connection."""
        conn = self._conns.get(request.protocol)
        if conn is not None:
            conn.begin(request)
        response: web.StreamResponse = await handler(request)
        return response

    def request_done(self, request: web.BaseRequest) -> None:
        """The response to ``request`` is written (or the client left)."""
        conn = self._conns.get(request.protocol)
        if conn is not None and conn.request in (None, request):
            conn.end()

    def admit(self, conn: _Connection) -> bool:
        """Whether a new connection may stay; may close the oldest idle one to make room."""
        if self.open_connections >= self.max_connections:
            idle = [c for c in self._conns.values() if c.request is None]
            if not idle:
                self._count("refused")
                _LOG.warning(
                    "HTTP %s listener: %d connections (the limit), all busy: refused one from %s",
                    self.name, self.max_connections, conn.peer,
                )  # fmt: skip
                return False
            victim = min(idle, key=lambda c: (c.served > 0, c.idle_since))
            self._count("evicted")
            _LOG.warning(
                "HTTP %s listener: %d connections (the limit): closed an idle one from %s for a new one from %s",
                self.name, self.max_connections, victim.peer, conn.peer,
            )  # fmt: skip
            victim.close(abort=True)
        return True

    def register(self, conn: _Connection) -> None:
        """``conn`` was admitted and has its aiohttp handler: count it."""
        assert conn.inner is not None
        self._conns[conn.inner] = conn
        self.peak = max(self.peak, len(self._conns))

    def forget(self, conn: _Connection) -> None:
        """Drop ``conn`` from the count (closed)."""
        if conn.inner is not None and self._conns.get(conn.inner) is conn:
            del self._conns[conn.inner]

    def sweep(self, now: float | None = None) -> int:
        """Close connections past a timeout; returns how many."""
        now = time.monotonic() if now is None else now
        expired = [(c, r) for c in list(self._conns.values()) if (r := c.expired(now, self.limits)) is not None]
        for conn, reason in expired:
            self._count(reason)
            if reason == "idle":
                _LOG.debug("HTTP %s listener: closed an idle kept-alive connection from %s", self.name, conn.peer)
            else:
                _LOG.info("HTTP %s listener: closed a connection from %s: %s timeout", self.name, conn.peer, reason)
            conn.close(abort=reason in ("body", "send"))
        return len(expired)

    async def watch(self, on_tick: Callable[[], object] | None = None) -> None:
        """Sweep until cancelled (a few times per shortest timeout, at most once a second)."""
        lim = self.limits
        tick = min(1.0, max(0.05, min(lim.header_timeout_s, lim.keepalive_timeout_s, lim.body_timeout_s) / 4))
        while True:
            await asyncio.sleep(tick)
            try:
                self.sweep()
                if on_tick is not None:
                    on_tick()
            except Exception:  # never end the watch: the limits would silently stop
                _LOG.exception("HTTP %s listener: connection sweep failed", self.name)

    def _count(self, reason: str) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1
