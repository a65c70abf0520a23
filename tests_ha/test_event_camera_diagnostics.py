"""Face events from alerts, the camera entity, diagnostics."""

from __future__ import annotations

import aiohttp
import pytest
from homeassistant.components.camera import async_get_image, async_get_stream_source
from homeassistant.components.diagnostics import REDACTED
from homeassistant.const import STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .helpers import ANNA_ID, PREFIX, alert, fire, state


async def test_alerts_fire_events(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """known_face / unknown_face alerts become events of the camera's event entity."""
    assert hass.states.get("event.facetrack_front_door_face").state == STATE_UNKNOWN
    assert hass.states.get("event.facetrack_front_door_face").attributes["event_types"] == [
        "known_face",
        "unknown_face",
    ]

    fire(hass, f"{PREFIX}/front_door/alert", alert("front_door", "known_face", "Anna", ANNA_ID), "alert", qos=1)
    await hass.async_block_till_done()
    event = hass.states.get("event.facetrack_front_door_face")
    assert event.state != STATE_UNKNOWN
    assert event.attributes["event_type"] == "known_face"
    assert event.attributes["person"] == "Anna"
    assert event.attributes["similarity"] == 0.71
    assert event.attributes["snapshot_url"].startswith("http://engine.local:8099/alerts/")
    assert event.attributes["clip_url"].endswith("original.mp4?exp=1&sig=x#t=1.96")
    assert event.attributes["clip_offset_seconds"] == 1.96
    assert hass.states.get("event.facetrack_garden_face").state == STATE_UNKNOWN

    fire(hass, f"{PREFIX}/garden/alert", alert("garden", "unknown_face"), "alert", qos=1)
    await hass.async_block_till_done()
    event = hass.states.get("event.facetrack_garden_face")
    assert event.attributes["event_type"] == "unknown_face"
    assert event.attributes["person"] is None

    # A kind the contract may add later is ignored.
    first = hass.states.get("event.facetrack_garden_face").state
    async_fire_mqtt_message(hass, f"{PREFIX}/garden/alert", '{"kind": "pet"}')
    await hass.async_block_till_done()
    assert hass.states.get("event.facetrack_garden_face").state == first


async def test_camera_stream_and_snapshot(
    hass: HomeAssistant, init_integration: MockConfigEntry, aioclient_mock: AiohttpClientMocker
) -> None:
    """The camera streams the state's stream URL and fetches its snapshot URL."""
    assert (
        await async_get_stream_source(hass, "camera.facetrack_front_door") == "rtsp://user:secret@cam.local/front_door"
    )
    assert hass.states.get("camera.facetrack_front_door").state == "streaming"
    assert hass.states.get("camera.facetrack_front_door").attributes["supported_features"] == 2

    aioclient_mock.get("http://engine.local:8099/cameras/front_door/snapshot.jpg", content=b"\xff\xd8jpeg")
    image = await async_get_image(hass, "camera.facetrack_front_door")
    assert image.content == b"\xff\xd8jpeg"

    aioclient_mock.clear_requests()
    aioclient_mock.get("http://engine.local:8099/cameras/front_door/snapshot.jpg", status=503)
    with pytest.raises(HomeAssistantError):
        await async_get_image(hass, "camera.facetrack_front_door")

    aioclient_mock.clear_requests()
    aioclient_mock.get("http://engine.local:8099/cameras/front_door/snapshot.jpg", exc=aiohttp.ClientError())
    with pytest.raises(HomeAssistantError):
        await async_get_image(hass, "camera.facetrack_front_door")


async def test_camera_without_urls(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Without stream and snapshot URLs: no stream feature, no image."""
    fire(
        hass,
        f"{PREFIX}/garden/state",
        state("garden", state="starting", stream_url=None, snapshot_url=None, mjpeg_url=None),
        "state",
    )
    await hass.async_block_till_done()
    garden = hass.states.get("camera.facetrack_garden")
    assert garden.state == "idle"
    assert garden.attributes["supported_features"] == 0
    assert await async_get_stream_source(hass, "camera.facetrack_garden") is None
    with pytest.raises(HomeAssistantError):
        await async_get_image(hass, "camera.facetrack_garden")


async def test_diagnostics_redacts(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    """URLs (they can hold camera credentials) and person names are redacted."""
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert diagnostics["status"] == "online"
    assert diagnostics["entry"]["data"] == {"topic_prefix": PREFIX}
    assert diagnostics["cameras"] == ["front_door", "garden"]
    front = diagnostics["camera_states"]["front_door"]
    assert front["stream_url"] == REDACTED
    assert front["snapshot_url"] == REDACTED
    assert front["mjpeg_url"] == REDACTED
    assert front["fps"] == 12.5
    assert {p["name"] for p in diagnostics["persons"]} == {REDACTED}
    assert "secret" not in str(diagnostics)
