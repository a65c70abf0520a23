"""Typed parsers of the engine's MQTT payloads that the integration reads (contract v1, docs/schemas/).

Every payload class has `from_json(data)`, `data` being the decoded JSON value (see `loads`). A parser
reads only the fields the integration uses and ignores the others, so an engine may add keys. It is as
lenient as the contract's older versions need: besides the few fields marked required, a field may be
absent or null (None). A field present with the wrong JSON type, a missing required field or a payload
that is not an object raises `PayloadError`; in a list of persons, groups or cameras, an item that does
not parse is skipped and the rest is kept. Times stay the contract's ISO 8601 strings (what the entities
show as attributes); `parse_time` turns them into datetimes.

The retained payloads kept for diagnostics (`Info`, `CameraState`, `Person`, `InboxGroup`) also hold
the decoded object itself (`raw`, extra keys included).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any, Self

from homeassistant.util import dt as dt_util

from .const import CONTRACT_VERSION, POSE_BINS

# The states of a person's gallery coverage (`Person.coverage`): complete, or which head-pose bins to add
# photos of (every non-empty combination, frontal to profile), or some this version does not know.
COVERAGE_STATES: tuple[str, ...] = (
    "complete",
    *("add_" + "_".join(bins) for n in range(1, len(POSE_BINS) + 1) for bins in combinations(POSE_BINS, n)),
    "incomplete",
)


class PayloadError(ValueError):
    """A payload that is not valid JSON or does not follow the contract."""


def loads(payload: str | bytes | bytearray) -> Any:
    """Decode an MQTT payload as JSON; raises `PayloadError` when it is not JSON (or not UTF-8)."""
    try:
        return json.loads(payload)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"not JSON: {err}") from err


def parse_time(value: str | None) -> datetime | None:
    """A contract time ("2026-11-22T08:15:03.120Z", UTC) as an aware datetime; None if absent or not a time."""
    return dt_util.parse_datetime(value) if value is not None else None


# -- field readers -----------------------------------------------------------------------------


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PayloadError(f"{what}: expected an object, got {type(data).__name__}")
    return data


def _wrong_type(key: str, expected: str, value: Any) -> PayloadError:
    return PayloadError(f"{key}: expected {expected}, got {type(value).__name__}")


def _str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _wrong_type(key, "a string", value)


def _required_str(data: dict[str, Any], key: str) -> str:
    value = _str(data, key)
    if value is None:
        raise PayloadError(f"{key}: missing")
    return value


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _wrong_type(key, "an integer", value)


def _number(data: dict[str, Any], key: str) -> float | None:
    """An int or a float, as sent (12 stays an int: a sensor shows "12", not "12.0")."""
    value = data.get(key)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise _wrong_type(key, "a number", value)


def _bool(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _wrong_type(key, "a boolean", value)


def _optional_object(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return None if value is None else _object(value, key)


def _list(data: dict[str, Any], key: str) -> list[Any] | None:
    value = data.get(key)
    if value is None or isinstance(value, list):
        return value
    raise _wrong_type(key, "a list", value)


def _required_list(data: dict[str, Any], key: str) -> list[Any]:
    value = _list(data, key)
    if value is None:
        raise PayloadError(f"{key}: missing")
    return value


def _items[T](values: list[Any], parse: Callable[[Any], T]) -> tuple[T, ...]:
    """The items of a list that parse; the others are skipped."""
    parsed: list[T] = []
    for value in values:
        try:
            parsed.append(parse(value))
        except PayloadError:
            continue
    return tuple(parsed)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type("item", "a string", value)
    return value


# -- retained topics ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Info:
    """`<prefix>/info`: what the engine instance is. Required: `contract_version` "1", `topic_prefix`, `cameras`."""

    topic_prefix: str
    cameras: tuple[str, ...]  # engine camera names, in the engine's order
    version: str | None = None  # the engine's version
    backend: str | None = None  # inference backend ("opencv", ...)
    disabled_cameras: tuple[str, ...] = ()  # cameras with `enabled: false` (absent: none, or an older engine)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError` (also for another contract version)."""
        info = _object(data, "info")
        if info.get("contract_version") != CONTRACT_VERSION:
            raise PayloadError(f"contract_version: expected {CONTRACT_VERSION!r}, got {info.get('contract_version')!r}")
        return cls(
            topic_prefix=_required_str(info, "topic_prefix"),
            cameras=_items(_required_list(info, "cameras"), _string),
            version=_str(info, "version"),
            backend=_str(info, "backend"),
            disabled_cameras=_items(_list(info, "disabled_cameras") or [], _string),
            raw=info,
        )


@dataclass(frozen=True, slots=True)
class CameraState:
    """`<prefix>/<camera>/state`: a camera's availability and load. No field is required.

    `CameraState()` (all None) stands for a camera whose state has not arrived yet.
    """

    camera: str | None = None
    state: str | None = None  # "starting", "online", "offline" or "disabled"
    fps: float | None = None  # frames per second processed
    faces: int | None = None  # faces in view
    stream_url: str | None = None  # RTSP or MJPEG URL (may carry credentials)
    snapshot_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any, topic_camera: str | None = None) -> Self:
        """Parse; raises `PayloadError`, also when the payload names another camera than `topic_camera`."""
        state = _object(data, "state")
        camera = _str(state, "camera")
        if topic_camera is not None and camera is not None and camera != topic_camera:
            raise PayloadError(f"camera: {camera!r} on the topic of {topic_camera!r}")
        return cls(
            camera=camera,
            state=_str(state, "state"),
            fps=_number(state, "fps"),
            faces=_int(state, "faces"),
            stream_url=_str(state, "stream_url"),
            snapshot_url=_str(state, "snapshot_url"),
            raw=state,
        )


def _counts(data: dict[str, Any], key: str) -> tuple[tuple[str, int], ...] | None:
    """An object of integer counts, as (key, count) pairs in the sent order (a value, hashable as the rest)."""
    counts = _optional_object(data, key)
    if counts is None:
        return None
    return tuple((name, value) for name in counts if (value := _int(counts, name)) is not None)


@dataclass(frozen=True, slots=True)
class Person:
    """A person of the face library (an item of `<prefix>/persons`). Required: `person_id`."""

    person_id: str
    name: str | None = None
    last_seen: str | None = None  # ISO 8601 time of the last sighting
    last_camera: str | None = None  # camera of the last sighting
    # Embeddings per head-pose bin (`POSE_BINS` and "unknown"); None from engines that do not send them.
    poses: tuple[tuple[str, int], ...] | None = None
    missing_poses: tuple[str, ...] = ()  # bins without an embedding, frontal to profile
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        person = _object(data, "person")
        missing_poses = _list(person, "missing_poses")
        return cls(
            person_id=_required_str(person, "person_id"),
            name=_str(person, "name"),
            last_seen=_str(person, "last_seen"),
            last_camera=_str(person, "last_camera"),
            poses=_counts(person, "poses"),
            missing_poses=_items(missing_poses, _string) if missing_poses is not None else (),
            raw=person,
        )

    @property
    def coverage(self) -> str | None:
        """The gallery's head-pose coverage, a key of `COVERAGE_STATES`: "complete", "add_<bins>" naming the
        missing bins (frontal to profile), "incomplete" if only bins this version does not know are missing;
        None when it cannot be told (an engine without `poses`, or no embedding with a known pose)."""
        if self.poses is None or not any(count for name, count in self.poses if name in POSE_BINS):
            return None
        if missing := [name for name in POSE_BINS if name in self.missing_poses]:
            return "add_" + "_".join(missing)
        return "incomplete" if self.missing_poses else "complete"

    @property
    def display_name(self) -> str:
        """The name, else the id."""
        return self.name if self.name is not None else self.person_id


@dataclass(frozen=True, slots=True)
class Persons:
    """`<prefix>/persons`: the face library. Required: `persons` (a list; items that do not parse are skipped)."""

    persons: tuple[Person, ...]

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        return cls(persons=_items(_required_list(_object(data, "persons"), "persons"), Person.from_json))


@dataclass(frozen=True, slots=True)
class InboxGroup:
    """A group of unknown faces of the inbox (an item of `<prefix>/inbox`). Required: `group_id`."""

    group_id: str
    status: str | None = None  # "pending" or "ignored"
    count: int | None = None  # face embeddings collected
    tracks: int | None = None  # sightings
    cameras: tuple[str, ...] = ()  # cameras it was seen on, most recent first
    first_seen: str | None = None  # ISO 8601 times
    last_seen: str | None = None
    crop_url: str | None = None  # signed, expiring URL of the best crop
    nearest_person: str | None = None  # naming hint
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        group = _object(data, "group")
        cameras = _list(group, "cameras")
        return cls(
            group_id=_required_str(group, "group_id"),
            status=_str(group, "status"),
            count=_int(group, "count"),
            tracks=_int(group, "tracks"),
            cameras=_items(cameras, _string) if cameras is not None else (),
            first_seen=_str(group, "first_seen"),
            last_seen=_str(group, "last_seen"),
            crop_url=_str(group, "crop_url"),
            nearest_person=_str(group, "nearest_person"),
            raw=group,
        )

    def attributes(self) -> dict[str, Any]:
        """The group's summary as entity attributes (not the signed, expiring crop URL)."""
        return {
            "group_id": self.group_id,
            "count": self.count,
            "tracks": self.tracks,
            "cameras": list(self.cameras),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "nearest_person": self.nearest_person,
        }


@dataclass(frozen=True, slots=True)
class Inbox:
    """`<prefix>/inbox` (contract 1.1): the unknown-face inbox. Required: `groups` (items that do not parse are
    skipped); `pending` / `ignored` are the engine's counts of groups."""

    groups: tuple[InboxGroup, ...]
    pending: int | None = None
    ignored: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        inbox = _object(data, "inbox")
        return cls(
            groups=_items(_required_list(inbox, "groups"), InboxGroup.from_json),
            pending=_int(inbox, "pending"),
            ignored=_int(inbox, "ignored"),
        )


# -- live topics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """`<prefix>/seen/<person_id>`: a known person is in view. No field is required."""

    camera: str | None = None
    similarity: float | None = None  # cosine similarity, -1..1
    time: str | None = None  # ISO 8601

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        seen = _object(data, "seen")
        return cls(camera=_str(seen, "camera"), similarity=_number(seen, "similarity"), time=_str(seen, "time"))


@dataclass(frozen=True, slots=True)
class Alert:
    """`<prefix>/<camera>/alert`: a known or unknown face. Required: `kind` (a string, maybe a kind added later)."""

    kind: str  # "known_face" or "unknown_face"
    alert_id: str | None = None
    track_id: int | None = None
    person: str | None = None  # the person's name, None for an unknown face
    person_id: str | None = None
    similarity: float | None = None
    snapshot_url: str | None = None  # signed; the alert's own face (older engines: once the clip is stored)
    clip_url: str | None = None  # ends in `#t=<clip_offset_seconds>`
    clip_offset_seconds: float | None = None  # the alert's time in the clip, s (newer engines)
    time: str | None = None  # ISO 8601

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        alert = _object(data, "alert")
        return cls(
            kind=_required_str(alert, "kind"),
            alert_id=_str(alert, "alert_id"),
            track_id=_int(alert, "track_id"),
            person=_str(alert, "person"),
            person_id=_str(alert, "person_id"),
            similarity=_number(alert, "similarity"),
            snapshot_url=_str(alert, "snapshot_url"),
            clip_url=_str(alert, "clip_url"),
            clip_offset_seconds=_number(alert, "clip_offset_seconds"),
            time=_str(alert, "time"),
        )


@dataclass(frozen=True, slots=True)
class Clip:
    """`<prefix>/<camera>/clip`: an alert's clip is stored. No field is required."""

    alert_id: str | None = None
    snapshot_url: str | None = None  # `urls.snapshot`: signed URL of the alert's face snapshot

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        clip = _object(data, "clip")
        urls = _optional_object(clip, "urls")
        return cls(alert_id=_str(clip, "alert_id"), snapshot_url=_str(urls, "snapshot") if urls is not None else None)


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """`<prefix>/inbox/event` (contract 1.1): a new group in the inbox. Required: `type`, `group_id`."""

    type: str  # "new_group"
    group_id: str
    camera: str | None = None
    track_id: int | None = None
    crop_url: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        event = _object(data, "inbox event")
        return cls(
            type=_required_str(event, "type"),
            group_id=_required_str(event, "group_id"),
            camera=_str(event, "camera"),
            track_id=_int(event, "track_id"),
            crop_url=_str(event, "crop_url"),
        )


@dataclass(frozen=True, slots=True)
class Response:
    """`<prefix>/response/<request_id>`: the answer to a command. No field is required.

    The command succeeded when `ok` is true and a `result` object came; else `error_code` and
    `error_message` tell why (None when the engine gave none).
    """

    ok: bool | None = None
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse; raises `PayloadError`."""
        response = _object(data, "response")
        error = _optional_object(response, "error")
        return cls(
            ok=_bool(response, "ok"),
            result=_optional_object(response, "result"),
            error_code=_str(error, "code") if error is not None else None,
            error_message=_str(error, "message") if error is not None else None,
        )
