"""The unknown-face inbox: its sensor, a crop image per pending group (disabled by default), the
new-group event, and the inbox / negative-feedback actions over the command contract (docs/mqtt.md,
contract 1.1)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
import voluptuous as vol
from custom_components.facetrack.const import DOMAIN
from homeassistant.components.diagnostics import REDACTED
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_registry import RegistryEntryDisabler
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .conftest import FakeEngine
from .helpers import GROUP_A, GROUP_B, GROUP_C, PREFIX, TIME, TS, fire, group, inbox

SENSOR = "sensor.facetrack_unknown_persons"
EVENT = "event.facetrack_new_unknown_person"
IMAGE_A = "image.facetrack_unknown_person_0b5e1c2d"
IMAGE_B = "image.facetrack_unknown_person_7a1f33c0"
CROP = b"\xff\xd8crop-of-a"


def _fire_inbox(hass: HomeAssistant, *groups: dict[str, Any]) -> None:
    # A live update (a broker forwards a retained publish to current subscribers without the retain flag).
    fire(hass, f"{PREFIX}/inbox", inbox(*groups), "inbox", qos=1)


async def _call(hass: HomeAssistant, service: str, data: dict[str, Any], response: bool = True) -> Any:
    return await hass.services.async_call(DOMAIN, service, data, blocking=True, return_response=response)


def _image_uid(group_id: str) -> str:
    return f"{PREFIX}_unknown_group_{group_id}"


def _image_entry(registry: er.EntityRegistry, group_id: str) -> er.RegistryEntry | None:
    entity_id = registry.async_get_entity_id("image", DOMAIN, _image_uid(group_id))
    return registry.async_get(entity_id) if entity_id is not None else None


@pytest.fixture
def enabled_images(init_integration: MockConfigEntry, entity_registry: er.EntityRegistry) -> None:
    """The image entities of groups A, B and C enabled by the user (they are disabled by default)."""
    for group_id in (GROUP_A, GROUP_B, GROUP_C):
        entity_registry.async_get_or_create(
            "image",
            DOMAIN,
            _image_uid(group_id),
            suggested_object_id=f"facetrack_unknown_person_{group_id[:8]}",
            config_entry=init_integration,
            translation_key="unknown_group",
        )


async def test_inbox_sensor_and_group_images(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry, enabled_images: None
) -> None:
    """Pending groups get a crop image each; the sensor counts them and lists every group."""
    assert hass.states.get(SENSOR).state == STATE_UNKNOWN  # no inbox yet (an engine before 1.1)
    assert hass.states.get(IMAGE_A) is None

    _fire_inbox(hass, group(GROUP_A), group(GROUP_B, "ignored", cameras=["garden", "front_door"]))
    await hass.async_block_till_done()
    state = hass.states.get(SENSOR)
    assert state.state == "1"
    assert state.attributes["ignored"] == 1
    assert [g["group_id"] for g in state.attributes["groups"]] == [GROUP_A, GROUP_B]
    assert state.attributes["groups"][1]["cameras"] == ["garden", "front_door"]
    assert "crop_url" not in state.attributes["groups"][0]  # signed, expiring: not in the history

    image = hass.states.get(IMAGE_A)
    assert image is not None
    assert image.attributes["group_id"] == GROUP_A
    assert image.attributes["count"] == 14
    assert image.attributes["nearest_person"] == "Anna"
    assert image.state == "2026-11-22T08:15:03.120000+00:00"
    assert hass.states.get(IMAGE_B) is None  # ignored: no image
    assert _image_entry(entity_registry, GROUP_B) is None  # (the user's enabled entry went with it)
    entry = entity_registry.async_get(IMAGE_A)
    assert entry is not None
    assert entry.unique_id == f"{PREFIX}_unknown_group_{GROUP_A}"

    # Group A is named (it leaves the inbox), B is un-ignored: A's entity goes, B's comes (disabled).
    _fire_inbox(hass, group(GROUP_B, cameras=["garden"]))
    await hass.async_block_till_done()
    assert hass.states.get(IMAGE_A) is None
    assert entity_registry.async_get(IMAGE_A) is None
    entry_b = _image_entry(entity_registry, GROUP_B)
    assert entry_b is not None and entry_b.disabled_by is RegistryEntryDisabler.INTEGRATION
    assert hass.states.get(SENSOR).state == "1"
    assert hass.states.get(SENSOR).attributes["ignored"] == 0

    # Ignoring B removes its entity too; the group stays listed by the sensor.
    _fire_inbox(hass, group(GROUP_B, "ignored"))
    await hass.async_block_till_done()
    assert _image_entry(entity_registry, GROUP_B) is None
    assert hass.states.get(SENSOR).state == "0"
    assert len(hass.states.get(SENSOR).attributes["groups"]) == 1


async def test_group_image_fetches_the_crop(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    aioclient_mock: AiohttpClientMocker,
    hass_client: ClientSessionGenerator,
    enabled_images: None,
) -> None:
    """The image is the group's best crop, fetched once per crop URL, again when the URL changes."""
    first = group(GROUP_A)
    aioclient_mock.get(first["crop_url"], content=CROP, headers={"Content-Type": "image/jpeg"})
    _fire_inbox(hass, first)
    await hass.async_block_till_done()
    client = await hass_client()
    response = await client.get(f"/api/image_proxy/{IMAGE_A}")
    assert response.status == HTTPStatus.OK
    assert await response.read() == CROP
    calls = aioclient_mock.call_count
    await client.get(f"/api/image_proxy/{IMAGE_A}")
    assert aioclient_mock.call_count == calls  # cached

    # A republished summary with a fresh signature and a grown group: fetched again.
    second = group(GROUP_A, count=20, crop_url=first["crop_url"].replace("exp=1795421703", "exp=1795465000"))
    aioclient_mock.get(second["crop_url"], content=CROP + b"2", headers={"Content-Type": "image/jpeg"})
    _fire_inbox(hass, second)
    await hass.async_block_till_done()
    assert hass.states.get(IMAGE_A).attributes["count"] == 20
    response = await client.get(f"/api/image_proxy/{IMAGE_A}")
    assert await response.read() == CROP + b"2"

    # An expired or failing URL: no image (the proxy answers an error), the entity stays.
    third = group(GROUP_A, crop_url="http://engine.local:8099/inbox/x/0.jpg?exp=1&sig=y")
    aioclient_mock.get(third["crop_url"], status=403)
    _fire_inbox(hass, third)
    await hass.async_block_till_done()
    response = await client.get(f"/api/image_proxy/{IMAGE_A}")
    assert response.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert hass.states.get(IMAGE_A) is not None


async def test_group_images_are_disabled_by_default(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """Eleven unknown groups do not flood the dashboard: the sensor lists them, their images are disabled,
    and the registry entries of groups that leave go too (disabled entities never remove themselves)."""
    groups = [group(f"{i:08x}" + "d" * 24) for i in range(11)]
    _fire_inbox(hass, *groups)
    await hass.async_block_till_done()
    assert hass.states.get(SENSOR).state == "11"
    assert len(hass.states.get(SENSOR).attributes["groups"]) == 11
    assert hass.states.get(SENSOR).attributes["groups"][0]["first_seen"] == "2026-11-21T18:02:11.400Z"
    entries = [_image_entry(entity_registry, g["group_id"]) for g in groups]
    assert all(e is not None and e.disabled_by is RegistryEntryDisabler.INTEGRATION for e in entries)
    assert all(hass.states.get(e.entity_id) is None for e in entries if e is not None)

    _fire_inbox(hass, *groups[1:])
    await hass.async_block_till_done()
    assert _image_entry(entity_registry, groups[0]["group_id"]) is None
    assert all(_image_entry(entity_registry, g["group_id"]) is not None for g in groups[1:])


async def test_a_group_leaves_the_inbox_after_its_person_is_enrolled(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    engine: FakeEngine,
    entity_registry: er.EntityRegistry,
    enabled_images: None,
) -> None:
    """The engine re-matches its inbox after an enrolment and republishes it without the group of the
    person just enrolled: the sensor and the group's (enabled) image follow."""
    _fire_inbox(hass, group(GROUP_A, nearest_person=None), group(GROUP_B))
    await hass.async_block_till_done()
    assert hass.states.get(SENSOR).state == "2"
    assert hass.states.get(IMAGE_A) is not None

    engine.reply = lambda verb, body: {"ok": True, "result": {"person": "Carl", "person_id": "c" * 32, "embeddings": 1}}
    await _call(hass, "enroll_track", {"camera": "front_door", "track_id": 7, "name": "Carl"})
    _fire_inbox(hass, group(GROUP_B))  # the engine's re-match: A's faces are Carl's now
    await hass.async_block_till_done()
    state = hass.states.get(SENSOR)
    assert state.state == "1"
    assert [g["group_id"] for g in state.attributes["groups"]] == [GROUP_B]
    assert hass.states.get(IMAGE_A) is None
    assert _image_entry(entity_registry, GROUP_A) is None
    assert hass.states.get(IMAGE_B) is not None


async def test_new_group_event(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """`<prefix>/inbox/event` fires the engine's new-unknown-person event entity."""
    assert hass.states.get(EVENT).state == STATE_UNKNOWN
    event = {
        "event_id": "e" * 32,
        "type": "new_group",
        "group_id": GROUP_A,
        "camera": "front_door",
        "track_id": 7,
        "crop_url": group(GROUP_A)["crop_url"],
        "time": TIME,
        "ts": TS,
    }
    fire(hass, f"{PREFIX}/inbox/event", event, "inbox_event", qos=1)
    await hass.async_block_till_done()
    state = hass.states.get(EVENT)
    assert state.state != STATE_UNKNOWN
    assert state.attributes["event_type"] == "new_group"
    assert state.attributes["group_id"] == GROUP_A
    assert state.attributes["camera"] == "front_door"
    assert state.attributes["track_id"] == 7


async def test_invalid_inbox_payloads_are_ignored(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture, enabled_images: None
) -> None:
    """Malformed inbox summaries and events are logged and change nothing."""
    _fire_inbox(hass, group(GROUP_A))
    await hass.async_block_till_done()
    async_fire_mqtt_message(hass, f"{PREFIX}/inbox", "not json", qos=1)
    async_fire_mqtt_message(hass, f"{PREFIX}/inbox", '{"groups": 3}', qos=1)
    async_fire_mqtt_message(hass, f"{PREFIX}/inbox/event", '{"type": "new_group"}', qos=1)
    async_fire_mqtt_message(hass, f"{PREFIX}/inbox/event", "[]", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(SENSOR).state == "1"
    assert hass.states.get(IMAGE_A) is not None
    assert hass.states.get(EVENT).state == STATE_UNKNOWN
    assert caplog.text.count("Ignoring an invalid inbox payload") == 2
    assert caplog.text.count("Ignoring an invalid inbox event") == 2


async def test_inbox_entities_unavailable_when_engine_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, enabled_images: None
) -> None:
    """The inbox entities follow the engine's status."""
    _fire_inbox(hass, group(GROUP_A))
    await hass.async_block_till_done()
    async_fire_mqtt_message(hass, f"{PREFIX}/status", "offline", qos=1)
    await hass.async_block_till_done()
    for entity_id in (SENSOR, EVENT, IMAGE_A):
        assert hass.states.get(entity_id).state == STATE_UNAVAILABLE


@pytest.mark.parametrize(
    ("service", "data", "body"),
    [
        (
            "inbox_name",
            {"group_id": "0B5E1C2D", "name": "Anna", "mode": "add", "max_embeddings": 3},
            {"group_id": GROUP_A, "name": "Anna", "mode": "add", "max_embeddings": 3},
        ),
        ("inbox_name", {"group_id": GROUP_A, "name": "Carl"}, {"group_id": GROUP_A, "name": "Carl"}),
        (
            "inbox_merge",
            {"group_id": "0b5e1c2d", "into_group_id": GROUP_B},
            {"group_id": GROUP_A, "into_group_id": GROUP_B},
        ),
        ("inbox_discard", {"group_id": "0b5e1c2d"}, {"group_id": GROUP_A}),
        ("inbox_ignore", {"group_id": "0b5e1c2daa"}, {"group_id": GROUP_A}),
        ("inbox_unignore", {"group_id": GROUP_B}, {"group_id": GROUP_B}),
        ("forget_embedding", {"embedding_id": "D" * 32}, {"embedding_id": "d" * 32}),
        ("forget_embedding", {"embedding_id": "d" * 32, "name": "Bob"}, {"embedding_id": "d" * 32, "name": "Bob"}),
        ("list_embeddings", {"name": "Bob", "include_crops": True}, {"name": "Bob", "include_crops": True}),
    ],
)
async def test_inbox_actions(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    engine: FakeEngine,
    service: str,
    data: dict[str, Any],
    body: dict[str, Any],
) -> None:
    """Each action publishes its command (a group's id head resolved to the full id) and returns the result."""
    _fire_inbox(hass, group(GROUP_A), group(GROUP_B), group(GROUP_C))
    await hass.async_block_till_done()
    result = {"group_id": body.get("group_id", ""), "done": service}
    engine.reply = lambda verb, sent: {"ok": True, "result": result}
    assert await _call(hass, service, data) == result
    verb, sent = engine.commands[-1]
    assert verb == service
    sent.pop("request_id")
    assert sent == body


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"group_id": "7a1f33c0", "name": "Anna"}, "ambiguous_group"),  # GROUP_B and GROUP_C
        ({"group_id": "ffffffff", "name": "Anna"}, "unknown_group"),
    ],
)
async def test_inbox_group_not_resolved(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, data: dict[str, Any], key: str
) -> None:
    """A group head that matches no group, or several, is refused before anything is sent."""
    _fire_inbox(hass, group(GROUP_A), group(GROUP_B), group(GROUP_C))
    await hass.async_block_till_done()
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "inbox_name", data)
    assert err.value.translation_key == key
    assert engine.commands == []


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("inbox_name", {"group_id": "0b5e", "name": "Anna"}),  # too short
        ("inbox_name", {"group_id": "zzzzzzzz", "name": "Anna"}),
        ("inbox_name", {"group_id": GROUP_A, "name": "Anna", "mode": "replace"}),
        ("inbox_name", {"group_id": GROUP_A, "name": "Anna", "max_embeddings": 11}),
        ("inbox_merge", {"group_id": GROUP_A}),
        ("forget_embedding", {"embedding_id": "1234"}),
        ("list_embeddings", {}),
    ],
)
async def test_inbox_action_validation(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, service: str, data: dict[str, Any]
) -> None:
    """Malformed action data is refused by the schema; no command is published."""
    with pytest.raises(vol.Invalid):
        await _call(hass, service, data)
    assert engine.commands == []


async def test_engine_refuses_inbox_name(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine
) -> None:
    """The engine's `not_found` answer becomes a validation error with its message."""
    _fire_inbox(hass, group(GROUP_A))
    await hass.async_block_till_done()
    engine.reply = lambda verb, body: {"ok": False, "error": {"code": "not_found", "message": "no such group"}}
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "inbox_name", {"group_id": GROUP_A, "name": "Anna"})
    assert err.value.translation_placeholders["message"] == "no such group"
    assert err.value.translation_placeholders["command"] == "inbox_name"


async def test_inbox_in_diagnostics(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    """Diagnostics show the inbox's counts and groups, without the signed crop URLs or name hints."""
    _fire_inbox(hass, group(GROUP_A), group(GROUP_B, "ignored"))
    await hass.async_block_till_done()
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert diagnostics["inbox"]["pending"] == 1
    assert diagnostics["inbox"]["ignored"] == 1
    assert [g["group_id"] for g in diagnostics["inbox"]["groups"]] == [GROUP_A, GROUP_B]
    assert {g["crop_url"] for g in diagnostics["inbox"]["groups"]} == {REDACTED}
    assert {g["nearest_person"] for g in diagnostics["inbox"]["groups"]} == {REDACTED}
    assert "sig=" not in str(diagnostics)
