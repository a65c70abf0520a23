"""JSON payloads of the MQTT contract (``docs/mqtt.md``, schemas in ``docs/schemas/``).

Pure functions from engine objects (or plain values) to typed dicts: one :class:`~typing.TypedDict`
per payload, whose keys are those of its JSON Schema (``tests/test_contract.py`` checks both). At
run time every payload is a plain ``dict``. Which topic carries which payload, with its QoS and
retain flag: :mod:`facetrack.comms.topics`.
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired[...]`` from its
# evaluated annotations, and string annotations would make every key look required at run time.

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Protocol, TypedDict

from facetrack.events import EventType
from facetrack.pose import POSE_BINS

if TYPE_CHECKING:
    from facetrack.alerts import Alert
    from facetrack.events import TrackEvent
    from facetrack.inbox.store import InboxGroup
    from facetrack.record.clips import StoredClip


class TrackPayload(TypedDict):
    """``track.json``: one event of a confirmed track; ``time``/``ts`` the frame's capture time."""

    event_id: str
    type: EventType
    camera: str
    track_id: int
    person: str | None
    person_id: str | None
    similarity: float | None
    bbox: list[float]
    frame: int
    reason: str | None
    time: str
    ts: float


class AlertPayload(TypedDict):
    """``alert.json``: ``alert_mode`` is the mode that matched (``ON_UNKNOWNS``, ``ON_KNOWNS``, ``ON_ALL``);
    ``snapshot_url`` is the alert's own face; ``clip_offset_seconds`` the alert's time in the clip
    ``clip_url`` names (which ends in ``#t=<it>``)."""

    alert_id: str
    camera: str
    alert_mode: str
    kind: Literal["known_face", "unknown_face"]
    track_id: int
    person: str | None
    person_id: str | None
    similarity: float | None
    bbox: list[float]
    snapshot_url: str | None
    clip_url: str | None
    clip_offset_seconds: float | None
    time: str
    ts: float


class SeenPayload(TypedDict):
    """``seen.json``: a known person is in view now."""

    person_id: str
    person: str | None
    camera: str
    track_id: int
    similarity: float | None
    time: str
    ts: float


class StatePayload(TypedDict):
    """``state.json``: ``state`` is ``starting``, ``online``, ``offline`` or ``disabled`` (a camera
    with ``enabled: false``); ``fps`` frames/s."""

    camera: str
    state: str
    fps: float
    faces: int
    error: str | None
    stream_url: str | None
    mjpeg_url: str | None
    snapshot_url: str | None
    time: str


class ClipPayload(TypedDict):
    """``clip.json``: ``urls`` by kind (``original``, ``annotated``, ``annotations``, ``snapshot``)."""

    camera: str
    clip_id: str
    alert_id: str
    frames: int
    duration_s: float
    urls: dict[str, str | None]
    time: str


class ResponseError(TypedDict):
    """The ``error`` of a failed command: ``code`` (see ``response.json``) and a readable message."""

    code: str
    message: str


class ResponsePayload(TypedDict):
    """``response.json``: ``ok`` with ``result``, or not ``ok`` with ``error``."""

    request_id: str
    command: str
    ok: bool
    result: NotRequired[dict[str, Any]]
    error: NotRequired[ResponseError]


class InboxGroupPayload(TypedDict):
    """One group of ``inbox.json`` (times ISO 8601 UTC)."""

    group_id: str
    status: Literal["pending", "ignored"]
    count: int
    tracks: int
    cameras: list[str]
    first_seen: str
    last_seen: str
    crops: int
    crop_url: str | None
    nearest_person: str | None
    nearest_similarity: float | None


class InboxPayload(TypedDict):
    """``inbox.json``: the groups, most recently seen first, and counts by status."""

    groups: list[InboxGroupPayload]
    pending: int
    ignored: int
    time: str


class InboxEventPayload(TypedDict):
    """``inbox_event.json``: ``new_group``, a new unknown person."""

    event_id: str
    type: Literal["new_group"]
    group_id: str
    camera: str
    track_id: int
    crop_url: str | None
    time: str
    ts: float


class LibraryNotice(TypedDict):
    """``library.json``: this instance changed the shared face library."""

    event: Literal["library_changed"]
    instance: str
    origin: str
    library: str
    operation: str
    version: int
    time: str


class InfoPayload(TypedDict):
    """``info.json``: what this engine instance is; ``features`` absent when there are none."""

    contract_version: str
    version: str
    backend: str
    model_id: str
    topic_prefix: str
    cameras: list[str]
    disabled_cameras: NotRequired[list[str]]
    started_at: str
    features: NotRequired[list[str]]
    mqtt_outbox: NotRequired[dict[str, int]]


class PersonEntry(TypedDict):
    """One person of ``persons.json``; ``last_seen`` / ``last_camera`` null if not seen since start;
    ``poses`` / ``missing_poses`` the gallery's head-pose coverage (:func:`pose_coverage`)."""

    person_id: str
    name: str
    embeddings: int
    last_seen: str | None
    last_camera: str | None
    poses: dict[str, int]
    missing_poses: list[str]


class PersonsPayload(TypedDict):
    """``persons.json``: the face library with last sightings."""

    persons: list[PersonEntry]
    time: str


class PersonRow(Protocol):
    """What :func:`persons_payload` reads of a person (``library.store.Person`` has it)."""

    @property
    def person_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def embedding_count(self) -> int: ...
    @property
    def poses(self) -> Mapping[str, int]: ...


class Sighting(Protocol):
    """When (epoch s) and on which camera a person was last recognised."""

    @property
    def last_seen(self) -> float: ...
    @property
    def last_camera(self) -> str: ...


def iso(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-22T00:15:03.120Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sim(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def track_payload(camera: str, event: "TrackEvent", epoch: float) -> TrackPayload:
    """``<prefix>/<camera>/track``: one track event; ``epoch`` is the frame's capture time (s)."""
    return {
        "event_id": uuid.uuid4().hex,
        "type": event.type,
        "camera": camera,
        "track_id": event.track_id,
        "person": event.person,
        "person_id": event.person_id,
        "similarity": _sim(event.similarity),
        "bbox": [round(float(v), 1) for v in event.bbox],
        "frame": event.frame,
        "reason": event.reason,
        "time": iso(epoch),
        "ts": round(epoch, 3),
    }


def alert_payload(
    alert: "Alert",
    epoch: float,
    snapshot_url: str | None = None,
    clip_url: str | None = None,
    clip_offset_seconds: float | None = None,
) -> AlertPayload:
    """``<prefix>/<camera>/alert``: ``epoch`` is the capture time of the deciding frame (s);
    ``clip_offset_seconds``: that frame's time in the clip (s from its start)."""
    e = alert.event
    return {
        "alert_id": alert.alert_id,
        "camera": alert.camera,
        "alert_mode": alert.mode.value,
        "kind": "known_face" if e.person_id is not None else "unknown_face",
        "track_id": e.track_id,
        "person": e.person,
        "person_id": e.person_id,
        "similarity": _sim(e.similarity),
        "bbox": [round(float(v), 1) for v in e.bbox],
        "snapshot_url": snapshot_url,
        "clip_url": clip_url,
        "clip_offset_seconds": None if clip_offset_seconds is None else round(float(clip_offset_seconds), 3),
        "time": iso(epoch),
        "ts": round(epoch, 3),
    }


def seen_payload(
    camera: str, track_id: int, person_id: str, person: str | None, similarity: float | None, epoch: float
) -> SeenPayload:
    """``<prefix>/seen/<person_id>`` (not retained): a known person is in view now."""
    return {
        "person_id": person_id,
        "person": person,
        "camera": camera,
        "track_id": track_id,
        "similarity": _sim(similarity),
        "time": iso(epoch),
        "ts": round(epoch, 3),
    }


def state_payload(
    camera: str,
    state: str,
    fps: float,
    faces: int,
    error: str | None,
    stream_url: str | None = None,
    snapshot_url: str | None = None,
    mjpeg_url: str | None = None,
    now: float | None = None,
) -> StatePayload:
    """``<prefix>/<camera>/state`` (retained): ``state`` is ``starting``, ``online`` or ``offline``
    (see :func:`disabled_state_payload` for a disabled camera)."""
    t = time.time() if now is None else now
    return {
        "camera": camera,
        "state": state,
        "fps": round(fps, 2),
        "faces": faces,
        "error": error,
        "stream_url": stream_url,
        "mjpeg_url": mjpeg_url,
        "snapshot_url": snapshot_url,
        "time": iso(t),
    }


#: The ``error`` of a disabled camera's state: why it is not running.
CAMERA_DISABLED = "disabled in the configuration"


def disabled_state_payload(camera: str, now: float | None = None) -> StatePayload:
    """``<prefix>/<camera>/state`` (retained) of a camera with ``enabled: false``: state ``disabled``,
    error :data:`CAMERA_DISABLED`, nothing in view, no URLs."""
    return state_payload(camera, "disabled", 0.0, 0, CAMERA_DISABLED, now=now)


def clip_payload(clip: "StoredClip", urls: dict[str, str | None]) -> ClipPayload:
    """``<prefix>/<camera>/clip`` (QoS 1, not retained): an alert's clip is stored; ``urls`` by
    kind (``original``, ``annotated``, ``annotations``, ``snapshot``), expiring."""
    return {
        "camera": clip.camera,
        "clip_id": clip.clip_id,
        "alert_id": clip.alert_id,
        "frames": clip.frames,
        "duration_s": round(clip.duration_seconds, 2),
        "urls": urls,
        "time": iso(time.time()),
    }


def response_payload(
    request_id: str, verb: str, result: dict[str, Any] | None = None, error: tuple[str, str] | None = None
) -> ResponsePayload:
    """``<prefix>/response/<request_id>``: ``ok`` with ``result``, or ``error`` {code, message}."""
    if error is None:
        return {"request_id": request_id, "command": verb, "ok": True, "result": result or {}}
    return {
        "request_id": request_id,
        "command": verb,
        "ok": False,
        "error": {"code": error[0], "message": error[1]},
    }


def inbox_payload(
    groups: "Sequence[InboxGroup]",
    crop_url: Callable[[str, int], str | None] | None = None,
    now: float | None = None,
) -> InboxPayload:
    """``<prefix>/inbox`` (retained): the unknown-face groups, most recently seen first;
    ``crop_url(group_id, index)`` gives the signed URL of a crop (None: no HTTP server)."""
    return {
        "groups": [
            {
                "group_id": g.group_id,
                "status": g.status,
                "count": g.count,
                "tracks": g.tracks,
                "cameras": list(g.cameras),
                "first_seen": iso(g.first_seen),
                "last_seen": iso(g.last_seen),
                "crops": g.crops,
                "crop_url": crop_url(g.group_id, 0) if crop_url is not None else None,
                "nearest_person": g.nearest_person,
                "nearest_similarity": _sim(g.nearest_similarity),
            }
            for g in groups
        ],
        "pending": sum(1 for g in groups if g.status == "pending"),
        "ignored": sum(1 for g in groups if g.status == "ignored"),
        "time": iso(time.time() if now is None else now),
    }


def inbox_event_payload(
    group_id: str, camera: str, track_id: int, crop_url: str | None, epoch: float
) -> InboxEventPayload:
    """``<prefix>/inbox/event`` (QoS 1, never retained): ``new_group``, a new unknown person."""
    return {
        "event_id": uuid.uuid4().hex,
        "type": "new_group",
        "group_id": group_id,
        "camera": camera,
        "track_id": track_id,
        "crop_url": crop_url,
        "time": iso(epoch),
        "ts": round(epoch, 3),
    }


def library_payload(instance: str, origin: str, library: str, operation: str, version: int) -> LibraryNotice:
    """``mqtt.library_topic`` (QoS 1, never retained): this instance changed the shared face library.

    ``instance`` is the topic prefix, ``origin`` the process's random id (32 hex), ``library`` the
    ``db_path`` (an ``s3://`` URI or a folder), ``operation`` the write (``enroll``, ``rename``,
    ``forget``, ``delete_embedding``), ``version`` the table version after the commit.
    """
    return {
        "event": "library_changed",
        "instance": instance,
        "origin": origin,
        "library": library,
        "operation": operation,
        "version": int(version),
        "time": iso(time.time()),
    }


def info_payload(
    *,
    contract_version: str,
    version: str,
    backend: str,
    model_id: str,
    topic_prefix: str,
    cameras: Sequence[str],
    started_at: float,
    features: Sequence[str] = (),
    mqtt_outbox: Mapping[str, int] | None = None,
    disabled_cameras: Sequence[str] = (),
) -> InfoPayload:
    """``<prefix>/info`` (retained): what this engine is.

    ``contract_version`` is ``comms.mqtt.CONTRACT_VERSION``, ``version`` the engine's, ``started_at``
    epoch seconds; ``cameras`` those running, ``disabled_cameras`` those configured with
    ``enabled: false`` (left out when empty); ``features`` (e.g. ``["inbox"]``) is left out when
    empty, ``mqtt_outbox`` (the outbox counters, ``MqttClient.outbox_stats()``) when None.
    """
    out: InfoPayload = {
        "contract_version": contract_version,
        "version": version,
        "backend": backend,
        "model_id": model_id,
        "topic_prefix": topic_prefix,
        "cameras": list(cameras),
        "started_at": iso(started_at),
    }
    if disabled_cameras:
        out["disabled_cameras"] = list(disabled_cameras)
    if features:
        out["features"] = list(features)
    if mqtt_outbox is not None:
        out["mqtt_outbox"] = dict(mqtt_outbox)
    return out


#: The key of :func:`pose_coverage`'s counts for embeddings whose head pose was not recorded.
UNKNOWN_POSE = "unknown"


def pose_coverage(poses: Mapping[str, int], embeddings: int) -> tuple[dict[str, int], list[str]]:
    """A person's gallery coverage by head pose: ``(counts, missing)``.

    Args:
        poses: embeddings per pose bin (``library.store.Person.poses``: keys of
            :data:`facetrack.pose.POSE_BINS` and ``"unknown"``; absent keys count 0, other keys are
            ignored).
        embeddings: the person's number of embeddings.

    Returns:
        ``counts``: every bin of ``POSE_BINS`` then ``"unknown"``, each an int >= 0; ``"unknown"``
        is the library's count, or when absent the embeddings no bin accounts for.
        ``missing``: the bins of ``POSE_BINS`` (in that order) without an embedding; empty when no
        embedding has a known pose (a library enrolled before poses were recorded): which views
        are missing cannot be told then.
    """
    counts: dict[str, int] = {b: max(int(poses.get(b, 0)), 0) for b in POSE_BINS}
    known = sum(counts.values())
    unknown = poses.get(UNKNOWN_POSE)
    counts[UNKNOWN_POSE] = max(int(unknown) if unknown is not None else embeddings - known, 0)
    missing: list[str] = [b for b in POSE_BINS if counts[b] == 0] if known else []
    return counts, missing


def persons_payload(
    persons: Iterable[PersonRow], sightings: Mapping[str, Sighting], now: float | None = None
) -> PersonsPayload:
    """``<prefix>/persons`` (retained): the face library in the order given, each with its last
    sighting from ``sightings`` (by ``person_id``; null when absent) and its head-pose coverage
    (:func:`pose_coverage`); ``now`` epoch s (default: now)."""
    entries: list[PersonEntry] = []
    for p in persons:
        seen = sightings.get(p.person_id)
        poses, missing = pose_coverage(p.poses, p.embedding_count)
        entries.append(
            {
                "person_id": p.person_id,
                "name": p.name,
                "embeddings": p.embedding_count,
                "last_seen": iso(seen.last_seen) if seen else None,
                "last_camera": seen.last_camera if seen else None,
                "poses": poses,
                "missing_poses": missing,
            }
        )
    return {"persons": entries, "time": iso(time.time() if now is None else now)}
