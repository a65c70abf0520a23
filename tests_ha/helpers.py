"""Payloads of the engine's MQTT contract v1, validated against docs/schemas before use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from jsonschema import Draft202012Validator
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
SCHEMAS = {
    path.stem: Draft202012Validator(json.loads(path.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER)
    for path in SCHEMA_DIR.glob("*.json")
}

PREFIX = "facetrack"
ANNA_ID = "9f1e" + "0" * 28
BOB_ID = "b0b0" + "1" * 28
CARL_ID = "ca71" + "2" * 28
TIME = "2026-11-22T08:15:03.120Z"
TS = 1795335303.12
ALERT_ID = "a" * 32


def validate(schema: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate a payload against the contract's schema (raises on mismatch)."""
    SCHEMAS[schema].validate(payload)
    return payload


def fire(
    hass: HomeAssistant,
    topic: str,
    payload: dict[str, Any],
    schema: str,
    *,
    retain: bool = False,
    qos: int = 0,
) -> None:
    """Fire a contract payload on a topic, after validating it."""
    validate(schema, payload)
    async_fire_mqtt_message(hass, topic, json.dumps(payload), qos=qos, retain=retain)


def info(cameras: list[str] | None = None, prefix: str = PREFIX, disabled: list[str] | None = None) -> dict[str, Any]:
    """An `<prefix>/info` payload; `disabled`: its `disabled_cameras`."""
    payload: dict[str, Any] = {
        "contract_version": "1",
        "version": "0.1.0",
        "backend": "opencv",
        "model_id": "sface_2021dec",
        "topic_prefix": prefix,
        "cameras": ["front_door", "garden"] if cameras is None else cameras,
        "started_at": TIME,
    }
    if disabled is not None:
        payload["disabled_cameras"] = disabled
    return payload


#: The head-pose coverage of `person`'s two embeddings: both frontal (a photo and a camera snapshot).
FRONTAL_ONLY: dict[str, Any] = {
    "poses": {"frontal": 2, "three_quarter": 0, "profile": 0, "unknown": 0},
    "missing_poses": ["three_quarter", "profile"],
}


def person(
    person_id: str, name: str, last_seen: str | None = None, coverage: dict[str, Any] | None = FRONTAL_ONLY
) -> dict[str, Any]:
    """One person of the face library; `coverage`: its `poses` and `missing_poses` (None: an engine
    without them, not valid under today's schema)."""
    return {
        "person_id": person_id,
        "name": name,
        "embeddings": 2,
        "last_seen": last_seen,
        "last_camera": "front_door" if last_seen else None,
        **(coverage or {}),
    }


def persons(*entries: dict[str, Any]) -> dict[str, Any]:
    """A `<prefix>/persons` payload."""
    return {"persons": list(entries), "time": TIME}


def state(camera: str, **changes: Any) -> dict[str, Any]:
    """A `<prefix>/<camera>/state` payload."""
    payload = {
        "camera": camera,
        "state": "online",
        "fps": 12.5,
        "faces": 1,
        "error": None,
        "stream_url": f"rtsp://user:secret@cam.local/{camera}",
        "snapshot_url": f"http://engine.local:8099/cameras/{camera}/snapshot.jpg",
        "mjpeg_url": f"http://engine.local:8099/cameras/{camera}/stream.mjpeg",
        "time": TIME,
    }
    payload.update(changes)
    return payload


def seen(person_id: str, name: str, camera: str = "front_door", similarity: float = 0.71) -> dict[str, Any]:
    """A `<prefix>/seen/<person_id>` payload."""
    return {
        "person_id": person_id,
        "person": name,
        "camera": camera,
        "track_id": 7,
        "similarity": similarity,
        "time": TIME,
        "ts": TS,
    }


def alert(camera: str, kind: str, name: str | None = None, person_id: str | None = None) -> dict[str, Any]:
    """A `<prefix>/<camera>/alert` payload."""
    return {
        "alert_id": ALERT_ID,
        "camera": camera,
        "alert_mode": "ON_ALL",
        "kind": kind,
        "track_id": 7,
        "person": name,
        "person_id": person_id,
        "similarity": 0.71 if name else 0.2,
        "bbox": [412.0, 180.5, 530.2, 322.9],
        "snapshot_url": f"http://engine.local:8099/alerts/{ALERT_ID}/snapshot.jpg?exp=1&sig=x",
        "clip_url": f"http://engine.local:8099/clips/{camera}/c1/original.mp4?exp=1&sig=x#t=1.96",
        "clip_offset_seconds": 1.96,
        "time": TIME,
        "ts": TS,
    }


def fire_engine_online(hass: HomeAssistant, prefix: str = PREFIX) -> None:
    """The retained topics of a running engine with two cameras and two persons."""
    async_fire_mqtt_message(hass, f"{prefix}/status", "online", qos=1, retain=True)
    fire(hass, f"{prefix}/info", info(prefix=prefix), "info", retain=True)
    fire(
        hass,
        f"{prefix}/persons",
        persons(person(ANNA_ID, "Anna", TIME), person(BOB_ID, "Bob")),
        "persons",
        retain=True,
    )
    for camera in ("front_door", "garden"):
        fire(hass, f"{prefix}/{camera}/state", state(camera), "state", retain=True)


GROUP_A = "0b5e1c2d" + "a" * 24
GROUP_B = "7a1f33c0" + "b" * 24
GROUP_C = "7a1f33c0" + "c" * 24  # shares its first 8 digits with GROUP_B


def group(group_id: str, status: str = "pending", **changes: Any) -> dict[str, Any]:
    """One group of the unknown-face inbox."""
    payload: dict[str, Any] = {
        "group_id": group_id,
        "status": status,
        "count": 14,
        "tracks": 3,
        "cameras": ["front_door"],
        "first_seen": "2026-11-21T18:02:11.400Z",
        "last_seen": TIME,
        "crops": 4,
        "crop_url": f"http://engine.local:8099/inbox/{group_id}/0.jpg?exp=1795421703&sig=x",
        "nearest_person": "Anna",
        "nearest_similarity": 0.31,
    }
    payload.update(changes)
    return payload


def inbox(*groups: dict[str, Any]) -> dict[str, Any]:
    """A `<prefix>/inbox` payload."""
    return {
        "groups": list(groups),
        "pending": sum(g["status"] == "pending" for g in groups),
        "ignored": sum(g["status"] == "ignored" for g in groups),
        "time": TIME,
    }
