"""The engine's MQTT topic tree, declared once: every topic's levels, QoS, retain flag and payload.

The table documented in ``docs/mqtt.md`` as data. :class:`facetrack.comms.publisher.Publisher`
publishes only through it, and ``tests/test_contract.py`` checks it against the JSON Schemas.

Rule: an event (a track event, an alert, a sighting, a clip, an inbox event, a command response,
a library notice) is never retained, so that a replayed "known face" can never unlock a door.
:class:`Topic` refuses such a declaration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from facetrack.comms.payloads import (
    AlertPayload,
    ClipPayload,
    InboxEventPayload,
    InboxPayload,
    InfoPayload,
    LibraryNotice,
    PersonsPayload,
    ResponsePayload,
    SeenPayload,
    StatePayload,
    TrackPayload,
)


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic of the contract.

    Attributes:
        name: short name, e.g. ``state``.
        levels: the levels under ``<prefix>/``; a level ``<field>`` is filled per message
            (``<camera>``, ``<person_id>``, ``<request_id>``, ``<verb>``). For an ``absolute``
            topic, a description of the whole topic (it comes from the configuration).
        qos: 0 (sent now or lost) or 1 (kept through a broker outage, ``comms/mqtt.py``).
        retain: the broker keeps the last message for new subscribers.
        event: the payload tells that something happened (never retained).
        schema: ``docs/schemas/<schema>.json``; None for a plain-text or discovery payload.
        payload: the TypedDict of the payload (:mod:`facetrack.comms.payloads`), or None.
        absolute: the topic does not live under ``<prefix>/`` (library topic, HA discovery).
        inbound: the engine subscribes to it rather than publishes on it.

    Raises:
        ValueError: an event declared retained, a QoS other than 0 or 1.
    """

    name: str
    levels: tuple[str, ...]
    qos: Literal[0, 1]
    retain: bool
    event: bool
    schema: str | None = None
    payload: type | None = None
    absolute: bool = False
    inbound: bool = False

    def __post_init__(self) -> None:
        if self.event and self.retain:
            raise ValueError(f"topic {self.name}: an event is never retained")
        if self.qos not in (0, 1):
            raise ValueError(f"topic {self.name}: QoS {self.qos} (0 or 1)")

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the levels filled per message, in order (``("camera",)`` for ``state``)."""
        return tuple(level[1:-1] for level in self.levels if _is_field(level))

    def parts(self, **values: str) -> tuple[str, ...]:
        """The levels under ``<prefix>/`` with each ``<field>`` replaced by ``values[field]``.

        Raises:
            ValueError: an absolute topic, or ``values`` does not name exactly :attr:`fields`.
        """
        if self.absolute:
            raise ValueError(f"topic {self.name} is absolute: it has no levels under the prefix")
        if set(values) != set(self.fields):
            raise ValueError(f"topic {self.name} takes {self.fields}, got {tuple(values)}")
        return tuple(values[level[1:-1]] if _is_field(level) else level for level in self.levels)


def _is_field(level: str) -> bool:
    return _FIELD.fullmatch(level) is not None


_FIELD = re.compile(r"<[a-z_.]+>")


STATUS = Topic("status", ("status",), qos=1, retain=True, event=False)  # online/offline text; offline: last will
INFO = Topic("info", ("info",), qos=1, retain=True, event=False, schema="info", payload=InfoPayload)
PERSONS = Topic("persons", ("persons",), qos=1, retain=True, event=False, schema="persons", payload=PersonsPayload)
STATE = Topic("state", ("<camera>", "state"), qos=1, retain=True, event=False, schema="state", payload=StatePayload)
TRACK = Topic("track", ("<camera>", "track"), qos=0, retain=False, event=True, schema="track", payload=TrackPayload)
ALERT = Topic("alert", ("<camera>", "alert"), qos=1, retain=False, event=True, schema="alert", payload=AlertPayload)
CLIP = Topic("clip", ("<camera>", "clip"), qos=1, retain=False, event=True, schema="clip", payload=ClipPayload)
INBOX = Topic("inbox", ("inbox",), qos=1, retain=True, event=False, schema="inbox", payload=InboxPayload)
INBOX_EVENT = Topic(
    "inbox_event", ("inbox", "event"), qos=1, retain=False, event=True, schema="inbox_event", payload=InboxEventPayload
)
SEEN = Topic("seen", ("seen", "<person_id>"), qos=0, retain=False, event=True, schema="seen", payload=SeenPayload)
COMMAND = Topic("command", ("command", "<verb>"), qos=1, retain=False, event=False, schema="command", inbound=True)
RESPONSE = Topic(
    "response", ("response", "<request_id>"), qos=1, retain=False, event=True, schema="response",
    payload=ResponsePayload,
)  # fmt: skip
#: ``mqtt.library_topic`` (default ``<prefix>/library``): shared by the instances of one library.
LIBRARY = Topic(
    "library", ("<mqtt.library_topic>",), qos=1, retain=False, event=True, schema="library", payload=LibraryNotice,
    absolute=True,
)  # fmt: skip
#: HA device discovery configs (``comms/discovery.py``), retained as discovery requires.
CAMERA_DISCOVERY = Topic(
    "camera_discovery", ("<discovery_prefix>", "device", "<node>_camera_<camera>", "config"),
    qos=1, retain=True, event=False, absolute=True,
)  # fmt: skip
PERSON_DISCOVERY = Topic(
    "person_discovery", ("<discovery_prefix>", "device", "<node>_person_<person_id>", "config"),
    qos=1, retain=True, event=False, absolute=True,
)  # fmt: skip

#: Every topic of the engine, in the order of ``docs/mqtt.md``.
TOPICS: tuple[Topic, ...] = (
    STATUS, INFO, PERSONS, STATE, TRACK, ALERT, CLIP, INBOX, INBOX_EVENT, SEEN, COMMAND, RESPONSE, LIBRARY,
    CAMERA_DISCOVERY, PERSON_DISCOVERY,
)  # fmt: skip
