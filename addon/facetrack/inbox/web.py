"""The inbox on the engine's HTTP server.

- :class:`InboxCropRoute`: ``GET /inbox/<group_id>/<index>.jpg?exp=&sig=``, the signed crop URLs
  of the MQTT payloads (``crop_url``), on every listener.
- :class:`InboxPage`: the page's API (mounted by :class:`facetrack.web.api.WebUi`):

  =====================================================  ==============================================
  ``GET /api/inbox``                                     unknown-face groups (``inbox_list``)
  ``GET /api/inbox/<group>/<index>.jpg``                 a group's crop (``inbox_crop``)
  ``POST /api/inbox/<group>/<action>``                   ``name`` / ``merge`` / ``discard`` / ``ignore`` /
                                                         ``unignore`` (``inbox_*`` commands)
  =====================================================  ==============================================

  Every one goes through the command of the same name, like MQTT clients.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from facetrack.verbs import CommandError
from facetrack.web.replies import error_reply, hex_id, jpeg_reply, json_body, json_reply
from facetrack.web.signing import UrlSigner

#: Runs a command for the page: ``await command(verb, data)`` -> its result; raises CommandError.
Command = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class InboxCropRoute:
    """Serves the signed inbox crop URLs.

    Args:
        signer: checks the URLs' signatures (the one that signed them).
        crop: ``crop(group_id, index)`` -> JPEG bytes (:meth:`facetrack.inbox.UnknownInbox.crop_jpeg`);
            any exception (a group named or discarded since) is a 404.
    """

    def __init__(self, signer: UrlSigner, crop: Callable[[str, int], bytes | None]) -> None:
        self.signer = signer
        self.crop = crop

    def add_routes(self, app: web.Application) -> None:
        """Register ``/inbox/<group_id>/<index>.jpg``."""
        app.router.add_get("/inbox/{group_id:[0-9a-f]{32}}/{index:[0-9]{1,3}}.jpg", self._crop)

    async def _crop(self, request: web.Request) -> web.Response:
        group_id, index = request.match_info["group_id"], int(request.match_info["index"])
        if not self.signer.verify(request.path, request.query.get("exp"), request.query.get("sig")):
            raise web.HTTPForbidden()
        try:
            jpeg = self.crop(group_id, index)
        except Exception:  # a group named or discarded since the URL was made
            jpeg = None
        if jpeg is None:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)


class InboxPage:
    """The inbox's part of the page's API.

    Args:
        enabled: the engine has the inbox (when not, ``/api/inbox`` says ``available: false``).
        command: runs a command for the page.
    """

    def __init__(self, enabled: bool, command: Command) -> None:
        self.enabled = enabled
        self._command = command

    def add_routes(self, app: web.Application) -> None:
        """Register the routes (names start with ``ui-``: the page's access rules apply)."""
        r = app.router
        r.add_get("/api/inbox", self._list, name="ui-inbox")
        r.add_get("/api/inbox/{gid}/{index:[0-9]{1,3}}.jpg", self._crop, name="ui-inbox-crop")
        r.add_post("/api/inbox/{gid}/{action}", self._action, name="ui-inbox-action")

    async def _list(self, request: web.Request) -> web.Response:
        if not self.enabled:
            return json_reply({"available": False, "groups": []})
        try:
            result = await self._command("inbox_list", {})
        except CommandError as err:
            return error_reply(err)
        groups = []
        for g in result.get("groups", []):
            gid = g["group_id"]
            n = int(g.get("crops") or 0)
            groups.append({**g, "crop_url": None, "crop_urls": [f"api/inbox/{gid}/{i}.jpg" for i in range(n)]})
        return json_reply({**result, "groups": groups, "available": True})

    async def _crop(self, request: web.Request) -> web.Response:
        gid = hex_id(request, "gid")
        try:
            result = await self._command("inbox_crop", {"group_id": gid, "index": int(request.match_info["index"])})
            jpeg = base64.b64decode(result["jpeg_base64"], validate=True)
        except CommandError as err:
            return error_reply(err)
        except (KeyError, ValueError):
            return error_reply(CommandError("internal", "bad crop"))
        return jpeg_reply(jpeg, "private, max-age=300")

    async def _action(self, request: web.Request) -> web.Response:
        gid = hex_id(request, "gid")
        action = request.match_info["action"]
        data: dict[str, Any] = {"group_id": gid}
        if action == "name":
            body = await json_body(request)
            data["name"] = body.get("name")
            if body.get("mode") is not None:
                data["mode"] = body["mode"]
        elif action == "merge":
            data["into_group_id"] = (await json_body(request)).get("into_group_id")
        elif action not in ("discard", "ignore", "unignore"):
            raise web.HTTPNotFound()
        try:
            result = await self._command(f"inbox_{action}", data)
        except CommandError as err:
            return error_reply(err)
        return json_reply(result)
