"""The last-alert image per camera: the alert's snapshot, kept through a 404 until the clip is stored."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import aiohttp
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .helpers import ANNA_ID, PREFIX, TIME, alert, fire

ENTITY_ID = "image.facetrack_front_door_last_alert"
FIRST = b"\xff\xd8first-face"
SECOND = b"\xff\xd8second-face"
SECOND_ID = "b" * 32


def _clip(alert_id: str, snapshot: str | None) -> dict[str, Any]:
    base = "http://engine.local:8099/clips/front_door/c1/"
    return {
        "camera": "front_door",
        "clip_id": "20261122T081503Z_0123abcd",
        "alert_id": alert_id,
        "frames": 90,
        "duration_s": 6.0,
        "urls": {
            "original": base + "original.mp4",
            "annotated": base + "annotated.mp4",
            "annotations": base + "annotations.json",
            "snapshot": snapshot,
        },
        "time": TIME,
    }


async def _get(hass_client: ClientSessionGenerator) -> tuple[int, bytes]:
    client = await hass_client()
    response = await client.get(f"/api/image_proxy/{ENTITY_ID}")
    return response.status, await response.read()


async def test_last_alert_image(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    aioclient_mock: AiohttpClientMocker,
    hass_client: ClientSessionGenerator,
) -> None:
    """The snapshot shows once stored (404 before); a newer alert keeps the previous until its own is."""
    assert hass.states.get(ENTITY_ID).state == STATE_UNKNOWN
    assert (await _get(hass_client))[0] == HTTPStatus.INTERNAL_SERVER_ERROR

    first = alert("front_door", "known_face", "Anna", ANNA_ID)
    aioclient_mock.get(first["snapshot_url"], status=404)
    fire(hass, f"{PREFIX}/front_door/alert", first, "alert", qos=1)
    await hass.async_block_till_done()
    state = hass.states.get(ENTITY_ID)
    assert state.state == "2026-11-22T08:15:03.120000+00:00"
    assert state.attributes["kind"] == "known_face"
    assert state.attributes["person"] == "Anna"
    assert state.attributes["alert_id"] == first["alert_id"]
    assert (await _get(hass_client))[0] == HTTPStatus.INTERNAL_SERVER_ERROR  # not stored yet, nothing before

    # The clip is stored: a new access token makes the frontend fetch the snapshot again.
    aioclient_mock.clear_requests()
    aioclient_mock.get(first["snapshot_url"], content=FIRST, headers={"Content-Type": "image/jpeg"})
    token = state.attributes["access_token"]
    fire(hass, f"{PREFIX}/front_door/clip", _clip(first["alert_id"], first["snapshot_url"]), "clip", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY_ID).attributes["access_token"] != token
    assert await _get(hass_client) == (HTTPStatus.OK, FIRST)
    calls = aioclient_mock.call_count
    assert await _get(hass_client) == (HTTPStatus.OK, FIRST)  # cached
    assert aioclient_mock.call_count == calls

    # A clip of the same alert again, or of another alert, changes nothing.
    token = hass.states.get(ENTITY_ID).attributes["access_token"]
    fire(hass, f"{PREFIX}/front_door/clip", _clip(first["alert_id"], None), "clip", qos=1)
    fire(hass, f"{PREFIX}/front_door/clip", _clip(SECOND_ID, None), "clip", qos=1)
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/clip", "not json")
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY_ID).attributes["access_token"] == token

    # A newer alert whose snapshot is not stored yet: the previous image stays.
    second = alert("front_door", "unknown_face")
    second["alert_id"] = SECOND_ID
    second["snapshot_url"] = "http://engine.local:8099/clips/front_door/c2/snapshot.jpg?exp=2&sig=y"
    second["time"] = "2026-11-22T09:00:00Z"
    aioclient_mock.get(second["snapshot_url"], status=404)
    fire(hass, f"{PREFIX}/front_door/alert", second, "alert", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY_ID).state == "2026-11-22T09:00:00+00:00"
    assert hass.states.get(ENTITY_ID).attributes["kind"] == "unknown_face"
    assert await _get(hass_client) == (HTTPStatus.OK, FIRST)

    # Its clip announces a (new) snapshot URL: that one is fetched.
    stored = "http://engine.local:8099/clips/front_door/c2/snapshot.jpg?exp=3&sig=z"
    aioclient_mock.get(stored, content=SECOND, headers={"Content-Type": "image/jpeg"})
    fire(hass, f"{PREFIX}/front_door/clip", _clip(SECOND_ID, stored), "clip", qos=1)
    await hass.async_block_till_done()
    assert await _get(hass_client) == (HTTPStatus.OK, SECOND)

    # The garden's image is its own.
    assert hass.states.get("image.facetrack_garden_last_alert").state == STATE_UNKNOWN


async def test_last_alert_image_fetch_failures(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    aioclient_mock: AiohttpClientMocker,
    hass_client: ClientSessionGenerator,
) -> None:
    """Errors, non-images and alerts without a snapshot keep the image as it was."""
    url = "http://engine.local:8099/clips/front_door/x/snapshot.jpg"
    for mock in ({"status": 500}, {"exc": aiohttp.ClientError()}, {"content": b"<html>"}):
        aioclient_mock.clear_requests()
        aioclient_mock.get(url, **mock)
        async_fire_mqtt_message(
            hass, f"{PREFIX}/front_door/alert", json.dumps({"kind": "unknown_face", "snapshot_url": url})
        )
        await hass.async_block_till_done()
        assert hass.states.get(ENTITY_ID).state not in (STATE_UNKNOWN, STATE_UNAVAILABLE)  # now, without `time`
        assert (await _get(hass_client))[0] == HTTPStatus.INTERNAL_SERVER_ERROR

    state = hass.states.get(ENTITY_ID).state
    no_clip = alert("front_door", "unknown_face")
    no_clip["snapshot_url"] = no_clip["clip_url"] = None
    fire(hass, f"{PREFIX}/front_door/alert", no_clip, "alert", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY_ID).state == state

    async_fire_mqtt_message(hass, f"{PREFIX}/status", "offline", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY_ID).state == STATE_UNAVAILABLE
