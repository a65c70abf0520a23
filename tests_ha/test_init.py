"""Setup, unload, reload, devices."""

from __future__ import annotations

from unittest.mock import patch

from custom_components.facetrack.const import DOMAIN
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from .helpers import ANNA_ID, BOB_ID, PREFIX


async def test_setup_creates_devices_and_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """One device per camera and per person (plus the engine), with their entities."""
    assert init_integration.state is ConfigEntryState.LOADED
    devices = dr.async_entries_for_config_entry(device_registry, init_integration.entry_id)
    identifiers = {next(iter(d.identifiers))[1] for d in devices}
    assert identifiers == {
        PREFIX,
        f"{PREFIX}:camera:front_door",
        f"{PREFIX}:camera:garden",
        f"{PREFIX}:person:{ANNA_ID}",
        f"{PREFIX}:person:{BOB_ID}",
    }
    engine = device_registry.async_get_device(identifiers={(DOMAIN, PREFIX)})
    assert engine is not None
    assert engine.sw_version == "0.1.0"
    anna = device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:person:{ANNA_ID}")})
    assert anna is not None
    assert anna.name == "Anna"
    assert anna.via_device_id == engine.id
    entities = er.async_entries_for_config_entry(entity_registry, init_integration.entry_id)
    assert sorted(e.entity_id for e in entities) == [
        "binary_sensor.facetrack_anna_presence",
        "binary_sensor.facetrack_bob_presence",
        "camera.facetrack_front_door",
        "camera.facetrack_garden",
        "event.facetrack_front_door_face",
        "event.facetrack_garden_face",
        "event.facetrack_new_unknown_person",
        "image.facetrack_front_door_last_alert",
        "image.facetrack_garden_last_alert",
        "sensor.facetrack_anna_gallery_coverage",
        "sensor.facetrack_anna_last_seen",
        "sensor.facetrack_bob_gallery_coverage",
        "sensor.facetrack_bob_last_seen",
        "sensor.facetrack_front_door_faces_in_view",
        "sensor.facetrack_front_door_frames_per_second",
        "sensor.facetrack_garden_faces_in_view",
        "sensor.facetrack_garden_frames_per_second",
        "sensor.facetrack_unknown_persons",
    ]
    for entity_id in ("sensor.facetrack_garden_frames_per_second", "sensor.facetrack_anna_gallery_coverage"):
        assert entity_registry.async_get(entity_id).entity_category == "diagnostic"


async def test_unload_and_reload(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Unloading makes the entities unavailable; reloading brings them back from retained topics."""
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == STATE_UNAVAILABLE

    assert await hass.config_entries.async_setup(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED
    # Nothing retained was replayed by the mock broker: unavailable until the engine's status.
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == STATE_UNAVAILABLE


async def test_setup_without_mqtt_retries(hass: HomeAssistant, config_entry: MockConfigEntry) -> None:
    """Without the MQTT client the entry is retried later."""
    config_entry.add_to_hass(hass)
    with patch("homeassistant.components.mqtt.async_wait_for_mqtt_client", return_value=False):
        await hass.config_entries.async_setup(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_remove_stale_device(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """A device the engine no longer knows can be deleted; a current one cannot."""
    assert await async_setup_component(hass, "config", {})
    stale = device_registry.async_get_or_create(
        config_entry_id=init_integration.entry_id,
        identifiers={(DOMAIN, f"{PREFIX}:camera:attic")},
    )
    other = device_registry.async_get_or_create(
        config_entry_id=init_integration.entry_id,
        identifiers={("other", "x")},
    )
    client = await hass_ws_client(hass)
    for device, allowed in (
        (stale, True),
        (other, True),
        (device_registry.async_get_device(identifiers={(DOMAIN, PREFIX)}), False),
        (device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:camera:garden")}), False),
        (device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:person:{BOB_ID}")}), False),
    ):
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": init_integration.entry_id,
                "device_id": device.id,
            }
        )
        response = await client.receive_json()
        assert response["success"] is allowed, device.identifiers


def test_brand_icon() -> None:
    """The integration ships a 256x256 PNG icon."""
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "custom_components" / "facetrack" / "brand" / "icon.png"
    with Image.open(path) as icon:
        assert icon.format == "PNG"
        assert icon.size == (256, 256)
