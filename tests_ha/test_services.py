"""Actions over the MQTT command contract: success, timeout, error responses, validation."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from unittest.mock import patch

import aiohttp
import pytest
import voluptuous as vol
from custom_components.facetrack.const import CONF_TOPIC_PREFIX, DOMAIN
from custom_components.facetrack.services import MAX_IMAGE_BYTES
from homeassistant.components.camera import Image
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from .conftest import FakeEngine
from .helpers import ANNA_ID, PREFIX, TIME, person

JPEG = b"\xff\xd8\xff\xe0fake-jpeg"
URL = "https://photos.example.com/anna.jpg"


def _ok(result: dict[str, Any]):  # type: ignore[no-untyped-def]
    return lambda verb, body: {"ok": True, "result": result}


def _error(code: str, message: str):  # type: ignore[no-untyped-def]
    return lambda verb, body: {"ok": False, "error": {"code": code, "message": message}}


async def _call(hass: HomeAssistant, service: str, data: dict[str, Any]) -> Any:
    return await hass.services.async_call(DOMAIN, service, data, blocking=True, return_response=True)


async def test_enroll_from_allowed_path(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, tmp_path: Path
) -> None:
    """The photo is read from an allowed directory and sent in base64; the result is the response."""
    photo = tmp_path / "anna.jpg"
    photo.write_bytes(JPEG)
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    engine.reply = _ok({"person": "Anna", "person_id": ANNA_ID, "embeddings": 3})

    response = await _call(hass, "enroll", {"name": "Anna", "image_path": str(photo)})
    assert response == {"person": "Anna", "person_id": ANNA_ID, "embeddings": 3}
    verb, body = engine.commands[-1]
    assert verb == "enroll"
    assert body["name"] == "Anna"
    assert base64.b64decode(body["image_base64"]) == JPEG
    assert len(body["request_id"]) == 32
    assert "pick" not in body  # a photo: its only (or clearly dominant) face


async def test_enroll_path_errors(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, tmp_path: Path
) -> None:
    """Paths outside the allowlist, missing files and no image source are refused before MQTT."""
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "enroll", {"name": "Anna", "image_path": "/etc/passwd"})
    assert err.value.translation_key == "path_not_allowed"

    hass.config.allowlist_external_dirs = {str(tmp_path)}
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "enroll", {"name": "Anna", "image_path": str(tmp_path / "missing.jpg")})
    assert err.value.translation_key == "image_not_readable"

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "enroll", {"name": "Anna"})
    assert err.value.translation_key == "no_image_source"
    assert engine.commands == []


async def test_enroll_from_camera(hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine) -> None:
    """A camera entity's snapshot is enrolled; a failing snapshot is reported."""
    engine.reply = _ok({"person": "Anna", "person_id": ANNA_ID, "embeddings": 1})
    with patch(
        "custom_components.facetrack.services.async_get_image",
        return_value=Image(content_type="image/jpeg", content=JPEG),
    ) as get_image:
        response = await _call(hass, "enroll", {"name": "Anna", "camera_entity_id": "camera.facetrack_front_door"})
    get_image.assert_called_once_with(hass, "camera.facetrack_front_door")
    assert response["embeddings"] == 1
    assert base64.b64decode(engine.commands[-1][1]["image_base64"]) == JPEG

    with (
        patch("custom_components.facetrack.services.async_get_image", side_effect=HomeAssistantError("boom")),
        pytest.raises(HomeAssistantError) as err,
    ):
        await _call(hass, "enroll", {"name": "Anna", "camera_entity_id": "camera.facetrack_front_door"})
    assert err.value.translation_key == "snapshot_failed"


async def test_enroll_from_camera_with_several_faces(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine
) -> None:
    """A snapshot asks the engine for its largest usable face; the answer names its box and the faces
    seen; an engine refusal (no usable face among several) is a validation error with its message."""
    snapshot = patch(
        "custom_components.facetrack.services.async_get_image",
        return_value=Image(content_type="image/jpeg", content=JPEG),
    )
    result = {"person": "Anna", "person_id": ANNA_ID, "embeddings": 1, "box": [410.0, 96.5, 530.0, 240.0], "faces": 6}
    engine.reply = _ok(result)
    with snapshot:
        response = await _call(hass, "enroll", {"name": "Anna", "camera_entity_id": "camera.front_door"})
    assert response == result
    assert engine.commands[-1][1]["pick"] == "largest"

    refusal = (
        "no usable face: none of the 6 faces seen is usable (largest: face too small (24 px < 32 px)); come closer"
        " to the camera, or enrol a face with enroll_track and its track id (in the camera's face events and tracks)"
    )
    engine.reply = _error("bad_request", refusal)
    with snapshot, pytest.raises(ServiceValidationError) as err:
        await _call(hass, "enroll", {"name": "Anna", "camera_entity_id": "camera.front_door"})
    assert err.value.translation_key == "command_rejected"
    assert err.value.translation_placeholders["message"] == refusal


async def test_enroll_from_a_missing_camera(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine
) -> None:
    """A camera entity that does not exist is the caller's mistake: a validation error, nothing sent."""
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "enroll", {"name": "Anna", "camera_entity_id": "camera.nowhere"})
    assert err.value.translation_key == "snapshot_failed"
    assert engine.commands == []


async def test_enroll_track_forget_rename(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine
) -> None:
    """The other commands carry their fields and return the engine's result."""
    engine.reply = _ok({"person": "Carl", "person_id": ANNA_ID, "enrolled": 2, "embeddings": 2})
    response = await _call(
        hass,
        "enroll_track",
        {"camera": "front_door", "track_id": 7, "name": "Carl", "max_embeddings": 2},
    )
    assert response["enrolled"] == 2
    assert engine.commands[-1][0] == "enroll_track"
    assert {k: v for k, v in engine.commands[-1][1].items() if k != "request_id"} == {
        "camera": "front_door",
        "track_id": 7,
        "name": "Carl",
        "max_embeddings": 2,
    }

    engine.reply = _ok({"person": "Anna", "embeddings_removed": 3})
    assert await _call(hass, "forget", {"name": "Anna"}) == {"person": "Anna", "embeddings_removed": 3}
    assert engine.commands[-1][0] == "forget"

    engine.reply = _ok({"person": "Anna K.", "person_id": ANNA_ID, "previous": "Anna"})
    response = await _call(hass, "rename", {"name": "Anna", "new_name": "Anna K."})
    assert response["previous"] == "Anna"
    assert engine.commands[-1][1]["new_name"] == "Anna K."

    # Without asking for the response, the action still succeeds.
    await hass.services.async_call(DOMAIN, "forget", {"name": "Anna"}, blocking=True)

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "enroll_track", {"camera": "attic", "track_id": 1, "name": "Carl"})
    assert err.value.translation_key == "unknown_camera"


@pytest.mark.parametrize(
    ("code", "exception", "translation_key"),
    [
        ("not_found", ServiceValidationError, "command_rejected"),
        ("bad_request", ServiceValidationError, "command_rejected"),
        ("busy", HomeAssistantError, "command_failed"),
        ("internal", HomeAssistantError, "command_failed"),
    ],
)
async def test_error_response(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    engine: FakeEngine,
    code: str,
    exception: type[Exception],
    translation_key: str,
) -> None:
    """`ok: false` raises a translated error carrying the engine's code and message."""
    engine.reply = _error(code, "no such person")
    with pytest.raises(exception) as err:
        await _call(hass, "forget", {"name": "Zoe"})
    assert type(err.value) is exception
    assert err.value.translation_key == translation_key
    assert err.value.translation_placeholders == {"command": "forget", "code": code, "message": "no such person"}


async def test_timeout(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, short_command_timeout: None
) -> None:
    """No response in time: a translated timeout error; a late or stray response is ignored."""
    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "forget", {"name": "Anna"})
    assert err.value.translation_key == "command_timeout"
    request_id = engine.commands[-1][1]["request_id"]
    async_fire_mqtt_message(
        hass, f"{PREFIX}/response/{request_id}", '{"request_id": "x", "command": "forget", "ok": true, "result": {}}'
    )
    await hass.async_block_till_done()


async def test_invalid_response_then_timeout(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, short_command_timeout: None
) -> None:
    """A response that is not JSON is ignored (the command then times out)."""

    def _reply(verb: str, body: dict[str, Any]) -> None:
        hass.loop.call_soon(async_fire_mqtt_message, hass, f"{PREFIX}/response/{body['request_id']}", "garbage")

    engine.reply = _reply
    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "rename", {"name": "Anna", "new_name": "Ann"})
    assert err.value.translation_key == "command_timeout"


async def test_engine_offline(hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine) -> None:
    """Commands are refused at once while the engine is offline."""
    async_fire_mqtt_message(hass, f"{PREFIX}/status", "offline")
    await hass.async_block_till_done()
    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "forget", {"name": "Anna"})
    assert err.value.translation_key == "engine_offline"
    assert engine.commands == []


async def test_entry_selection(hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine) -> None:
    """config_entry_id picks the engine; it is required when several are set up."""
    engine.reply = _ok({"person": "Anna", "embeddings_removed": 1})
    response = await _call(hass, "forget", {"name": "Anna", "config_entry_id": init_integration.entry_id})
    assert response["embeddings_removed"] == 1

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "forget", {"name": "Anna", "config_entry_id": "nope"})
    assert err.value.translation_key == "entry_not_loaded"

    second = MockConfigEntry(domain=DOMAIN, title="FaceTrack (lab)", unique_id="lab", data={CONF_TOPIC_PREFIX: "lab"})
    second.add_to_hass(hass)
    assert await hass.config_entries.async_setup(second.entry_id)
    await hass.async_block_till_done()
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "forget", {"name": "Anna"})
    assert err.value.translation_key == "several_entries"

    for entry in (second, init_integration):
        assert await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "forget", {"name": "Anna"})
    assert err.value.translation_key == "no_entry"


async def test_unload_cancels_pending_command(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine
) -> None:
    """Unloading while a command waits fails the command instead of leaving it hanging."""
    task = hass.async_create_task(_call(hass, "forget", {"name": "Anna"}), eager_start=False)
    for _ in range(10):
        await asyncio_sleep0()
        if engine.commands:
            break
    assert engine.commands
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    with pytest.raises(BaseException):  # noqa: B017 - CancelledError
        await task


async def asyncio_sleep0() -> None:
    import asyncio

    await asyncio.sleep(0)


async def test_list_persons(hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine) -> None:
    """list_persons runs the engine's `list` command and returns its result (response only)."""
    library = {"persons": [person(ANNA_ID, "Anna", TIME)]}
    engine.reply = _ok(library)
    assert await _call(hass, "list_persons", {}) == library
    verb, body = engine.commands[-1]
    assert verb == "list"
    assert set(body) == {"request_id"}

    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(DOMAIN, "list_persons", {}, blocking=True)


async def test_enroll_from_url(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, aioclient_mock: AiohttpClientMocker
) -> None:
    """A photo URL is downloaded with Home Assistant's client session and enrolled."""
    aioclient_mock.get(URL, content=JPEG, headers={"Content-Type": "image/jpeg"})
    engine.reply = _ok({"person": "Anna", "person_id": ANNA_ID, "embeddings": 1})
    response = await _call(hass, "enroll", {"name": "Anna", "image_url": URL})
    assert response["embeddings"] == 1
    assert base64.b64decode(engine.commands[-1][1]["image_base64"]) == JPEG


@pytest.mark.parametrize(
    ("mock", "exception", "translation_key"),
    [
        ({"status": 404}, ServiceValidationError, "image_url_status"),
        ({"status": 403}, ServiceValidationError, "image_url_status"),
        ({"exc": aiohttp.InvalidURL(URL)}, ServiceValidationError, "image_url_invalid"),
        ({"exc": aiohttp.ClientError()}, HomeAssistantError, "image_download_failed"),
        ({"exc": TimeoutError()}, HomeAssistantError, "image_download_failed"),
        (
            {"content": b"<html>", "headers": {"Content-Type": "text/html"}},
            ServiceValidationError,
            "image_not_an_image",
        ),
        ({"content": b"x"}, ServiceValidationError, "image_not_an_image"),
        (
            {"content": JPEG, "headers": {"Content-Type": "image/jpeg", "Content-Length": str(7 * 1024 * 1024)}},
            ServiceValidationError,
            "image_too_large",
        ),
        (
            {"content": b"\0" * (MAX_IMAGE_BYTES + 1), "headers": {"Content-Type": "image/png"}},
            ServiceValidationError,
            "image_too_large",
        ),
    ],
)
async def test_enroll_from_url_errors(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    engine: FakeEngine,
    aioclient_mock: AiohttpClientMocker,
    mock: dict[str, Any],
    exception: type[Exception],
    translation_key: str,
) -> None:
    """Download failures, non-images and photos over 6 MB raise translated errors before MQTT."""
    aioclient_mock.get(URL, **mock)
    with pytest.raises(exception) as err:
        await _call(hass, "enroll", {"name": "Anna", "image_url": URL})
    assert type(err.value) is exception
    assert err.value.translation_key == translation_key
    assert engine.commands == []


async def test_enroll_sources_are_exclusive(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Only one photo source per call."""
    with pytest.raises(vol.Invalid):
        await _call(
            hass, "enroll", {"name": "Anna", "image_url": URL, "camera_entity_id": "camera.facetrack_front_door"}
        )
