"""The typed payload parsers (payloads.py) and the device-identifier parse of hub.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from custom_components.facetrack.const import DOMAIN
from custom_components.facetrack.hub import (
    DeviceKind,
    camera_identifier,
    engine_identifier,
    parse_identifier,
    person_identifier,
)
from custom_components.facetrack.payloads import (
    COVERAGE_STATES,
    Alert,
    CameraState,
    Clip,
    Inbox,
    InboxEvent,
    InboxGroup,
    Info,
    PayloadError,
    Person,
    Persons,
    Response,
    Seen,
    loads,
    parse_time,
)
from homeassistant.const import STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from .helpers import (
    ALERT_ID,
    ANNA_ID,
    BOB_ID,
    GROUP_A,
    PREFIX,
    TIME,
    TS,
    alert,
    group,
    inbox,
    info,
    person,
    persons,
    seen,
    state,
    validate,
)

CLIP_URL = "http://engine.local:8099/clips/front_door/c1/"


def _clip() -> dict[str, Any]:
    return {
        "camera": "front_door",
        "clip_id": "20261122T081503Z_0a1b2c3d",
        "alert_id": ALERT_ID,
        "frames": 48,
        "duration_s": 4.0,
        "urls": {
            "original": f"{CLIP_URL}original.mp4",
            "annotated": None,
            "annotations": f"{CLIP_URL}annotations.json",
            "snapshot": f"{CLIP_URL}snapshot.jpg",
        },
        "time": TIME,
    }


def _inbox_event() -> dict[str, Any]:
    return {
        "event_id": "e" * 32,
        "type": "new_group",
        "group_id": GROUP_A,
        "camera": "front_door",
        "track_id": 7,
        "crop_url": "http://engine.local:8099/inbox/x/0.jpg",
        "time": TIME,
        "ts": TS,
    }


def _response(**fields: Any) -> dict[str, Any]:
    return {"request_id": "r1", "command": "forget", **fields}


def _with_extra(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload of a newer engine: a key this integration does not know, at the top and in nested objects."""
    extended = json.loads(json.dumps(payload))
    extended["added_later"] = {"any": ["thing"]}
    for value in extended.values():
        if isinstance(value, dict):
            value["added_later"] = 1
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    item["added_later"] = 1
    return extended


# -- payloads of the contract (each validated against docs/schemas first) ----------------------


def test_info() -> None:
    """Every field the integration reads; the decoded object is kept for diagnostics."""
    data = _with_extra(validate("info", info()))
    parsed = Info.from_json(data)
    assert parsed == Info(topic_prefix=PREFIX, cameras=("front_door", "garden"), version="0.1.0", backend="opencv")
    assert parsed.raw is data


def test_camera_state() -> None:
    """Numbers stay as sent (an integer fps is not turned into a float)."""
    data = _with_extra(validate("state", state("garden", fps=12)))
    parsed = CameraState.from_json(data, "garden")
    assert parsed == CameraState(
        camera="garden",
        state="online",
        fps=12,
        faces=1,
        stream_url="rtsp://user:secret@cam.local/garden",
        snapshot_url="http://engine.local:8099/cameras/garden/snapshot.jpg",
    )
    assert isinstance(parsed.fps, int)
    assert parsed.raw is data


def test_persons() -> None:
    """The library's persons in order; a person without a name is shown by id."""
    data = _with_extra(validate("persons", persons(person(ANNA_ID, "Anna", TIME), person(BOB_ID, "Bob"))))
    parsed = Persons.from_json(data)
    poses = (("frontal", 2), ("three_quarter", 0), ("profile", 0), ("unknown", 0))
    missing = ("three_quarter", "profile")
    assert parsed.persons == (
        Person(ANNA_ID, "Anna", TIME, "front_door", poses, missing),
        Person(person_id=BOB_ID, name="Bob", poses=poses, missing_poses=missing),
    )
    assert parsed.persons[0].raw is data["persons"][0]
    assert parsed.persons[0].display_name == "Anna"
    assert Person(person_id=BOB_ID).display_name == BOB_ID


def test_person_of_an_older_engine() -> None:
    """An engine before head poses sends neither `poses` nor `missing_poses`: coverage unknown."""
    parsed = Person.from_json(person(ANNA_ID, "Anna", TIME, coverage=None))
    assert parsed == Person(ANNA_ID, "Anna", TIME, "front_door")
    assert (parsed.poses, parsed.missing_poses, parsed.coverage) == (None, (), None)


def _coverage(poses: dict[str, int], missing: list[str]) -> dict[str, Any]:
    return {"poses": {"frontal": 0, "three_quarter": 0, "profile": 0, "unknown": 0, **poses}, "missing_poses": missing}


@pytest.mark.parametrize(
    ("coverage", "expected"),
    [
        (_coverage({"frontal": 2}, ["three_quarter", "profile"]), "add_three_quarter_profile"),
        (_coverage({"frontal": 1, "three_quarter": 1}, ["profile"]), "add_profile"),
        (_coverage({"profile": 3}, ["frontal", "three_quarter"]), "add_frontal_three_quarter"),
        (_coverage({"frontal": 1, "three_quarter": 2, "profile": 1, "unknown": 4}, []), "complete"),
        (_coverage({"frontal": 1, "unknown": 3}, ["three_quarter", "profile"]), "add_three_quarter_profile"),
        # A library enrolled before poses were recorded: the engine cannot tell what is missing.
        (_coverage({"unknown": 5}, []), None),
    ],
)
def test_gallery_coverage(coverage: dict[str, Any], expected: str | None) -> None:
    """The coverage hint names the missing head poses, frontal to profile; every value is a known state."""
    parsed = Person.from_json(validate("persons", persons(person(ANNA_ID, "Anna", coverage=coverage)))["persons"][0])
    assert parsed.missing_poses == tuple(coverage["missing_poses"])
    assert dict(parsed.poses or ()) == coverage["poses"]
    assert parsed.coverage == expected
    assert expected is None or expected in COVERAGE_STATES


def test_gallery_coverage_of_a_newer_engine() -> None:
    """A pose bin this version does not know: counted as sent; missing alone, the hint stays generic."""
    newer = {"frontal": 1, "three_quarter": 1, "profile": 1, "unknown": 0, "looking_down": 0}
    parsed = Person.from_json({"person_id": ANNA_ID, "poses": newer, "missing_poses": ["looking_down"]})
    assert dict(parsed.poses or ()) == newer
    assert parsed.coverage == "incomplete"
    parsed = Person.from_json({"person_id": ANNA_ID, "poses": newer, "missing_poses": ["looking_down", "profile"]})
    assert parsed.coverage == "add_profile"
    assert COVERAGE_STATES[0] == "complete" and len(set(COVERAGE_STATES)) == 9  # complete, 7 combinations, generic


def test_inbox() -> None:
    """The groups in the engine's order and its counts."""
    data = _with_extra(validate("inbox", inbox(group(GROUP_A), group("7" * 32, "ignored", cameras=[], crop_url=None))))
    parsed = Inbox.from_json(data)
    assert parsed.pending == 1
    assert parsed.ignored == 1
    assert parsed.groups[0] == InboxGroup(
        group_id=GROUP_A,
        status="pending",
        count=14,
        tracks=3,
        cameras=("front_door",),
        first_seen="2026-11-21T18:02:11.400Z",
        last_seen=TIME,
        crop_url=f"http://engine.local:8099/inbox/{GROUP_A}/0.jpg?exp=1795421703&sig=x",
        nearest_person="Anna",
    )
    assert parsed.groups[1].status == "ignored"
    assert parsed.groups[1].cameras == ()
    assert parsed.groups[1].crop_url is None
    assert parsed.groups[0].raw is data["groups"][0]


def test_seen() -> None:
    """Camera, similarity and time of a sighting."""
    data = _with_extra(validate("seen", seen(ANNA_ID, "Anna", "garden", 0.8)))
    assert Seen.from_json(data) == Seen(camera="garden", similarity=0.8, time=TIME)


def test_alert() -> None:
    """Known and unknown faces (an unknown face has no person)."""
    known = Alert.from_json(_with_extra(validate("alert", alert("front_door", "known_face", "Anna", ANNA_ID))))
    assert known == Alert(
        kind="known_face",
        alert_id=ALERT_ID,
        track_id=7,
        person="Anna",
        person_id=ANNA_ID,
        similarity=0.71,
        snapshot_url=f"http://engine.local:8099/alerts/{ALERT_ID}/snapshot.jpg?exp=1&sig=x",
        clip_url="http://engine.local:8099/clips/front_door/c1/original.mp4?exp=1&sig=x#t=1.96",
        clip_offset_seconds=1.96,
        time=TIME,
    )
    unknown = Alert.from_json(validate("alert", alert("garden", "unknown_face")))
    assert (unknown.kind, unknown.person, unknown.person_id) == ("unknown_face", None, None)


def test_clip() -> None:
    """The alert id and the snapshot URL among the clip's URLs."""
    parsed = Clip.from_json(_with_extra(validate("clip", _clip())))
    assert parsed == Clip(alert_id=ALERT_ID, snapshot_url=f"{CLIP_URL}snapshot.jpg")
    no_snapshot = _clip()
    del no_snapshot["urls"]["snapshot"]
    assert Clip.from_json(validate("clip", no_snapshot)).snapshot_url is None


def test_inbox_event() -> None:
    """A new group."""
    parsed = InboxEvent.from_json(_with_extra(validate("inbox_event", _inbox_event())))
    assert parsed == InboxEvent(
        type="new_group",
        group_id=GROUP_A,
        camera="front_door",
        track_id=7,
        crop_url="http://engine.local:8099/inbox/x/0.jpg",
    )


def test_response() -> None:
    """A result, or an error's code and message."""
    ok = Response.from_json(_with_extra(validate("response", _response(ok=True, result={"person": "Anna"}))))
    assert ok == Response(ok=True, result={"person": "Anna", "added_later": 1})
    failed = validate("response", _response(ok=False, error={"code": "not_found", "message": "no such person"}))
    assert Response.from_json(failed) == Response(ok=False, error_code="not_found", error_message="no such person")


# -- older engines and fields left out -------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "expected"),
    [
        (CameraState.from_json, CameraState()),
        (Seen.from_json, Seen()),
        (Clip.from_json, Clip()),
        (Response.from_json, Response()),
    ],
)
def test_no_field_required(parse: Any, expected: Any) -> None:
    """An empty object parses: every field is None."""
    assert parse({}) == expected


def test_only_required_fields() -> None:
    """Absent and null optional fields are None; a kind added later is kept (the entities skip it)."""
    assert Alert.from_json({"kind": "pet"}) == Alert(kind="pet")
    assert Alert.from_json({"kind": "pet", "person": None, "track_id": None}) == Alert(kind="pet")
    assert Info.from_json({"contract_version": "1", "topic_prefix": "p", "cameras": []}) == Info("p", ())
    assert Persons.from_json({"persons": []}) == Persons(())
    assert Inbox.from_json({"groups": []}) == Inbox(groups=(), pending=None, ignored=None)
    assert InboxGroup.from_json({"group_id": GROUP_A}) == InboxGroup(GROUP_A)
    assert InboxEvent.from_json({"type": "new_group", "group_id": GROUP_A}) == InboxEvent("new_group", GROUP_A)
    assert Clip.from_json({"urls": None}) == Clip()


# -- malformed payloads ----------------------------------------------------------------------

PARSERS = (Info, CameraState, Person, Persons, InboxGroup, Inbox, Seen, Alert, Clip, InboxEvent, Response)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda parser: parser.__name__)
@pytest.mark.parametrize("data", [[], "text", 1, None, True])
def test_not_an_object(parser: Any, data: Any) -> None:
    """Every payload is a JSON object."""
    with pytest.raises(PayloadError, match="expected an object"):
        parser.from_json(data)


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (Info.from_json, {"topic_prefix": "p", "cameras": []}, "contract_version"),
        (Info.from_json, {"contract_version": "2", "topic_prefix": "p", "cameras": []}, "contract_version"),
        (Info.from_json, {"contract_version": "1", "cameras": []}, "topic_prefix: missing"),
        (Info.from_json, {"contract_version": "1", "topic_prefix": "p"}, "cameras: missing"),
        (Info.from_json, {"contract_version": "1", "topic_prefix": "p", "cameras": None}, "cameras: missing"),
        (Persons.from_json, {"time": TIME}, "persons: missing"),
        (Person.from_json, {"name": "Anna"}, "person_id: missing"),
        (Inbox.from_json, {"pending": 0}, "groups: missing"),
        (InboxGroup.from_json, {"status": "pending"}, "group_id: missing"),
        (Alert.from_json, {"person": "Anna"}, "kind: missing"),
        (InboxEvent.from_json, {"group_id": GROUP_A}, "type: missing"),
        (InboxEvent.from_json, {"type": "new_group"}, "group_id: missing"),
    ],
)
def test_missing_required_field(parse: Any, data: dict[str, Any], message: str) -> None:
    """A required field left out (or null) makes the payload invalid."""
    with pytest.raises(PayloadError, match=message):
        parse(data)


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (Info.from_json, {"contract_version": 1, "topic_prefix": "p", "cameras": []}, "contract_version"),
        (Info.from_json, {"contract_version": "1", "topic_prefix": 3, "cameras": []}, "topic_prefix: expected"),
        (Info.from_json, {"contract_version": "1", "topic_prefix": "p", "cameras": "a"}, "cameras: expected a list"),
        (Info.from_json, {"contract_version": "1", "topic_prefix": "p", "cameras": [], "version": 1}, "version"),
        (CameraState.from_json, {"fps": "fast"}, "fps: expected a number, got str"),
        (CameraState.from_json, {"fps": True}, "fps: expected a number, got bool"),
        (CameraState.from_json, {"faces": 1.5}, "faces: expected an integer, got float"),
        (CameraState.from_json, {"faces": False}, "faces: expected an integer, got bool"),
        (CameraState.from_json, {"stream_url": ["rtsp://x"]}, "stream_url: expected a string"),
        (CameraState.from_json, {"camera": 1}, "camera: expected a string"),
        (Persons.from_json, {"persons": 1}, "persons: expected a list"),
        (Person.from_json, {"person_id": ANNA_ID, "name": 3}, "name: expected a string"),
        (Person.from_json, {"person_id": ANNA_ID, "poses": [1, 0]}, "poses: expected an object"),
        (Person.from_json, {"person_id": ANNA_ID, "poses": {"profile": "none"}}, "profile: expected an integer"),
        (Person.from_json, {"person_id": ANNA_ID, "missing_poses": "profile"}, "missing_poses: expected a list"),
        (Inbox.from_json, {"groups": 3}, "groups: expected a list"),
        (Inbox.from_json, {"groups": [], "pending": "2"}, "pending: expected an integer"),
        (InboxGroup.from_json, {"group_id": GROUP_A, "cameras": "front_door"}, "cameras: expected a list"),
        (InboxGroup.from_json, {"group_id": GROUP_A, "count": "14"}, "count: expected an integer"),
        (Seen.from_json, {"similarity": "high"}, "similarity: expected a number"),
        (Alert.from_json, {"kind": 1}, "kind: expected a string, got int"),
        (Alert.from_json, {"kind": "known_face", "track_id": "7"}, "track_id: expected an integer"),
        (Clip.from_json, {"urls": []}, "urls: expected an object"),
        (Clip.from_json, {"urls": {"snapshot": 1}}, "snapshot: expected a string"),
        (InboxEvent.from_json, {"type": "new_group", "group_id": 5}, "group_id: expected a string"),
        (Response.from_json, {"ok": "yes"}, "ok: expected a boolean"),
        (Response.from_json, {"ok": True, "result": []}, "result: expected an object"),
        (Response.from_json, {"ok": False, "error": "oops"}, "error: expected an object"),
        (Response.from_json, {"ok": False, "error": {"code": 5}}, "code: expected a string"),
    ],
)
def test_wrong_type(parse: Any, data: dict[str, Any], message: str) -> None:
    """A field of the wrong JSON type makes the payload invalid (bools are no numbers)."""
    with pytest.raises(PayloadError, match=message):
        parse(data)


def test_camera_state_of_another_camera() -> None:
    """A state naming another camera than its topic's is invalid; without a camera it is the topic's."""
    with pytest.raises(PayloadError, match="camera"):
        CameraState.from_json({"camera": "garden"}, "front_door")
    assert CameraState.from_json({"state": "online"}, "front_door").state == "online"
    assert CameraState.from_json({"camera": "garden"}).camera == "garden"


def test_list_items_that_do_not_parse_are_skipped() -> None:
    """In lists, the items that do not parse are left out and the rest is kept."""
    library = Persons.from_json(
        {"persons": [1, {"name": "X"}, {"person_id": 5}, {"person_id": BOB_ID, "name": 3}, {"person_id": ANNA_ID}]}
    )
    assert [p.person_id for p in library.persons] == [ANNA_ID]
    groups = Inbox.from_json({"groups": ["x", {"group_id": None}, {"group_id": GROUP_A, "count": "1"}, group(GROUP_A)]})
    assert [g.group_id for g in groups.groups] == [GROUP_A]
    assert groups.groups[0].count == 14
    assert Info.from_json({"contract_version": "1", "topic_prefix": "p", "cameras": [1, "a", None]}).cameras == ("a",)
    assert InboxGroup.from_json({"group_id": GROUP_A, "cameras": ["a", 2]}).cameras == ("a",)


def test_payloads_are_frozen() -> None:
    """Parsed payloads are values: shared by the hub and the entities, changed by none."""
    parsed = Seen(camera="garden")
    with pytest.raises(AttributeError):
        parsed.camera = "front_door"  # type: ignore[misc]


# -- decoding and times ----------------------------------------------------------------------


def test_loads() -> None:
    """JSON from str, bytes or bytearray; anything else raises PayloadError (a ValueError)."""
    assert loads('{"a": 1}') == {"a": 1}
    assert loads(b"[1]") == [1]
    assert loads(bytearray(b'"x"')) == "x"
    for payload in ("not json", b"\xff\xfe\x00", ""):
        with pytest.raises(PayloadError, match="not JSON"):
            loads(payload)
    assert issubclass(PayloadError, ValueError)


def test_parse_time() -> None:
    """Contract times become aware UTC datetimes; absent or unreadable ones None."""
    assert parse_time(TIME) == datetime(2026, 11, 22, 8, 15, 3, 120000, tzinfo=UTC)
    assert parse_time("2026-11-22T08:15:03Z") == datetime(2026, 11, 22, 8, 15, 3, tzinfo=UTC)
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


# -- device identifiers --------------------------------------------------------------------------


def test_parse_identifier() -> None:
    """The inverse of the identifier builders; identifiers of another prefix or domain are not ours."""
    assert parse_identifier(PREFIX, engine_identifier(PREFIX)) == (DeviceKind.ENGINE, "")
    assert parse_identifier(PREFIX, camera_identifier(PREFIX, "front_door")) == (DeviceKind.CAMERA, "front_door")
    assert parse_identifier(PREFIX, person_identifier(PREFIX, ANNA_ID)) == (DeviceKind.PERSON, ANNA_ID)
    assert camera_identifier(PREFIX, "garden") == (DOMAIN, f"{PREFIX}:camera:garden")
    assert person_identifier(PREFIX, ANNA_ID) == (DOMAIN, f"{PREFIX}:person:{ANNA_ID}")
    assert parse_identifier("home/ft", camera_identifier("home/ft", "porch")) == (DeviceKind.CAMERA, "porch")
    assert parse_identifier(PREFIX, camera_identifier("lab", "front_door")) is None
    assert parse_identifier(PREFIX, engine_identifier("lab")) is None
    assert parse_identifier(PREFIX, (DOMAIN, f"{PREFIX}:robot:r2")) is None
    assert parse_identifier(PREFIX, ("mqtt", PREFIX)) is None


# -- through the hub -----------------------------------------------------------------------------


async def test_newer_engine_payloads_are_accepted(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Keys a newer engine adds change nothing: the event carries the same attributes."""
    payload = _with_extra(validate("alert", alert("front_door", "known_face", "Anna", ANNA_ID)))
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/alert", json.dumps(payload), qos=1)
    await hass.async_block_till_done()
    event = hass.states.get("event.facetrack_front_door_face")
    assert event.attributes["event_type"] == "known_face"
    assert {key: event.attributes[key] for key in ("person", "person_id", "track_id", "alert_id")} == {
        "person": "Anna",
        "person_id": ANNA_ID,
        "track_id": 7,
        "alert_id": ALERT_ID,
    }
    assert "added_later" not in event.attributes


async def test_wrongly_typed_payloads_are_ignored(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload with a field of the wrong type is logged and changes nothing."""
    bad = validate("alert", alert("front_door", "known_face", "Anna", ANNA_ID))
    bad["track_id"] = "7"
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/alert", json.dumps(bad), qos=1)
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/state", json.dumps(state("front_door", faces="many")))
    await hass.async_block_till_done()
    assert hass.states.get("event.facetrack_front_door_face").state == STATE_UNKNOWN
    assert hass.states.get("sensor.facetrack_front_door_faces_in_view").state == "1"
    assert f"Ignoring an invalid alert on {PREFIX}/front_door/alert" in caplog.text
    assert f"Ignoring an invalid camera state on {PREFIX}/front_door/state" in caplog.text
