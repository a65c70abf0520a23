"""The JSON API's replies and request parsing, shared by the page's handlers
(:mod:`facetrack.web.api`, :mod:`facetrack.inbox.web`)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from facetrack.commands import load_json
from facetrack.verbs import CommandError

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
#: HTTP status of each command error code (anything else: 500).
STATUS = {
    "bad_request": 400,
    "forbidden": 403,
    "not_found": 404,
    "too_large": 413,
    "unknown_command": 501,
    "busy": 503,
    "timeout": 504,
}


def json_reply(data: Any, status: int = 200) -> web.Response:
    """``data`` as JSON, never cached."""
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def error_reply(err: CommandError) -> web.Response:
    """``{"error": <code>, "message": <text>}`` with the code's HTTP status (:data:`STATUS`)."""
    return json_reply({"error": err.code, "message": err.message}, STATUS.get(err.code, 500))


def jpeg_reply(data: bytes, cache: str = "no-cache") -> web.Response:
    """A JPEG image with ``Cache-Control: cache``."""
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": cache})


def hex_id(request: web.Request, key: str) -> str:
    """The 32-hex-character id in the path's ``{key}`` (404 when it is not one)."""
    value = request.match_info[key]
    if not _HEX32.match(value):
        raise web.HTTPNotFound()
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (400 when it is not one; its size is bounded by the
    application's ``client_max_size``, its depth by :func:`facetrack.commands.load_json`)."""
    try:
        body = load_json(await request.read())
    except ValueError:
        raise web.HTTPBadRequest() from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest()
    return body
