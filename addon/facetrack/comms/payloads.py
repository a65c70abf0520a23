"""JSON payloads of the MQTT contract (``docs/mqtt.md``, schemas in ``docs/schemas/``).

Pure functions from engine objects to plain dicts, so the payloads are easy to test against the
JSON Schemas.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from facetrack.alerts import Alert
from facetrack.events import TrackEvent

if TYPE_CHECKING:
    from facetrack.inbox import InboxGroup


def iso(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-22T00:15:03.120Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sim(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def track_payload(camera: str, event: TrackEvent, epoch: float) -> dict[str, Any]:
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
    alert: Alert, epoch: float, snapshot_url: str | None = None, clip_url: str | None = None
) -> dict[str, Any]:
    """``<prefix>/<camera>/alert``: ``epoch`` is the capture time of the deciding frame (s)."""
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
        "time": iso(epoch),
        "ts": round(epoch, 3),
    }


def seen_payload(
    camera: str, track_id: int, person_id: str, person: str | None, similarity: float | None, epoch: float
) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """``<prefix>/<camera>/state`` (retained): ``state`` is ``starting``, ``online`` or ``offline``."""
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


def clip_payload(clip: Any, urls: dict[str, str | None]) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """``<prefix>/response/<request_id>``: ``ok`` with ``result``, or ``error`` {code, message}."""
    out: dict[str, Any] = {"request_id": request_id, "command": verb, "ok": error is None}
    if error is None:
        out["result"] = result or {}
    else:
        out["error"] = {"code": error[0], "message": error[1]}
    return out


def inbox_payload(
    groups: Sequence[InboxGroup], crop_url: Callable[[str, int], str | None] | None = None, now: float | None = None
) -> dict[str, Any]:
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
) -> dict[str, Any]:
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


def library_payload(instance: str, origin: str, library: str, operation: str, version: int) -> dict[str, Any]:
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
