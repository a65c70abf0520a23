"""MQTT commands: ``<prefix>/command/<verb>`` with a ``request_id``, answered on
``<prefix>/response/<request_id>`` (``docs/mqtt.md``).

Verbs: ``enroll`` (base64 JPEG/PNG, or a path inside the media folder), ``enroll_track`` (best
crops of a live or recent track), ``forget``, ``rename``, ``list``; ``list_embeddings`` and
``forget_embedding`` (negative feedback: "this was not Bob"); more verbs are registered by their
feature (:meth:`CommandHandler.register`): the unknown-face inbox's ``inbox_*``
(:mod:`facetrack.inbox.commands`). Commands run one at a time on their own thread (enrolment
computes embeddings), never on the MQTT network thread.

Hostile or clumsy input (:func:`parse_command`, on the network thread, before anything else): the
size is checked first (:data:`MAX_PAYLOAD_BYTES`), then the JSON nesting depth
(:data:`MAX_DEPTH`, counted on the raw bytes, so a ``"[" * 50000`` never reaches the parser),
then the JSON itself (no NaN/Infinity), the ``request_id`` (matched in full: it becomes a topic
level, and ``"x\n"`` would make the broker drop the engine's connection) and every string (no
lone surrogates). Every error is answered on ``<prefix>/response/<request_id>`` when the id can be
read, even for a payload refused before parsing (see :func:`leading_request_id`), else on
``<prefix>/response/invalid``. Person names are checked by :mod:`facetrack.library.names`; an
answer whose name was normalised says so (``normalised_from``).
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import voluptuous as vol

from facetrack.comms.payloads import ResponsePayload, iso, response_payload
from facetrack.errors import FaceTrackError
from facetrack.images import decode_image, encode_jpeg, read_image
from facetrack.inbox.commands import INBOX_READ_ONLY, INBOX_SCHEMAS
from facetrack.library import FaceLibrary
from facetrack.library.diverse import MAX_AUTO_PER_POSE, automatic_room, select_diverse
from facetrack.library.names import clean_name
from facetrack.recognizer import FaceRecognizer, face_descriptors
from facetrack.track.face_tracker import BestCrop
from facetrack.verbs import FIND_NAME, HEX_ID, NEW_NAME, CommandError, Verb, normalised

_LOG = logging.getLogger(__name__)
#: Largest accepted command payload (a base64 photo of ~6 MB).
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
#: Deepest JSON nesting accepted (the body object is level 1; ``metadata`` nests below it).
MAX_DEPTH = 32
#: An oversized payload up to this size is still parsed (when it has at most :data:`MAX_DEPTH`
#: brackets in all), only to read its ``request_id`` and answer ``too_large`` on its own topic.
#: Beyond, only a leading ``{"request_id": "..."`` is read (:func:`leading_request_id`).
MAX_ID_SCAN_BYTES = 32 * 1024 * 1024
#: Commands waiting; beyond, new ones are refused with ``busy``.
MAX_PENDING = 32
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # always fullmatch(): "$" would accept "x\n"
_REQUEST_ID_RULE = "request_id must be a string of 1-64 characters A-Z a-z 0-9 _ -"
# The first key of the object, as the Home Assistant integration sends it; [A-Za-z0-9_-] has no
# quote or backslash, so what this matches is exactly the string json.loads would read.
_LEADING_ID = re.compile(
    rb'(?:\xef\xbb\xbf)?[ \t\r\n]*\{[ \t\r\n]*"request_id"[ \t\r\n]*:[ \t\r\n]*"([A-Za-z0-9_\-]{1,64})"'
)
_LEADING_ID_BYTES = 512
_SURROGATE = re.compile("[\ud800-\udfff]")
_DEPTH_CHUNK = 1 << 20


def _media_path(v: Any) -> str:
    if not isinstance(v, str) or not 1 <= len(v) <= 1024:
        raise vol.Invalid("expected a path of 1-1024 characters")
    bad = next((c for c in v if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:  # NUL would reach the OS as an "embedded null byte" error
        raise vol.Invalid(f"a path must not contain control characters (U+{ord(bad):04X})")
    return v


class RawCommandError(Exception):
    """A raw command refused before it is queued: ``code`` and the ``request_id`` to answer on
    (``"invalid"`` when it cannot be read)."""

    def __init__(self, code: str, message: str, request_id: str = "invalid") -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def leading_request_id(payload: bytes) -> str | None:
    """The ``request_id`` of a payload that is not parsed (too large, too deep, not JSON), if it is
    the object's first key and valid; read from the first 512 bytes only."""
    m = _LEADING_ID.match(payload, 0, _LEADING_ID_BYTES)
    return m.group(1).decode("ascii") if m else None


def _openers(payload: bytes) -> int:
    return payload.count(b"[") + payload.count(b"{")


def json_depth_exceeds(payload: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether raw JSON nests deeper than ``limit`` arrays/objects, without parsing it.

    Exact for valid JSON (and for the valid prefix of invalid JSON, as far as a parser would get):
    escape pairs are removed first (``\\\\`` then ``\\"``, left to right, as a parser reads
    them), then a bracket is inside a string when an odd number of quotes precede it. Linear time,
    vectorised, in 1 MB chunks (memory bounded); a payload with at most ``limit`` brackets in all is
    not scanned. (A regular expression for strings is quadratic on ``"\\"\\"\\"…`` without a
    closing quote.)
    """
    if _openers(payload) <= limit:
        return False
    cleaned = np.frombuffer(payload.replace(b"\\\\", b"").replace(b'\\"', b""), np.uint8)
    depth = quotes_before = 0
    for start in range(0, cleaned.size, _DEPTH_CHUNK):
        c = cleaned[start : start + _DEPTH_CHUNK]
        quotes = np.flatnonzero(c == 0x22)
        opens = (c == 0x5B) | (c == 0x7B)
        brackets = np.flatnonzero(opens | (c == 0x5D) | (c == 0x7D))
        outside = brackets[(np.searchsorted(quotes, brackets) + quotes_before) % 2 == 0]
        if outside.size:
            running = np.cumsum(np.where(opens[outside], 1, -1)) + depth
            if int(running.max()) > limit:
                return True
            depth = int(running[-1])
        quotes_before += quotes.size
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(payload: bytes) -> Any:
    try:
        return json.loads(payload, parse_constant=_no_constant)
    except RecursionError:  # unreachable after json_depth_exceeds; never let it escape
        raise ValueError("nested too deeply") from None


def load_json(payload: bytes) -> Any:
    """Parse JSON whose size the caller has bounded: depth checked first (:data:`MAX_DEPTH`), no
    NaN/Infinity (for the web page's request bodies).

    Raises:
        ValueError: too deep, not JSON, not UTF-8, an integer over 4300 digits.
    """
    if json_depth_exceeds(payload):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return _loads(payload)


def _check_strings(body: Any) -> None:
    """Refuse lone surrogates (``"\\ud800"`` escapes) anywhere: not Unicode, and they would fail
    later when the answer or the library is written."""
    stack: list[tuple[Any, str]] = [(body, "body")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            bad = _SURROGATE.search(value)
            if bad is not None:
                raise ValueError(f"{where} holds a lone surrogate (U+{ord(bad.group()):04X}): not valid Unicode")
        elif isinstance(value, dict):
            for k, v in value.items():
                stack.append((k, f"a key of {where}"))
                stack.append((v, repr(k) if where == "body" else f"{where}.{k!r}"))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def _oversized_request_id(payload: bytes) -> str:
    rid = leading_request_id(payload)
    if rid is not None:
        return rid
    if len(payload) > MAX_ID_SCAN_BYTES or _openers(payload) > MAX_DEPTH:
        return "invalid"
    try:
        body = _loads(payload)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, integers over 4300 digits
        return "invalid"
    rid = body.get("request_id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and _REQUEST_ID.fullmatch(rid) else "invalid"


def parse_command(payload: bytes) -> tuple[str, dict[str, Any]]:
    """Check and parse a raw command payload: size, nesting depth, JSON, ``request_id``, strings.

    Cheap enough for the MQTT network thread: the size is checked before anything else, the
    depth before parsing (at most :data:`MAX_PAYLOAD_BYTES` are scanned).

    Returns:
        ``(request_id, body)``; the body is not yet checked against the verb's schema.

    Raises:
        RawCommandError: ``too_large`` or ``bad_request``, with the ``request_id`` to answer on
            (``"invalid"`` when none can be read).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RawCommandError(
            "too_large",
            f"the payload is {len(payload)} bytes; commands are limited to {MAX_PAYLOAD_BYTES} bytes",
            _oversized_request_id(payload),
        )
    if json_depth_exceeds(payload):
        raise RawCommandError(
            "bad_request", f"JSON nested deeper than {MAX_DEPTH} levels", leading_request_id(payload) or "invalid"
        )
    try:
        body = _loads(payload)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, integers over 4300 digits
        detail = str(err).split("; use sys.")[0][:200]
        raise RawCommandError(
            "bad_request", f"payload is not JSON: {detail}", leading_request_id(payload) or "invalid"
        ) from None
    if not isinstance(body, dict):
        raise RawCommandError("bad_request", f"a command is a JSON object with a request_id, not {type(body).__name__}")
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        if "request_id" not in body:
            got = "missing"
        else:
            got = repr(request_id[:80]) if isinstance(request_id, str) else type(request_id).__name__
        raise RawCommandError("bad_request", f"{_REQUEST_ID_RULE} (got {got})")
    try:
        _check_strings(body)
    except ValueError as err:
        raise RawCommandError("bad_request", str(err), request_id) from None
    return request_id, body


class BestCrops(Protocol):
    """A camera as ``enroll_track`` sees it."""

    def best_crops(self, track_id: int) -> list[BestCrop]:
        """Best crops (with embeddings) of a live or recently ended track, best first."""
        ...


@dataclass(frozen=True, slots=True)
class LibraryVerbsContext:
    """What the face library verbs need.

    Attributes:
        library: the face library they change.
        recognizer: computes enrolment embeddings (``enroll``).
        media_dir: the folder ``image_path`` is relative to (None: ``image_path`` refused).
        camera: a camera by name (``enroll_track``), or None when there is none of that name.
        persons: the ``persons`` list of the retained ``<prefix>/persons`` payload (``list``).
    """

    library: FaceLibrary
    recognizer: FaceRecognizer
    media_dir: str | None
    camera: Callable[[str], BestCrops | None]
    persons: Callable[[], Sequence[Mapping[str, Any]]]


_LIBRARY_SCHEMAS: dict[str, vol.Schema] = {
    "enroll": vol.Schema(
        {
            vol.Required("request_id"): str,
            vol.Required("name"): NEW_NAME,
            vol.Exclusive("image_base64", "image"): vol.All(str, vol.Length(min=8)),
            vol.Exclusive("image_path", "image"): _media_path,
            vol.Optional("metadata"): dict,
            # only: a photo's only (or clearly dominant) face; largest: a camera snapshot's largest usable face
            vol.Optional("pick", default="only"): vol.In(["only", "largest"]),
        }
    ),
    "enroll_track": vol.Schema(
        {
            vol.Required("request_id"): str,
            vol.Required("camera"): str,
            vol.Required("track_id"): vol.All(int, vol.Range(min=1)),
            vol.Required("name"): NEW_NAME,
            vol.Optional("max_embeddings", default=3): vol.All(int, vol.Range(min=1, max=3)),
        }
    ),
    "forget": vol.Schema({vol.Required("request_id"): str, vol.Required("name"): FIND_NAME}),
    "rename": vol.Schema(
        {vol.Required("request_id"): str, vol.Required("name"): FIND_NAME, vol.Required("new_name"): NEW_NAME}
    ),
    "list": vol.Schema({vol.Required("request_id"): str}),
    "list_embeddings": vol.Schema(
        {
            vol.Required("request_id"): str,
            vol.Required("name"): FIND_NAME,
            vol.Optional("include_crops", default=False): bool,
        }
    ),
    "forget_embedding": vol.Schema(
        {vol.Required("request_id"): str, vol.Required("embedding_id"): HEX_ID, vol.Optional("name"): FIND_NAME}
    ),
}
_LIBRARY_READ_ONLY = frozenset({"list", "list_embeddings"})
#: Every verb's body schema (``request_id`` included): the library's and the inbox's.
SCHEMAS: dict[str, vol.Schema] = {**_LIBRARY_SCHEMAS, **INBOX_SCHEMAS}
#: Verbs that change nothing (no retained topic is republished after them).
READ_ONLY = _LIBRARY_READ_ONLY | INBOX_READ_ONLY

_Item = tuple[str, str, dict[str, Any], "concurrent.futures.Future[dict[str, Any]] | None"]


class CommandHandler:
    """Validates, queues and executes commands: the face library's verbs, and those registered
    by features (:meth:`register`).

    Args:
        library: what the library verbs need.
        respond: ``respond(request_id, payload)`` publishes an MQTT command's answer (the
            ``<prefix>/response/<request_id>`` payload, ``docs/schemas/response.json``).
        after_change: called with the verb after a verb that changes something was answered
            (the engine republishes ``persons``).
    """

    def __init__(
        self,
        library: LibraryVerbsContext,
        respond: Callable[[str, ResponsePayload], None],
        after_change: Callable[[str], None] | None = None,
    ) -> None:
        self._respond_with = respond
        self._after_change = after_change
        # (verb, request_id, validated body, reply future: None for MQTT, set for the web page)
        self._queue: queue.Queue[_Item | None] = queue.Queue(MAX_PENDING)
        self._thread = threading.Thread(target=self._loop, name="commands", daemon=True)
        self._verbs: dict[str, Verb] = {}
        self.register(_library_verbs(library))

    def register(self, verbs: Mapping[str, Verb]) -> None:
        """Add verbs (before :meth:`start`); a name already registered is replaced."""
        self._verbs.update(verbs)

    def start(self) -> None:
        """Start the command thread."""
        self._thread.start()

    def stop(self) -> None:
        """Finish the queued commands and stop."""
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            return
        self._thread.join(timeout=30)

    def _respond(
        self, request_id: str, verb: str, result: dict[str, Any] | None = None, error: CommandError | None = None
    ) -> None:
        if not _REQUEST_ID.fullmatch(request_id):  # a topic level: never anything else
            request_id = "invalid"
        pair = None
        if error is not None:  # a message quoting input must stay encodable (UTF-8)
            pair = (error.code, error.message.encode("utf-8", "backslashreplace").decode("utf-8"))
        self._respond_with(request_id, response_payload(request_id, verb, result, pair))

    def submit(self, verb: str, payload: bytes) -> None:
        """Validate a raw command (network thread: cheap checks only, :func:`parse_command`) and
        queue it; every refusal is answered."""
        try:
            request_id, body = parse_command(payload)
        except RawCommandError as err:
            self._respond(err.request_id, verb, error=CommandError(err.code, str(err)))
            return
        try:
            data = self._validate(verb, body)
        except CommandError as err:
            self._respond(request_id, verb, error=err)
            return
        try:
            self._queue.put_nowait((verb, request_id, data, None))
        except queue.Full:
            self._respond(request_id, verb, error=CommandError("busy", "too many pending commands"))

    def _validate(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        spec = self._verbs.get(verb)
        if spec is None:
            raise CommandError("unknown_command", f"unknown command {verb!r}")
        try:
            data: dict[str, Any] = spec.schema(body)
        except vol.Invalid as err:
            raise CommandError("bad_request", str(err)) from None
        return data

    def call(self, verb: str, data: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """Run a command for the engine's web page and return its result (blocks the caller).

        The same path as an MQTT command: the same schema, the same queue and thread (one command
        at a time, in order), the same republishing of ``persons``; only the answer comes back here
        instead of on ``<prefix>/response/...``. ``data`` is the body without ``request_id``.

        Raises:
            CommandError: with the code an MQTT response would carry (``bad_request``,
                ``not_found``, ``unknown_command``, ``busy``, ``internal``...), or ``timeout``.
        """
        body = self._validate(verb, {**data, "request_id": "web"})
        reply: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        try:
            self._queue.put_nowait((verb, "web", body, reply))
        except queue.Full:
            raise CommandError("busy", "too many pending commands") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                return reply.result(min(1.0, max(deadline - time.monotonic(), 0.0)))
            except concurrent.futures.TimeoutError:
                # A stopped handler never answers: give up at once rather than at the deadline.
                if not self._thread.is_alive():
                    raise CommandError("busy", "commands are not running (engine starting or stopping)") from None
                if time.monotonic() >= deadline:
                    raise CommandError("timeout", f"command {verb!r} took longer than {timeout:g} s") from None

    def _reply(
        self,
        reply: concurrent.futures.Future[dict[str, Any]] | None,
        request_id: str,
        verb: str,
        result: dict[str, Any] | None = None,
        error: CommandError | None = None,
    ) -> None:
        """Answer on MQTT, or to the waiting :meth:`call`."""
        if reply is None:
            self._respond(request_id, verb, result, error)
        elif error is not None:
            reply.set_exception(error)
        else:
            reply.set_result(result or {})

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            verb, request_id, data, reply = item
            spec = self._verbs[verb]
            try:
                result = spec.run(data)
            except Exception as err:
                if not isinstance(err, (CommandError, FaceTrackError)):
                    _LOG.exception("command %s failed", verb)
                self._reply(reply, request_id, verb, error=CommandError.of(err))
                continue
            if spec.changed is not None:
                spec.changed()  # before the answer: the client sees the new state
            self._reply(reply, request_id, verb, result)
            if not spec.read_only and self._after_change is not None:
                self._after_change(verb)


class _LibraryVerbs:
    """The face library verbs."""

    def __init__(self, ctx: LibraryVerbsContext) -> None:
        self.ctx = ctx
        self.library = ctx.library

    def _image(self, data: dict[str, Any]) -> Any:
        if "image_base64" in data:
            try:
                raw = base64.b64decode(data["image_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise CommandError("bad_request", "image_base64 is not valid base64") from None
            return decode_image(raw, "image_base64")
        if "image_path" in data:
            media = self.ctx.media_dir
            if not media:
                raise CommandError("bad_request", "image_path needs media_dir in the configuration")
            root = Path(media).resolve()
            path = (root / data["image_path"]).resolve()
            if not path.is_relative_to(root):
                raise CommandError("forbidden", "image_path must stay inside the media folder")
            return read_image(path)
        raise CommandError("bad_request", "give image_base64 or image_path")

    def enroll(self, data: dict[str, Any]) -> dict[str, Any]:
        name = clean_name(data["name"])
        image = self._image(data)
        face = self.ctx.recognizer.enrolment_face(image, data["pick"])  # UnusableImageError: no/several faces
        source = "mqtt:" + (data.get("image_path") or "image_base64")
        person = self.library.enroll(
            name.name,
            face.embedding[None, :],
            [face.crop_jpeg],
            [source],
            data.get("metadata"),
            yaws=[face.yaw],
            descriptors2=face_descriptors([face]),
        )
        # A snapshot's face was chosen among several: the answer says which (photos answer as before).
        chosen = {"box": list(face.box), "faces": face.faces} if data["pick"] == "largest" else {}
        return {
            "person": person.name,
            "person_id": person.person_id,
            "embeddings": person.embedding_count,
            **chosen,
            **normalised(name),
        }

    def enroll_track(self, data: dict[str, Any]) -> dict[str, Any]:
        name = clean_name(data["name"])
        camera = self.ctx.camera(data["camera"])
        if camera is None:
            raise CommandError("not_found", f"no camera {data['camera']!r}")
        candidates = camera.best_crops(data["track_id"])
        if not candidates:
            raise CommandError("not_found", f"no usable face of track {data['track_id']} on {data['camera']}")
        # One crop per pose bin first (frontal, three-quarter, profile), within the person's
        # bound of automatic embeddings per pose (library/diverse.py).
        existing = self.library.person(name.name)
        room = automatic_room(self.library, existing.person_id if existing else None)
        crops = select_diverse(candidates, data["max_embeddings"], room)
        if not crops:
            raise CommandError(
                "bad_request",
                f"{existing.name if existing else name.name} already has {MAX_AUTO_PER_POSE} embeddings from "
                "cameras or the inbox in each pose of this track; remove some with forget_embedding first",
            )
        # dlib's descriptor needs the face with its context (the tracker keeps it with the crop).
        with_context = any(c.context is not None for c in crops)
        second = self.ctx.recognizer.second if with_context else None
        person = self.library.enroll(
            name.name,
            np.stack([c.embedding for c in crops]),
            [encode_jpeg(c.crop) for c in crops],
            [f"{data['camera']}/track/{data['track_id']}"] * len(crops),
            yaws=[c.yaw for c in crops],
            descriptors2=np.stack([second.describe_one(c.context, c.context_box) for c in crops])
            if second is not None
            else None,
        )
        return {
            "person": person.name,
            "person_id": person.person_id,
            "enrolled": len(crops),
            "embeddings": person.embedding_count,
            **normalised(name),
        }

    def forget(self, data: dict[str, Any]) -> dict[str, Any]:
        removed = self.library.forget(data["name"])
        return {"person": data["name"], "embeddings_removed": removed}

    def rename(self, data: dict[str, Any]) -> dict[str, Any]:
        new = clean_name(data["new_name"])
        person = self.library.rename(data["name"], new.name)
        return {"person": person.name, "person_id": person.person_id, "previous": data["name"], **normalised(new)}

    def list(self, _data: dict[str, Any]) -> dict[str, Any]:
        return {"persons": [dict(p) for p in self.ctx.persons()]}

    def list_embeddings(self, data: dict[str, Any]) -> dict[str, Any]:
        person = self.library.person(data["name"])
        if person is None:
            raise CommandError("not_found", f"no person called {data['name']!r} in the face library")
        out = []
        for e in self.library.embeddings(person.name):
            item: dict[str, Any] = {"embedding_id": e.embedding_id, "source": e.source, "created_at": iso(e.created_at)}
            if data["include_crops"]:
                item["crop_base64"] = base64.b64encode(e.crop_jpeg).decode("ascii")
            out.append(item)
        return {"person": person.name, "person_id": person.person_id, "embeddings": out}

    def forget_embedding(self, data: dict[str, Any]) -> dict[str, Any]:
        owner = self.library.embedding_owner(data["embedding_id"])
        if owner is None:
            raise CommandError("not_found", f"no embedding with id {data['embedding_id']}")
        if "name" in data and self.library.person(data["name"]) != owner:
            raise CommandError("not_found", f"embedding {data['embedding_id']} is not {data['name']!r}'s")
        left = self.library.delete_embedding(data["embedding_id"])
        return {
            "person": owner.name,
            "person_id": owner.person_id,
            "embedding_id": data["embedding_id"],
            "embeddings": left.embedding_count if left is not None else 0,
            "person_removed": left is None,
        }


def _library_verbs(ctx: LibraryVerbsContext) -> dict[str, Verb]:
    v = _LibraryVerbs(ctx)
    handlers = {
        "enroll": v.enroll, "enroll_track": v.enroll_track, "forget": v.forget, "rename": v.rename,
        "list": v.list, "list_embeddings": v.list_embeddings, "forget_embedding": v.forget_embedding,
    }  # fmt: skip
    return {
        verb: Verb(schema, handlers[verb], read_only=verb in _LIBRARY_READ_ONLY)
        for verb, schema in _LIBRARY_SCHEMAS.items()
    }
