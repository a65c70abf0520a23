"""The face library page: static UI files and the JSON API behind it, on the engine's HTTP server.

The page (``web/ui/``: plain HTML, CSS and JavaScript, no framework) uses only relative URLs, so
it works at ``/`` of the engine's port and under any Home Assistant ingress prefix
(``/api/hassio_ingress/<token>/``). Routes, relative to the listener's root:

=====================================================  ==============================================
``GET /``                                              the page
``GET /ui/<file>``                                     its CSS, JavaScript and icon
``GET /api/info``                                      version, cameras, features (``inbox``)
``GET /api/persons``                                   persons: embeddings, last seen, thumbnail URL
``GET /api/persons/<id>``                              one person with every embedding (crop URLs)
``GET /api/persons/<id>/thumbnail.jpg``                the person's first face crop
``GET /api/persons/<id>/embeddings/<eid>.jpg``         one embedding's face crop
``DELETE /api/persons/<id>/embeddings/<eid>``          remove a wrong embedding (``forget_embedding``)
``POST /api/persons/<id>/rename`` ``{"name"}``         ``rename``
``DELETE /api/persons/<id>``                           ``forget``
``POST /api/enroll`` (multipart ``name``, ``photo``*)  ``enroll`` per photo, a result for each
``GET /api/cameras``                                   state, frames/s, faces, stream URLs
``GET /api/alerts``                                    recent alerts: snapshot and clip URLs
``GET /api/alerts/<alert id>/snapshot.jpg``            an alert's face snapshot
``/api/inbox...``                                      the unknown-face inbox (:mod:`facetrack.inbox.web`)
=====================================================  ==============================================

:class:`WebUi` is built from what it needs (the library, a command caller, camera states,
sightings, the alert history, clip links), never the service object.

Every change goes through :meth:`facetrack.commands.CommandHandler.call`: the same validation,
queue, thread and republishing as the MQTT command of the same name (``docs/mqtt.md``), so the
page and MQTT clients behave identically. Handlers only translate HTTP to commands and back.

Access (see :meth:`WebUi.access_middleware`): on the ingress listener, only the allowed peers (the
Supervisor, which proxies HA's authenticated users) and no login; on the main port, the page and
API need the UI token (``http.ui_token``; none configured: they are not served there). Changes
also need the ``X-Requested-With: facetrack`` header, which a cross-site form cannot send.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web

from facetrack import __version__
from facetrack.commands import SCHEMAS
from facetrack.comms.payloads import pose_coverage
from facetrack.images import release_memory
from facetrack.inbox.web import InboxPage
from facetrack.library import FaceLibrary
from facetrack.library.names import MAX_NAME_LENGTH, MAX_RAW_LENGTH, InvalidNameError, clean_name
from facetrack.record.snapshots import AlertSnapshots
from facetrack.verbs import CommandError
from facetrack.web.common import CLIP_KEY_RE, TRUSTED, Handler, Middleware
from facetrack.web.replies import error_reply, hex_id, jpeg_reply, json_body, json_reply
from facetrack.web.signing import UrlSigner

if TYPE_CHECKING:
    from facetrack.library.store import EmbeddingRecord

#: Photos accepted in one upload, the size of one, and of all of them together. Uploads are
#: streamed to files under ``<state dir>/uploads/`` (never held in memory), removed once enrolled.
MAX_PHOTOS = 20
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
#: Upload folders older than this, left by an engine that was killed, are removed at start (s).
STALE_UPLOAD_SECONDS = 3600
_UPLOAD_CHUNK = 256 * 1024
#: Alerts kept for the page (in memory, with their face snapshots: about 20 kB each).
ALERT_HISTORY = 50
#: How long the clip URLs handed to the page stay valid (s).
CLIP_URL_TTL = 3600
COOKIE = "facetrack_ui"
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "facetrack"
#: How long a page request waits for its command (s).
COMMAND_TIMEOUT = 120.0
_UI_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_CSP = (
    "default-src 'self'; img-src 'self' data: blob: http: https:; media-src 'self' blob: http: https:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'"
)


@dataclass(frozen=True, slots=True)
class RecentAlert:
    """An alert as published, its face snapshot (JPEG) and its clip's key in local storage."""

    payload: dict[str, Any]
    snapshot: bytes | None
    clip_key: str | None


class AlertHistory:
    """The last :data:`ALERT_HISTORY` alerts, for the page and the alerts' snapshot URLs
    (thread-safe; newest last)."""

    def __init__(self, local_clips: bool, maxlen: int = ALERT_HISTORY, snapshots: AlertSnapshots | None = None) -> None:
        """``local_clips``: clips are in the folder this server serves (their keys are kept).
        ``snapshots``: where the snapshots of older alerts (and those from before a restart) are
        read from."""
        self._alerts: deque[RecentAlert] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._local = local_clips
        self._snapshots = snapshots

    def add(self, payload: Mapping[str, Any], snapshot: bytes | None) -> None:
        """Keep an alert (its ``alert`` payload, ``docs/schemas/alert.json``) and its snapshot."""
        key = None
        url = payload.get("clip_url")
        if self._local and isinstance(url, str):
            # A local clip URL is <origin>/clips/<key>?exp=&sig=: keep the key to sign it afresh.
            _, _, tail = urlsplit(url).path.rpartition("/clips/")
            key = tail if CLIP_KEY_RE.match(tail) else None
        with self._lock:
            self._alerts.append(RecentAlert(dict(payload), snapshot, key))

    def recent(self) -> list[RecentAlert]:
        """The kept alerts, newest first."""
        with self._lock:
            return list(reversed(self._alerts))

    def get(self, alert_id: str) -> RecentAlert | None:
        """The kept alert with ``alert_id``, or None."""
        with self._lock:
            return next((a for a in self._alerts if a.payload.get("alert_id") == alert_id), None)

    def snapshot(self, alert_id: str) -> bytes | None:
        """The face snapshot (JPEG) of alert ``alert_id``: from memory for the recent alerts, else
        from the snapshot files; None if neither has it."""
        alert = self.get(alert_id)
        if alert is not None and alert.snapshot is not None:
            return alert.snapshot
        return self._snapshots.get(alert_id) if self._snapshots is not None else None


class CameraView(Protocol):
    """A camera as the page shows it: name, state (``online``/``offline``/``starting``), frames
    per second, faces in view, last error (:class:`facetrack.camera.runner.CameraStatus`)."""

    name: str
    state: str
    fps: float
    faces: int
    error: str | None


class Sighting(Protocol):
    """When (epoch s) and where a person was last recognised."""

    @property
    def last_seen(self) -> float:
        """Epoch seconds."""
        ...

    @property
    def last_camera(self) -> str:
        """The camera's name."""
        ...


class CommandCaller(Protocol):
    """Runs a command and returns its result (:meth:`facetrack.commands.CommandHandler.call`)."""

    def __call__(self, verb: str, data: dict[str, Any], timeout: float = ...) -> dict[str, Any]:
        """Raises :class:`~facetrack.verbs.CommandError`."""
        ...


@dataclass(frozen=True, slots=True)
class ClipLinks:
    """Relative signed URLs of the clip files this server serves.

    Attributes:
        root: the clip folder (resolved; None: no local clips).
        signer: signs ``/clips/<key>`` (the server's).
    """

    root: Path | None
    signer: UrlSigner

    def __call__(self, key: str) -> str | None:
        """``clips/<key>?exp=&sig=`` valid :data:`CLIP_URL_TTL` s, or None when the file is not
        there (relative: the same listener, ingress or main port, serves ``/clips/``)."""
        if self.root is None or not (self.root / key).is_file():
            return None
        path = f"/clips/{key}"
        return path[1:] + "?" + self.signer.sign(path, int(time.time()) + CLIP_URL_TTL)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def photo_outcome(err: CommandError) -> str:
    """The per-photo result of a failed ``enroll``: ``no_face``, ``several_faces``,
    ``not_an_image``, ``too_large`` (over the pixel limit), ``unusable`` (too small, blurred,
    turned away...) or ``error``.

    Image errors carry their code (:func:`facetrack.images.decode_image`); face errors
    (:func:`facetrack.recognizer.pick_enrolment_face`) say which in their message.
    """
    text = str(err)
    if err.code in ("not_an_image", "too_large"):
        return err.code
    if err.code != "bad_request":
        return "error"
    if "no face" in text:
        return "no_face"
    if "faces of similar size" in text:
        return "several_faces"
    return "unusable"


class WebUi:
    """The page and its API.

    Args:
        library: the face library (read directly; changes go through ``call``).
        call: runs a command (the same path as MQTT commands).
        cameras: the cameras' states now.
        sightings: ``sightings(person_id)``: when and where a person was last recognised, or None.
        alerts: the recent alerts.
        clip_url: ``clip_url(key)``: a relative signed URL of a local clip file, or None.
        inbox: the engine has the unknown-face inbox.
        upload_root: where uploaded photos wait until they are enrolled.
        ingress_allow: peer addresses the ingress listener serves.
        ui_token: token for the page on the main port; None: not served there.
    """

    def __init__(
        self,
        *,
        library: FaceLibrary,
        call: CommandCaller,
        cameras: Callable[[], Sequence[CameraView]],
        sightings: Callable[[str], Sighting | None],
        alerts: AlertHistory,
        clip_url: Callable[[str], str | None],
        inbox: bool,
        upload_root: Path,
        ingress_allow: tuple[str, ...],
        ui_token: str | None,
    ) -> None:
        if ui_token is not None and len(ui_token) < 16:
            raise ValueError("ui_token must have at least 16 characters")
        self.library = library
        self._call = call
        self._camera_states = cameras
        self._sightings = sightings
        self.alerts = alerts
        self._clip_url = clip_url
        self.inbox = InboxPage(inbox, self._command)
        self.ingress_allow = frozenset(ingress_allow)
        self._token = ui_token.encode() if ui_token else None
        # Its own threads for commands (which may wait behind an enrolment) and library reads, so
        # aiohttp's default executor (file responses: clips) is never starved by them.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="facetrack-webui")
        #: Uploaded photos wait here (one folder per upload) until they are enrolled.
        self.upload_root = upload_root
        self._remove_stale_uploads()
        root = resources.files("facetrack.web") / "ui"
        self._files: dict[str, tuple[bytes, str, str]] = {}
        for name, ctype in _UI_FILES.items():
            body = (root / name).read_bytes()
            self._files[name] = (body, ctype, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')

    # ---- access ----------------------------------------------------------------------------

    def _token_ok(self, supplied: str | None) -> bool:
        return (
            self._token is not None
            and supplied is not None
            and hmac.compare_digest(supplied.encode("utf-8", "replace"), self._token)
        )

    def access_middleware(self, *, ingress: bool) -> Middleware:
        """Who may use the page and API on a listener.

        Ingress listener: peers outside :attr:`ingress_allow` get 403 on every route; the others
        are trusted (no token, streams included). Main port: page and API routes need the UI
        token as a Bearer header or the ``facetrack_ui`` cookie, which ``/?token=<ui_token>``
        sets (HttpOnly, SameSite=Strict) before redirecting to ``./``; 401 without it, 404 when no
        UI token is configured. Other routes keep their own rules (stream token, signed URLs).
        Changes (not GET/HEAD) on UI routes need ``X-Requested-With: facetrack`` (403 otherwise).
        """

        @web.middleware
        async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
            name = request.match_info.route.name or ""
            is_ui = name.startswith("ui-")
            if ingress:
                if request.remote not in self.ingress_allow:
                    raise web.HTTPForbidden()
                request[TRUSTED] = True
            else:
                auth = request.headers.get("Authorization", "")
                scheme, _, bearer = auth.partition(" ")
                supplied = bearer.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE)
                if self._token_ok(supplied):
                    request[TRUSTED] = True
                elif is_ui:
                    if self._token is None:
                        raise web.HTTPNotFound()
                    if name == "ui-page" and self._token_ok(request.query.get("token")):
                        reply = web.Response(status=303, headers={"Location": "./", "Cache-Control": "no-store"})
                        reply.set_cookie(
                            COOKIE, request.query["token"], httponly=True, samesite="Strict", path="/",
                            max_age=30 * 86400,
                        )  # fmt: skip
                        return reply
                    raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="facetrack"'})
            if is_ui and request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
                raise web.HTTPForbidden()
            return await handler(request)

        return access

    # ---- routes ------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Register the page and the API (route names start with ``ui-``)."""
        r = app.router
        r.add_get("/", self._page, name="ui-page")
        r.add_get("/ui/{file}", self._static, name="ui-static")
        r.add_get("/api/info", self._info, name="ui-info")
        r.add_get("/api/persons", self._persons, name="ui-persons")
        r.add_get("/api/persons/{pid}", self._person, name="ui-person")
        r.add_delete("/api/persons/{pid}", self._forget, name="ui-forget")
        r.add_post("/api/persons/{pid}/rename", self._rename, name="ui-rename")
        r.add_get("/api/persons/{pid}/thumbnail.jpg", self._thumbnail, name="ui-thumbnail")
        r.add_get("/api/persons/{pid}/embeddings/{eid}.jpg", self._crop, name="ui-crop")
        r.add_delete("/api/persons/{pid}/embeddings/{eid}", self._forget_embedding, name="ui-forget-embedding")
        r.add_post("/api/enroll", self._enroll, name="ui-enroll")
        r.add_get("/api/cameras", self._cameras, name="ui-cameras")
        r.add_get("/api/alerts", self._alerts, name="ui-alerts")
        r.add_get("/api/alerts/{aid}/snapshot.jpg", self._alert_snapshot, name="ui-alert-snapshot")
        self.inbox.add_routes(app)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    async def _command(self, verb: str, data: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._run(self._call, verb, data, COMMAND_TIMEOUT)
        return result

    # ---- uploads -------------------------------------------------------------------------------

    def _remove_stale_uploads(self) -> None:
        """Remove upload folders left by a killed engine (another engine sharing the state folder
        may have fresh ones: only those older than :data:`STALE_UPLOAD_SECONDS` go)."""
        if not self.upload_root.is_dir():
            return
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        for entry in self.upload_root.glob("upload-*"):
            try:
                if entry.lstat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                continue

    def _upload_failed(self, err: OSError) -> web.Response:
        """The answer when an upload cannot be stored (a full disk, a read-only folder)."""
        return error_reply(CommandError("busy", f"cannot store the upload in {self.upload_root} ({err.strerror})"))

    def _new_upload_dir(self) -> Path:
        self.upload_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="upload-", dir=self.upload_root))

    @staticmethod
    def _drop_upload_dir(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        release_memory()  # the photos' buffers and their base64 went through malloc's arenas

    @staticmethod
    def _photo_base64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode("ascii")

    # ---- page ----------------------------------------------------------------------------------

    def _file(self, request: web.Request, name: str) -> web.Response:
        body, ctype, etag = self._files[name]
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if name == "index.html":
            headers |= {"Content-Security-Policy": _CSP, "Referrer-Policy": "same-origin"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers={**headers, "Content-Type": ctype})

    async def _page(self, request: web.Request) -> web.Response:
        return self._file(request, "index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in self._files or name == "index.html":
            raise web.HTTPNotFound()
        return self._file(request, name)

    async def _info(self, request: web.Request) -> web.Response:
        return json_reply(
            {
                "version": __version__,
                "cameras": [c.name for c in self._camera_states()],
                "features": {"inbox": self.inbox.enabled, "forget_embedding": "forget_embedding" in SCHEMAS},
                "ingress": bool(request.get(TRUSTED)) and request.headers.get("X-Ingress-Path") is not None,
            }
        )

    # ---- people ----------------------------------------------------------------------------

    def _person_json(self, person: Any) -> dict[str, Any]:
        seen = self._sightings(person.person_id)
        poses, missing = pose_coverage(person.poses, person.embedding_count)
        return {
            "person_id": person.person_id,
            "name": person.name,
            "embeddings": person.embedding_count,
            "created_at": _iso(person.created_at),
            "last_seen": _iso(seen.last_seen) if seen else None,
            "last_camera": seen.last_camera if seen else None,
            # The count in the URL: a removed or added embedding gives a new URL, not a stale picture.
            "thumbnail_url": f"api/persons/{person.person_id}/thumbnail.jpg?v={person.embedding_count}",
            # Head poses the gallery covers, as in the MQTT persons payload ("add a profile photo").
            "poses": poses,
            "missing_poses": missing,
        }

    def _require_person(self, request: web.Request) -> Any:
        person = self.library.person_by_id(hex_id(request, "pid"))
        if person is None:
            raise web.HTTPNotFound()
        return person

    async def _persons(self, request: web.Request) -> web.Response:
        return json_reply({"persons": [self._person_json(p) for p in self.library.persons()]})

    async def _embeddings(self, person: Any) -> list[EmbeddingRecord]:
        records: list[EmbeddingRecord] = await self._run(self.library.embeddings, person.name)
        return records

    async def _person(self, request: web.Request) -> web.Response:
        person = self._require_person(request)
        records = await self._embeddings(person)
        return json_reply(
            {
                **self._person_json(person),
                "embedding_list": [
                    {
                        "embedding_id": e.embedding_id,
                        "source": e.source,
                        "created_at": _iso(e.created_at),
                        "crop_url": f"api/persons/{person.person_id}/embeddings/{e.embedding_id}.jpg",
                    }
                    for e in records
                ],
            }
        )

    async def _thumbnail(self, request: web.Request) -> web.Response:
        person = self._require_person(request)
        records = [e for e in await self._embeddings(person) if e.crop_jpeg]
        if not records:
            raise web.HTTPNotFound()
        return jpeg_reply(records[0].crop_jpeg, "private, max-age=60")

    async def _crop(self, request: web.Request) -> web.Response:
        person = self._require_person(request)
        eid = hex_id(request, "eid")
        record = next((e for e in await self._embeddings(person) if e.embedding_id == eid), None)
        if record is None or not record.crop_jpeg:
            raise web.HTTPNotFound()
        return jpeg_reply(record.crop_jpeg, "private, max-age=86400, immutable")  # an embedding's crop never changes

    async def _forget_embedding(self, request: web.Request) -> web.Response:
        person = self._require_person(request)
        try:
            result = await self._command(
                "forget_embedding", {"embedding_id": hex_id(request, "eid"), "name": person.name}
            )
        except CommandError as err:
            return error_reply(err)
        return json_reply(result)

    async def _rename(self, request: web.Request) -> web.Response:
        person = self._require_person(request)
        body = await json_body(request)
        try:
            result = await self._command("rename", {"name": person.name, "new_name": body.get("name")})
        except CommandError as err:
            return error_reply(err)
        return json_reply(result)

    async def _forget(self, request: web.Request) -> web.Response:
        person = self._require_person(request)
        try:
            result = await self._command("forget", {"name": person.name})
        except CommandError as err:
            return error_reply(err)
        return json_reply(result)

    async def _save_photo(self, part: BodyPartReader, path: Path, room: int) -> tuple[int, bool]:
        """Stream one photo part to ``path``: ``(bytes read, kept)``. Not kept (the file removed,
        the rest of the part drained unread) past :data:`MAX_PHOTO_BYTES` or ``room`` bytes."""
        loop = asyncio.get_running_loop()
        limit = min(MAX_PHOTO_BYTES, room)
        size = 0
        with path.open("wb") as out:
            while chunk := await part.read_chunk(_UPLOAD_CHUNK):
                size += len(chunk)
                if size > limit:
                    break
                await loop.run_in_executor(None, out.write, chunk)
        if size <= limit:
            return size, True
        path.unlink(missing_ok=True)
        await part.release()
        return size, False

    async def _read_upload(self, request: web.Request, folder: Path) -> tuple[str, list[tuple[str, Path | None, str]]]:
        """The name and the photos, streamed to files in ``folder``: ``(file name, its file, or
        None when it was refused, and why)``. At most :data:`MAX_PHOTO_BYTES` a photo and
        :data:`MAX_UPLOAD_BYTES` in all are kept; photos over either are answered ``too_large``.

        Raises:
            CommandError: not multipart, no name, a name too long, no photo, too many photos.
        """
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError):  # aiohttp asserts on a non-multipart body
            raise CommandError("bad_request", "expected multipart/form-data") from None
        name = ""
        photos: list[tuple[str, Path | None, str]] = []
        total = 0
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise CommandError("bad_request", "nested multipart is not accepted")
            if part.name == "name":
                raw = await part.read(decode=True)
                if len(raw) > 4 * MAX_RAW_LENGTH:  # UTF-8: at most 4 bytes a character
                    raise CommandError("bad_request", f"a person's name is limited to {MAX_NAME_LENGTH} characters")
                try:
                    name = raw.decode("utf-8")  # as given: normalised (and said so) by the command
                except UnicodeDecodeError:
                    raise CommandError("bad_request", "the name is not valid UTF-8") from None
            elif part.name == "photo":
                if len(photos) >= MAX_PHOTOS:
                    raise CommandError("too_large", f"at most {MAX_PHOTOS} photos at a time")
                filename = (part.filename or f"photo {len(photos) + 1}")[:255]
                path = folder / f"{len(photos):02d}"
                size, kept = await self._save_photo(part, path, MAX_UPLOAD_BYTES - total)
                if kept:
                    total += size
                    photos.append((filename, path, ""))
                elif size > MAX_PHOTO_BYTES:
                    photos.append((filename, None, f"over {MAX_PHOTO_BYTES >> 20} MB, the limit for one photo"))
                else:
                    why = f"the photos are over {MAX_UPLOAD_BYTES >> 20} MB in all: send this one again separately"
                    photos.append((filename, None, why))
            else:
                await part.release()
        if not name:
            raise CommandError("bad_request", "give the person's name")
        try:
            clean_name(name)  # before any photo: one clear error, not one per photo
        except InvalidNameError as err:
            raise CommandError("bad_request", str(err)) from None
        if not photos:
            raise CommandError("bad_request", "give at least one photo")
        return name, photos

    async def _enroll(self, request: web.Request) -> web.Response:
        """Multipart ``name`` and up to :data:`MAX_PHOTOS` ``photo`` files; one ``enroll`` command
        per photo, in order. Returns ``{"person", "person_id", "results": [{"file", "status",
        "message"}]}``, ``status`` one of ``enrolled``, ``no_face``, ``several_faces``,
        ``not_an_image``, ``unusable``, ``too_large``, ``error``; and ``normalised_from`` (the
        name as given) when the name was normalised."""
        try:
            folder = await self._run(self._new_upload_dir)
        except OSError as err:
            return self._upload_failed(err)
        try:  # the folder goes whatever happens: refused, enrolled, the client gone (cancelled)
            try:
                name, photos = await self._read_upload(request, folder)
            except CommandError as err:
                return error_reply(err)
            except OSError as err:  # a full disk
                return self._upload_failed(err)
            results: list[dict[str, Any]] = []
            person: dict[str, Any] | None = None
            for filename, path, refused in photos:
                if path is None:
                    results.append({"file": filename, "status": "too_large", "message": refused})
                    continue
                try:  # one photo in memory at a time (its base64 for the command)
                    image = await self._run(self._photo_base64, path)
                    person = await self._command("enroll", {"name": name, "image_base64": image})
                except CommandError as err:
                    results.append({"file": filename, "status": photo_outcome(err), "message": str(err)})
                except OSError as err:  # the upload folder was removed under us
                    results.append({"file": filename, "status": "error", "message": f"upload lost ({err.strerror})"})
                else:
                    results.append({"file": filename, "status": "enrolled", "message": None})
                finally:
                    image = ""
                    path.unlink(missing_ok=True)
        finally:
            await self._run(self._drop_upload_dir, folder)
        return json_reply(
            {
                "person": person["person"] if person else None,
                "person_id": person["person_id"] if person else None,
                "results": results,
                # The name as typed, when it was normalised (e.g. a trailing no-break space).
                **({"normalised_from": person["normalised_from"]} if person and "normalised_from" in person else {}),
            }
        )

    # ---- cameras and alerts ----------------------------------------------------------------

    async def _cameras(self, request: web.Request) -> web.Response:
        cams = []
        for c in self._camera_states():
            name = c.name
            cams.append(
                {
                    "name": name,
                    "state": c.state,
                    "fps": round(c.fps, 1),
                    "faces": c.faces,
                    "error": c.error,
                    "stream_url": f"api/cameras/{name}/stream.mjpeg?fps=5",
                    "snapshot_url": f"api/cameras/{name}/snapshot.jpg",
                }
            )
        return json_reply({"cameras": cams})

    async def _alerts(self, request: web.Request) -> web.Response:
        out = []
        for a in self.alerts.recent():
            p = a.payload
            clip = annotated = None
            if a.clip_key is not None:
                clip = await self._run(self._clip_url, a.clip_key)
                annotated = await self._run(self._clip_url, str(Path(a.clip_key).with_name("annotated.mp4")))
            elif isinstance(p.get("clip_url"), str):
                clip = p["clip_url"]  # presigned (S3)
            out.append(
                {
                    **{k: p.get(k) for k in ("alert_id", "camera", "kind", "person", "person_id", "similarity")},
                    **{k: p.get(k) for k in ("track_id", "time", "ts")},
                    "snapshot_url": f"api/alerts/{p['alert_id']}/snapshot.jpg" if a.snapshot else None,
                    "clip_url": clip,
                    "annotated_clip_url": annotated,
                }
            )
        return json_reply({"alerts": out})

    async def _alert_snapshot(self, request: web.Request) -> web.Response:
        alert = self.alerts.get(request.match_info["aid"])
        if alert is None or alert.snapshot is None:
            raise web.HTTPNotFound()
        return jpeg_reply(alert.snapshot, "private, max-age=3600")
