"""Names shared by the HTTP server (:mod:`facetrack.web.server`) and what it mounts (the page's API
:mod:`facetrack.web.api`, the inbox's routes :mod:`facetrack.inbox.web`), so that the server
imports none of them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

#: A clip file's key in the clip folder: ``<camera>/<clip id>/<file>``.
CLIP_KEY_RE = re.compile(
    r"^[a-z0-9_]{1,32}/[A-Za-z0-9_\-]{1,64}/(original\.mp4|annotated\.mp4|annotations\.json|snapshot\.jpg)$"
)
#: Set on a request by the UI's access middleware when it came through ingress or carried the UI
#: token: such a request may also open snapshots and streams without the stream token.
TRUSTED = web.RequestKey("facetrack_trusted", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
