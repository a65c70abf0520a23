"""The last-alert image per camera: each alert's own snapshot, fetched when the alert arrives; a
failed fetch keeps the previous image (never a broken one); older engines' snapshots, stored with
the clip, are fetched when the clip is announced."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import aiohttp
from custom_components.facetrack.const import DOMAIN
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker, AiohttpClientMockResponse
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .helpers import ANNA_ID, PREFIX, TIME, alert, fire

FIRST = b"\xff\xd8first-face"
SECOND = b"\xff\xd8second-face"
THIRD = b"\xff\xd8third-face"
JPEG = {"Content-Type": "image/jpeg"}


def _entity(hass: HomeAssistant, camera: str = "front_door") -> str:
    entity_id = er.async_get(hass).async_get_entity_id("image", DOMAIN, f"{PREFIX}_{camera}_last_alert")
    assert entity_id is not None
    return entity_id


def _alert(n: int, kind: str = "unknown_face", time: str = TIME, **changes: Any) -> dict[str, Any]:
    payload = alert("front_door", kind, *(("Anna", ANNA_ID) if kind == "known_face" else ()))
    alert_id = f"{n}" * 32
    payload.update(
        alert_id=alert_id,
        snapshot_url=f"http://engine.local:8099/alerts/{alert_id}/snapshot.jpg?exp=1&sig=x",
        time=time,
    )
    payload.update(changes)
    return payload


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


async def _get(hass: HomeAssistant, hass_client: ClientSessionGenerator) -> tuple[int, bytes]:
    client = await hass_client()
    response = await client.get(f"/api/image_proxy/{_entity(hass)}")
    return response.status, await response.read()


async def test_last_alert_image(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    aioclient_mock: AiohttpClientMocker,
    hass_client: ClientSessionGenerator,
) -> None:
    """Each alert's snapshot shows when it arrives; a failed fetch keeps the previous one."""
    entity_id = _entity(hass)
    assert hass.states.get(entity_id).state == STATE_UNKNOWN
    assert (await _get(hass, hass_client))[0] == HTTPStatus.INTERNAL_SERVER_ERROR  # no alert yet

    first = _alert(1, "known_face")
    aioclient_mock.get(first["snapshot_url"], content=FIRST, headers=JPEG)
    fire(hass, f"{PREFIX}/front_door/alert", first, "alert", qos=1)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state.state == "2026-11-22T08:15:03.120000+00:00"
    assert state.attributes["kind"] == "known_face"
    assert state.attributes["person"] == "Anna"
    assert state.attributes["alert_id"] == first["alert_id"]
    assert await _get(hass, hass_client) == (HTTPStatus.OK, FIRST)
    assert await _get(hass, hass_client) == (HTTPStatus.OK, FIRST)
    fetched = [c for c in aioclient_mock.mock_calls if f"/alerts/{first['alert_id']}/" in str(c[1])]
    assert len(fetched) == 1  # once, when the alert came

    # A newer alert whose snapshot cannot be fetched (an older engine: not stored before its clip):
    # the previous image stays, with its own time and attributes.
    token = state.attributes["access_token"]
    second = _alert(2, time="2026-11-22T09:00:00Z")
    aioclient_mock.get(second["snapshot_url"], status=404)
    fire(hass, f"{PREFIX}/front_door/alert", second, "alert", qos=1)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state.state == "2026-11-22T08:15:03.120000+00:00"
    assert state.attributes["alert_id"] == first["alert_id"]
    assert state.attributes["access_token"] == token
    assert await _get(hass, hass_client) == (HTTPStatus.OK, FIRST)

    # Its clip is stored: the snapshot it announces is fetched and shown, with a new access token.
    stored = "http://engine.local:8099/clips/front_door/c2/snapshot.jpg?exp=3&sig=z"
    aioclient_mock.get(stored, content=SECOND, headers=JPEG)
    fire(hass, f"{PREFIX}/front_door/clip", _clip(second["alert_id"], stored), "clip", qos=1)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state.state == "2026-11-22T09:00:00+00:00"
    assert state.attributes["kind"] == "unknown_face"
    assert state.attributes["person"] is None
    assert state.attributes["access_token"] != token
    assert await _get(hass, hass_client) == (HTTPStatus.OK, SECOND)

    # Clips of an alert already shown, of another alert, or not JSON: nothing is fetched.
    calls = aioclient_mock.call_count
    fire(hass, f"{PREFIX}/front_door/clip", _clip(second["alert_id"], stored), "clip", qos=1)
    fire(hass, f"{PREFIX}/front_door/clip", _clip("9" * 32, stored), "clip", qos=1)
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/clip", "not json")
    await hass.async_block_till_done()
    assert aioclient_mock.call_count == calls
    assert await _get(hass, hass_client) == (HTTPStatus.OK, SECOND)

    # The garden's image is its own.
    assert hass.states.get(_entity(hass, "garden")).state == STATE_UNKNOWN


async def test_a_slow_snapshot_never_replaces_a_newer_one(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    aioclient_mock: AiohttpClientMocker,
    hass_client: ClientSessionGenerator,
) -> None:
    """Two alerts in quick succession: the first one's fetch finishing last does not win."""
    release = asyncio.Event()
    first, second = _alert(1), _alert(2, time="2026-11-22T09:00:00Z")

    async def slow(method: str, url: Any, data: Any) -> AiohttpClientMockResponse:
        await release.wait()
        return AiohttpClientMockResponse(method, url, response=FIRST, headers=JPEG)

    aioclient_mock.get(first["snapshot_url"], side_effect=slow)
    aioclient_mock.get(second["snapshot_url"], content=SECOND, headers=JPEG)
    fire(hass, f"{PREFIX}/front_door/alert", first, "alert", qos=1)
    await asyncio.sleep(0)
    fire(hass, f"{PREFIX}/front_door/alert", second, "alert", qos=1)
    for _ in range(500):  # not async_block_till_done: it would wait for the first fetch too
        await asyncio.sleep(0.01)
        if hass.states.get(_entity(hass)).attributes["alert_id"] == second["alert_id"]:
            break
    assert await _get(hass, hass_client) == (HTTPStatus.OK, SECOND)
    release.set()
    await hass.async_block_till_done()
    state = hass.states.get(_entity(hass))
    assert state.attributes["alert_id"] == second["alert_id"]
    assert state.state == "2026-11-22T09:00:00+00:00"
    assert await _get(hass, hass_client) == (HTTPStatus.OK, SECOND)


async def test_last_alert_image_fetch_failures(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    aioclient_mock: AiohttpClientMocker,
    hass_client: ClientSessionGenerator,
) -> None:
    """Errors, non-images and alerts without a snapshot change nothing; then a good one shows."""
    entity_id = _entity(hass)
    failures = ({"status": 500}, {"exc": aiohttp.ClientError()}, {"content": b"<html>"}, {"exc": ValueError("bug")})
    for n, mock in enumerate(failures, 1):
        payload = _alert(n)
        aioclient_mock.get(payload["snapshot_url"], **mock)
        fire(hass, f"{PREFIX}/front_door/alert", payload, "alert", qos=1)
        await hass.async_block_till_done()
        assert hass.states.get(entity_id).state == STATE_UNKNOWN  # nothing was ever shown
    no_snapshot = _alert(5, snapshot_url=None)
    fire(hass, f"{PREFIX}/front_door/alert", no_snapshot, "alert", qos=1)
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/alert", json.dumps({"kind": "unknown_face"}))
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).state == STATE_UNKNOWN

    # An alert without `time` (a minimal payload) shows with the time it came.
    url = "http://engine.local:8099/alerts/x/snapshot.jpg"
    aioclient_mock.get(url, content=THIRD, headers=JPEG)
    async_fire_mqtt_message(
        hass, f"{PREFIX}/front_door/alert", json.dumps({"kind": "unknown_face", "snapshot_url": url})
    )
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).state not in (STATE_UNKNOWN, STATE_UNAVAILABLE)
    assert await _get(hass, hass_client) == (HTTPStatus.OK, THIRD)

    async_fire_mqtt_message(hass, f"{PREFIX}/status", "offline", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).state == STATE_UNAVAILABLE
