"""The engine side of the MQTT contract (issue 13): each payload builder of ``comms/payloads.py``
against its JSON Schema in ``docs/schemas/``, each TypedDict's keys against the schema's
properties, and the topic table of ``comms/topics.py`` against ``docs/mqtt.md``.

The end-to-end tests (``test_service_e2e.py``, ``test_inbox.py``, ...) validate what a real engine
publishes on a real broker against the same schemas; here every builder is checked directly, its
rarer shapes included (an unknown face, an error response, an empty library).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, is_typeddict

import jsonschema
import pytest

from facetrack import __version__
from facetrack.alerts import Alert
from facetrack.comms import payloads as p
from facetrack.comms import topics
from facetrack.comms.mqtt import CONTRACT_VERSION, MqttClient
from facetrack.config.service import RESERVED_CAMERA_NAMES, AlertMode, MQTTConfig
from facetrack.events import TrackEvent
from facetrack.inbox import InboxGroup
from facetrack.library.store import Person
from facetrack.pose import POSE_BINS
from facetrack.record.clips import StoredClip
from facetrack.record.storage import CLIP_FILES, clip_key, new_clip_id
from mqtt_helpers import SCHEMAS

MQTT_DOC = Path(__file__).resolve().parents[1] / "docs" / "mqtt.md"
NOW = 1795335303.12  # 2026-11-22T08:15:03.120Z
ANNA = uuid.uuid4().hex
ORIGIN = "http://homeassistant.local:8099"


def validate(payload: object, schema: str) -> None:
    jsonschema.validate(payload, SCHEMAS[schema], format_checker=jsonschema.FormatChecker())


@dataclass(frozen=True)
class Sighting:  # what the service keeps per person (payloads.Sighting)
    last_seen: float
    last_camera: str


def event(kind: str = "identity", person: str | None = "Anna", reason: str | None = "vote") -> TrackEvent:
    return TrackEvent(
        type=kind,  # type: ignore[arg-type]
        frame=1532,
        ts=61.28,
        track_id=7,
        person=person,
        person_id=ANNA if person else None,
        similarity=0.712345 if person else 0.1834,
        bbox=[412.04, 180.51, 530.22, 322.93],
        reason=reason,
    )


def clip(keys: dict[str, str] | None = None) -> StoredClip:
    alert_id = uuid.uuid4().hex
    clip_id = new_clip_id(NOW, alert_id)
    if keys is None:
        keys = {kind: clip_key("front_door", clip_id, kind) for kind in CLIP_FILES}
    return StoredClip("front_door", clip_id, alert_id, keys, frames=125, duration_seconds=5.0)


def clip_payload(signed: bool) -> p.ClipPayload:
    c = clip()
    return p.clip_payload(c, {k: f"{ORIGIN}/clips/{key}?exp=1&sig=s" if signed else None for k, key in c.keys.items()})


def group(status: str = "pending", nearest: str | None = "Anna") -> InboxGroup:
    return InboxGroup(
        group_id=uuid.uuid4().hex,
        status=status,  # type: ignore[arg-type]
        count=14,
        tracks=3,
        cameras=("front_door", "garden"),
        first_seen=NOW - 50000,
        last_seen=NOW,
        crops=8,
        nearest_person=nearest,
        nearest_similarity=0.312345 if nearest else None,
    )


def crop_url(group_id: str, index: int) -> str:
    return f"{ORIGIN}/inbox/{group_id}/{index}.jpg?exp=1795421703&sig=abc"


# ---- every builder, validated against its schema ----------------------------------------------------

PAYLOADS: dict[str, list[Any]] = {
    "track": [
        p.track_payload("front_door", event("track_started", None, None), NOW),
        p.track_payload("front_door", event(), NOW),
        p.track_payload("front_door", event("identity", None, "vote"), NOW),
        p.track_payload("front_door", event("identity", "Anna", "recent_gallery"), NOW),
        p.track_payload("front_door", event("track_ended", "Anna", "lost"), NOW),
        p.track_payload("front_door", event("track_ended", None, "end_of_stream"), NOW),
    ],
    "alert": [
        p.alert_payload(Alert(uuid.uuid4().hex, "front_door", AlertMode.ON_KNOWNS, event()), NOW),
        p.alert_payload(
            Alert(uuid.uuid4().hex, "front_door", AlertMode.ON_UNKNOWNS, event(person=None)),
            NOW,
            snapshot_url=f"{ORIGIN}/clips/front_door/x/snapshot.jpg?exp=1&sig=s",
            clip_url=f"{ORIGIN}/clips/front_door/x/original.mp4?exp=1&sig=s",
        ),
    ],
    "seen": [
        p.seen_payload("front_door", 7, ANNA, "Anna", 0.712345, NOW),
        p.seen_payload("garden", 12, ANNA, "Anna", None, NOW),
    ],
    "state": [
        p.state_payload("front_door", "starting", 0.0, 0, None, now=NOW),
        p.state_payload(
            "front_door",
            "online",
            9.8765,
            2,
            None,
            stream_url="rtsp://homeassistant.local:8554/front_door",
            snapshot_url=f"{ORIGIN}/api/cameras/front_door/snapshot.jpg?token=t",
            mjpeg_url=f"{ORIGIN}/api/cameras/front_door/stream.mjpeg?token=t",
            now=NOW,
        ),
        p.state_payload("front_door", "offline", 0.0, 0, "cannot open rtsp://cam/stream", now=NOW),
        p.disabled_state_payload("garden", now=NOW),
    ],
    "clip": [
        clip_payload(signed=True),
        clip_payload(signed=False),  # no HTTP server: no URLs
    ],
    "response": [
        p.response_payload("r1", "enroll", {"person": "Anna", "person_id": ANNA, "embeddings": 1}),
        p.response_payload("r-2_x", "list"),
        p.response_payload("invalid", "enroll", error=("bad_request", "request_id must be 1-64 characters")),
        p.response_payload("r3", "forget", error=("not_found", "no person named 'Bob'")),
    ],
    "inbox": [
        p.inbox_payload([group(), group("ignored", None)], crop_url, now=NOW),
        p.inbox_payload([group()], None, now=NOW),
        p.inbox_payload([], crop_url),
    ],
    "inbox_event": [
        p.inbox_event_payload(uuid.uuid4().hex, "front_door", 7, crop_url("0" * 32, 0), NOW),
        p.inbox_event_payload(uuid.uuid4().hex, "garden", 1, None, NOW),
    ],
    "library": [
        p.library_payload("facetrack/hall", uuid.uuid4().hex, "s3://faces/library", "enroll", 12),
        p.library_payload("facetrack", uuid.uuid4().hex, "/data/faces", "delete_embedding", 0),
    ],
    "info": [
        p.info_payload(
            contract_version=CONTRACT_VERSION,
            version=__version__,
            backend="onnx",
            model_id="buffalo_l-w600k_r50",
            topic_prefix="facetrack",
            cameras=["front_door", "garden"],
            started_at=NOW,
            features=["inbox"],
            mqtt_outbox=MqttClient(MQTTConfig()).outbox_stats(),
        ),
        p.info_payload(
            contract_version=CONTRACT_VERSION,
            version=__version__,
            backend="degirum",
            model_id="m",
            topic_prefix="facetrack/yard",
            cameras=[],
            started_at=NOW,
        ),
        p.info_payload(
            contract_version=CONTRACT_VERSION,
            version=__version__,
            backend="opencv",
            model_id="m",
            topic_prefix="facetrack",
            cameras=["front_door"],
            disabled_cameras=["garden"],
            started_at=NOW,
        ),
    ],
    "persons": [
        p.persons_payload(
            [
                Person(ANNA, "Anna", {}, 4, NOW - 86400, {"frontal": 3, "three_quarter": 1, "profile": 0}),
                Person(uuid.uuid4().hex, "John Salley", {"x": 1}, 1, NOW, {"unknown": 1}),  # enrolled before poses
                Person(uuid.uuid4().hex, "Carl", {}, 2, NOW),  # a library that records no poses: all unknown
            ],
            {ANNA: Sighting(NOW - 5, "front_door")},
            now=NOW,
        ),
        p.persons_payload([], {}),
    ],
}


@pytest.mark.parametrize(
    ("schema", "payload"), [(name, pl) for name, pls in PAYLOADS.items() for pl in pls], ids=lambda x: str(x)[:24]
)
def test_payload_matches_its_schema(schema: str, payload: Any) -> None:
    assert type(payload) is dict  # a TypedDict is a plain dict on the wire
    validate(payload, schema)


def test_every_published_schema_has_a_builder_here() -> None:
    published = {tp.schema for tp in topics.TOPICS if tp.schema and not tp.inbound}
    assert published == set(PAYLOADS)
    assert published | {"command"} == set(SCHEMAS)


def test_builders_keep_todays_values() -> None:
    """The typed builders return what the untyped ones did (a few values pinned)."""
    t = PAYLOADS["track"][1]
    assert (t["similarity"], t["bbox"], t["time"], t["ts"]) == (
        0.7123, [412.0, 180.5, 530.2, 322.9], "2026-11-22T08:15:03.120Z", 1795335303.12,
    )  # fmt: skip
    assert list(PAYLOADS["response"][0]) == ["request_id", "command", "ok", "result"]
    assert PAYLOADS["response"][1]["result"] == {}
    assert PAYLOADS["response"][2]["error"] == {"code": "bad_request", "message": "request_id must be 1-64 characters"}
    info = PAYLOADS["info"][0]
    assert list(info) == [
        "contract_version", "version", "backend", "model_id", "topic_prefix", "cameras", "started_at", "features",
        "mqtt_outbox",
    ]  # fmt: skip
    assert info["features"] == ["inbox"] and "features" not in PAYLOADS["info"][1]
    assert "mqtt_outbox" not in PAYLOADS["info"][1] and "disabled_cameras" not in PAYLOADS["info"][1]
    assert PAYLOADS["info"][2]["disabled_cameras"] == ["garden"]
    disabled = PAYLOADS["state"][3]
    assert (disabled["state"], disabled["error"], disabled["stream_url"]) == ("disabled", p.CAMERA_DISABLED, None)
    persons = PAYLOADS["persons"][0]["persons"]
    assert persons[0] == {
        "person_id": ANNA, "name": "Anna", "embeddings": 4, "last_seen": "2026-11-22T08:14:58.120Z",
        "last_camera": "front_door", "poses": {"frontal": 3, "three_quarter": 1, "profile": 0, "unknown": 0},
        "missing_poses": ["profile"],
    }  # fmt: skip
    assert (persons[1]["last_seen"], persons[1]["last_camera"]) == (None, None)
    # No embedding with a known pose: every bin is 0, and which views are missing cannot be told.
    assert [(q["poses"], q["missing_poses"]) for q in persons[1:]] == [
        ({"frontal": 0, "three_quarter": 0, "profile": 0, "unknown": 1}, []),
        ({"frontal": 0, "three_quarter": 0, "profile": 0, "unknown": 2}, []),
    ]
    assert PAYLOADS["inbox"][0]["pending"] == 1 and PAYLOADS["inbox"][0]["ignored"] == 1


@pytest.mark.parametrize(
    ("poses", "embeddings", "counts", "missing"),
    [
        ({"frontal": 2}, 2, (2, 0, 0, 0), ["three_quarter", "profile"]),
        ({"profile": 1, "three_quarter": 1, "frontal": 1}, 3, (1, 1, 1, 0), []),
        ({"frontal": 1, "unknown": 3}, 4, (1, 0, 0, 3), ["three_quarter", "profile"]),  # mixed: the known ones tell
        ({"three_quarter": 1}, 3, (0, 1, 0, 2), ["frontal", "profile"]),  # "unknown" absent: the remainder
        ({"unknown": 5}, 5, (0, 0, 0, 5), []),  # a library enrolled before poses were recorded
        ({}, 0, (0, 0, 0, 0), []),
        ({"frontal": 1, "looking_down": 4}, 1, (1, 0, 0, 0), ["three_quarter", "profile"]),  # other keys: ignored
    ],
)
def test_pose_coverage(poses: dict[str, int], embeddings: int, counts: tuple[int, ...], missing: list[str]) -> None:
    got, got_missing = p.pose_coverage(poses, embeddings)
    assert list(got) == [*POSE_BINS, "unknown"]
    assert tuple(got.values()) == counts
    assert got_missing == missing


@pytest.mark.xfail(strict=True, reason="known mismatch, reported in issue 13: a recovered clip whose annotated video "
                   "or annotations were lost is announced without their URLs, which clip.json requires")  # fmt: skip
def test_recovered_clip_with_lost_files_matches_the_schema() -> None:
    c = clip()
    kept = {k: v for k, v in c.keys.items() if k in ("original", "snapshot")}
    partial = StoredClip(c.camera, c.clip_id, c.alert_id, kept, 40, 1.6, recovered=True)
    validate(p.clip_payload(partial, {k: f"{ORIGIN}/clips/{key}" for k, key in kept.items()}), "clip")


# ---- the TypedDicts and the schemas name the same keys ------------------------------------------------


def _sub(schema: str, *path: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMAS[schema]
    for key in path:
        node = node[key]
    return node


MODELS: list[tuple[Any, dict[str, Any]]] = [
    *[(tp.payload, SCHEMAS[tp.schema]) for tp in topics.TOPICS if tp.payload is not None and tp.schema],
    (p.InboxGroupPayload, _sub("inbox", "properties", "groups", "items")),
    (p.PersonEntry, _sub("persons", "properties", "persons", "items")),
    (p.ResponseError, _sub("response", "properties", "error")),
]


@pytest.mark.parametrize(("model", "schema"), MODELS, ids=lambda x: getattr(x, "__name__", ""))
def test_typeddict_keys_are_the_schema_properties(model: Any, schema: dict[str, Any]) -> None:
    assert is_typeddict(model)
    assert set(model.__annotations__) == set(schema["properties"])
    assert model.__required_keys__ == set(schema.get("required", ()))


# ---- the topic table ---------------------------------------------------------------------------------------


def test_no_event_is_retained() -> None:
    assert {tp.name for tp in topics.TOPICS if tp.event} == {
        "track", "alert", "clip", "inbox_event", "seen", "response", "library",
    }  # fmt: skip
    assert not [tp.name for tp in topics.TOPICS if tp.event and tp.retain]
    with pytest.raises(ValueError, match="never retained"):
        topics.Topic("x", ("x",), qos=1, retain=True, event=True)


def test_topic_levels() -> None:
    assert topics.STATE.fields == ("camera",)
    assert topics.STATE.parts(camera="front_door") == ("front_door", "state")
    assert topics.RESPONSE.parts(request_id="r1") == ("response", "r1")
    assert topics.INFO.parts() == ("info",)
    with pytest.raises(ValueError, match="takes"):
        topics.SEEN.parts(camera="x")
    with pytest.raises(ValueError, match="takes"):
        topics.INFO.parts(camera="x")
    with pytest.raises(ValueError, match="absolute"):
        topics.LIBRARY.parts()


def test_top_levels_are_reserved_camera_names() -> None:
    """A camera named like a top-level topic would publish among the engine's own topics."""
    tops = {tp.levels[0] for tp in topics.TOPICS if not tp.absolute and tp.levels[0] != "<camera>"}
    assert tops | {"library"} == RESERVED_CAMERA_NAMES  # library: mqtt.library_topic's default


def test_table_agrees_with_docs() -> None:
    """Every row of docs/mqtt.md's topic table is in topics.TOPICS with the same retain and QoS."""
    rows = re.findall(r"^\| `([^`]+)`[^|]*\| (\*\*no\*\*|no|yes) \| ([01]) \|", MQTT_DOC.read_text(), re.M)
    assert len(rows) == 13
    by_doc = {"<prefix>/" + "/".join(tp.levels): tp for tp in topics.TOPICS if not tp.absolute}
    by_doc["mqtt.library_topic"] = topics.LIBRARY
    for topic, retained, qos in rows:
        tp = by_doc[topic]
        assert (tp.retain, tp.qos) == (retained == "yes", int(qos)), topic
    assert {tp.name for tp in by_doc.values()} == {tp.name for tp in topics.TOPICS if "discovery" not in tp.name}
