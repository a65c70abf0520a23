"""A camera with `enabled: false` in the engine's configuration keeps its device and entities, unavailable."""

from __future__ import annotations

import pytest
from custom_components.facetrack.const import DOMAIN
from custom_components.facetrack.hub import camera_identifier
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .helpers import PREFIX, alert, fire, info, state

# The camera's entities by platform and unique id (their ids do not matter here).
PORCH = [
    ("camera", f"{PREFIX}_porch_camera"),
    ("event", f"{PREFIX}_porch_face"),
    ("image", f"{PREFIX}_porch_last_alert"),
    ("sensor", f"{PREFIX}_porch_faces"),
    ("sensor", f"{PREFIX}_porch_fps"),
]

DISABLED = state("porch", state="disabled", fps=0, faces=0, error="disabled in the configuration",
                 stream_url=None, snapshot_url=None, mjpeg_url=None)  # fmt: skip


def _porch_states(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> list[str]:
    states = []
    for domain, unique_id in PORCH:
        entity_id = entity_registry.async_get_entity_id(domain, DOMAIN, unique_id)
        assert entity_id is not None, unique_id
        states.append(hass.states.get(entity_id).state)
    return states


@pytest.mark.parametrize("state_first", [True, False], ids=["state-then-info", "info-then-state"])
async def test_disabled_camera_keeps_its_device_and_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
    state_first: bool,
) -> None:
    """Listed in `disabled_cameras`, whatever its last state: a device and unavailable entities; enabled
    again, they come back; gone from the configuration, the device goes."""
    if state_first:
        fire(hass, f"{PREFIX}/porch/state", DISABLED, "state")
    fire(hass, f"{PREFIX}/info", info(disabled=["porch"]), "info")
    if not state_first:
        fire(hass, f"{PREFIX}/porch/state", DISABLED, "state")
    await hass.async_block_till_done()
    hub = init_integration.runtime_data.hub
    assert hub.cameras == ["front_door", "garden", "porch"] and hub.disabled_cameras == {"porch"}
    assert device_registry.async_get_device(identifiers={camera_identifier(PREFIX, "porch")}) is not None
    assert _porch_states(hass, entity_registry) == [STATE_UNAVAILABLE] * len(PORCH)
    # An alert cannot come from it: still unavailable.
    fire(hass, f"{PREFIX}/porch/alert", alert("porch", "unknown_face"), "alert", qos=1)
    await hass.async_block_till_done()
    assert _porch_states(hass, entity_registry) == [STATE_UNAVAILABLE] * len(PORCH)

    # Enabled in the configuration again (the engine restarted): available.
    fire(hass, f"{PREFIX}/info", info(cameras=["front_door", "garden", "porch"]), "info")
    fire(hass, f"{PREFIX}/porch/state", state("porch"), "state")
    await hass.async_block_till_done()
    assert STATE_UNAVAILABLE not in _porch_states(hass, entity_registry)

    # Disabled again: unavailable at once, even before its state says so.
    fire(hass, f"{PREFIX}/info", info(disabled=["porch"]), "info")
    await hass.async_block_till_done()
    assert _porch_states(hass, entity_registry) == [STATE_UNAVAILABLE] * len(PORCH)
    assert hass.states.get("sensor.facetrack_front_door_faces_in_view").state == "1"

    # Removed from the configuration: the device and its entities go.
    fire(hass, f"{PREFIX}/info", info(), "info")
    await hass.async_block_till_done()
    assert device_registry.async_get_device(identifiers={camera_identifier(PREFIX, "porch")}) is None
    assert entity_registry.async_get_entity_id("camera", DOMAIN, f"{PREFIX}_porch_camera") is None


async def test_disabled_camera_from_setup(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """A camera in both lists runs (the engine never sends that); one only disabled is unavailable."""
    fire(hass, f"{PREFIX}/info", info(cameras=["front_door"], disabled=["garden", "front_door"]), "info")
    await hass.async_block_till_done()
    hub = init_integration.runtime_data.hub
    assert hub.cameras == ["front_door", "garden"] and hub.disabled_cameras == {"garden"}
    assert hass.states.get("camera.facetrack_garden").state == STATE_UNAVAILABLE
    assert hass.states.get("camera.facetrack_front_door").state != STATE_UNAVAILABLE
