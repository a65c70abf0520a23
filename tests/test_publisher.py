"""The publisher (``comms/publisher.py``): every topic's levels, QoS and retain come from the topic
table and equal today's, no event is retained, and every retained-state provider is republished."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from facetrack.comms import payloads as p
from facetrack.comms import topics
from facetrack.comms.discovery import camera_discovery, person_discovery
from facetrack.comms.publisher import Publisher

NOW = 1795335303.12
PID = uuid.uuid4().hex


@dataclass
class Sent:
    topic: str
    payload: Any
    qos: int
    retain: bool


@dataclass
class RecordingSink:
    """Records what would go to the broker (the MqttSink of MqttClient)."""

    prefix: str = "facetrack"
    sent: list[Sent] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def publish_json(self, topic: str, payload: dict[str, Any], qos: int = 0, retain: bool = False) -> None:
        self.sent.append(Sent(topic, payload, qos, retain))

    def clear_retained(self, topic: str) -> None:
        self.cleared.append(topic)


def make(discovery: bool = False) -> tuple[Publisher, RecordingSink]:
    sink = RecordingSink()
    pub = Publisher(sink, "facetrack", "facetrack/library", "homeassistant" if discovery else None)
    return pub, sink


STATE = p.state_payload("front_door", "online", 10.0, 1, None, now=NOW)
TRACK: Any = {"type": "track_started"}  # shape-free stand-ins: the publisher never reads a payload
ALERT: Any = {"alert_id": uuid.uuid4().hex}
CLIP: Any = {"clip_id": "c"}
SEEN = p.seen_payload("front_door", 7, PID, "Anna", 0.7, NOW)
INFO: Any = {"contract_version": "1"}
PERSONS = p.persons_payload([], {}, now=NOW)
INBOX = p.inbox_payload([], None, now=NOW)
INBOX_EVENT = p.inbox_event_payload(uuid.uuid4().hex, "front_door", 7, None, NOW)
RESPONSE = p.response_payload("r1", "list", {})
NOTICE = p.library_payload("facetrack", uuid.uuid4().hex, "/data/faces", "enroll", 3)

#: method, arguments, today's topic / QoS / retain (the call sites of service.py and commands.py), table row.
CASES: list[tuple[str, tuple[Any, ...], str, int, bool, topics.Topic]] = [
    ("state", ("front_door", STATE), "facetrack/front_door/state", 1, True, topics.STATE),
    ("track", ("front_door", TRACK), "facetrack/front_door/track", 0, False, topics.TRACK),
    ("alert", ("front_door", ALERT), "facetrack/front_door/alert", 1, False, topics.ALERT),
    ("clip", ("front_door", CLIP), "facetrack/front_door/clip", 1, False, topics.CLIP),
    ("seen", (PID, SEEN), f"facetrack/seen/{PID}", 0, False, topics.SEEN),
    ("info", (INFO,), "facetrack/info", 1, True, topics.INFO),
    ("persons", (PERSONS,), "facetrack/persons", 1, True, topics.PERSONS),
    ("inbox", (INBOX,), "facetrack/inbox", 1, True, topics.INBOX),
    ("inbox_event", (INBOX_EVENT,), "facetrack/inbox/event", 1, False, topics.INBOX_EVENT),
    ("response", ("r1", RESPONSE), "facetrack/response/r1", 1, False, topics.RESPONSE),
    ("library_notice", (NOTICE,), "facetrack/library", 1, False, topics.LIBRARY),
]


@pytest.mark.parametrize(("method", "args", "topic", "qos", "retain", "row"), CASES, ids=[c[0] for c in CASES])
def test_each_topic_as_today_and_as_the_table(
    method: str, args: tuple[Any, ...], topic: str, qos: int, retain: bool, row: topics.Topic
) -> None:
    pub, sink = make()
    getattr(pub, method)(*args)
    assert len(sink.sent) == 1
    sent = sink.sent[0]
    assert (sent.topic, sent.qos, sent.retain) == (topic, qos, retain)
    assert (sent.qos, sent.retain) == (row.qos, row.retain)
    assert sent.payload is args[-1]  # passed on as is: no copy, no change


def test_every_published_topic_has_a_method() -> None:
    covered = {c[5].name for c in CASES}
    not_here = {"status", "camera_discovery", "person_discovery"}  # MqttClient's own; discovery tested below
    assert covered == {t.name for t in topics.TOPICS if not t.inbound} - not_here


def test_no_retained_event_payload() -> None:
    """Whatever the publisher sends retained is state, never an event."""
    pub, sink = make(discovery=True)
    for method, args, *_ in CASES:
        getattr(pub, method)(*args)
    pub.camera_discovery("front_door")
    pub.person_discovery({PID: "Anna"})
    events = {id(c[1][-1]) for c in CASES if c[5].event}
    retained = [s for s in sink.sent if s.retain]
    assert len(retained) == 6  # state, info, persons, inbox, two discovery configs
    assert not [s.topic for s in retained if id(s.payload) in events]
    assert not [s.topic for s in retained if "event_id" in s.payload or "alert_id" in s.payload]


def test_discovery_off_publishes_nothing() -> None:
    pub, sink = make()
    pub.camera_discovery("front_door")
    pub.person_discovery({PID: "Anna"})
    assert sink.sent == [] and sink.cleared == []


def test_discovery_configs() -> None:
    pub, sink = make(discovery=True)
    pub.camera_discovery("front_door")
    cam = sink.sent[-1]
    assert (cam.topic, cam.qos, cam.retain) == ("homeassistant/device/facetrack_camera_front_door/config", 1, True)
    assert cam.payload == camera_discovery("facetrack", "front_door")
    bob = uuid.uuid4().hex
    pub.person_discovery({PID: "Anna", bob: "Bob"})
    assert [s.topic for s in sink.sent[1:]] == [
        f"homeassistant/device/facetrack_person_{PID}/config", f"homeassistant/device/facetrack_person_{bob}/config",
    ]  # fmt: skip
    assert sink.sent[1].payload == person_discovery("facetrack", PID, "Anna")
    assert all((s.qos, s.retain) == (1, True) for s in sink.sent)
    del sink.sent[:]
    pub.person_discovery({PID: "Anna", bob: "Bob"})  # nothing changed: nothing sent
    assert sink.sent == []
    pub.person_discovery({PID: "Anna B."})  # renamed and forgotten
    assert [s.payload["dev"]["name"] for s in sink.sent] == ["Anna B."]
    assert sink.cleared == [f"homeassistant/device/facetrack_person_{bob}/config"]
    del sink.sent[:]
    pub.republish()  # the broker may have lost them: all again at the next call
    pub.person_discovery({PID: "Anna B."})
    assert len(sink.sent) == 1


def test_republish_calls_every_provider_even_if_one_raises(caplog: pytest.LogCaptureFixture) -> None:
    pub, sink = make()
    calls: list[str] = []

    def info() -> None:
        calls.append("info")
        pub.info(INFO)

    def persons() -> None:
        calls.append("persons")
        raise RuntimeError("library unreachable")

    def states() -> None:
        calls.append("states")
        pub.state("front_door", STATE)

    for provider in (info, persons, states):
        pub.add_retained(provider)
    with caplog.at_level(logging.ERROR, logger="facetrack.comms.publisher"):
        pub.republish()
        pub.republish()
    assert calls == ["info", "persons", "states"] * 2
    assert [s.topic for s in sink.sent] == ["facetrack/info", "facetrack/front_door/state"] * 2
    failed = [r for r in caplog.records if "persons" in r.getMessage()]
    assert len(failed) == 2 and failed[0].exc_info is not None
