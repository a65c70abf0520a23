"""The FaceTrack integration: presence, face alerts, cameras and enrolment over MQTT."""

from __future__ import annotations

from homeassistant.components import mqtt
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.typing import ConfigType

from .const import (
    CONF_EXCLUDED_CAMERAS,
    CONF_EXCLUDED_PERSONS,
    CONF_PRESENCE_TIMEOUT,
    DEFAULT_PRESENCE_TIMEOUT,
    DOMAIN,
)
from .hub import FaceTrackConfigEntry, FaceTrackData, FaceTrackHub
from .migration import async_migrate_entry
from .services import async_setup_services

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.CAMERA,
    Platform.EVENT,
    Platform.IMAGE,
    Platform.SENSOR,
]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

__all__ = ["async_migrate_entry"]  # Home Assistant calls it for entries of an older version


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Set up the FaceTrack actions."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: FaceTrackConfigEntry) -> bool:
    """Set up one FaceTrack engine instance from a config entry."""
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_unavailable")
    hub = FaceTrackHub(hass, entry)
    hub.async_update_engine_device()
    hub.async_remove_unwanted_devices()
    entry.runtime_data = FaceTrackData(hub=hub)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Subscribe once the platforms listen: the retained topics arrive right away.
    await hub.async_start()
    entry.async_on_unload(hub.async_stop)
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    return True


async def _async_update_listener(hass: HomeAssistant, entry: FaceTrackConfigEntry) -> None:
    """Apply new options: the presence timeout at once, other cameras / persons by a reload.

    Also called when MQTT discovery records the entry's discovery keys: nothing to do then.
    """
    hub = entry.runtime_data.hub
    hub.presence_timeout = float(entry.options.get(CONF_PRESENCE_TIMEOUT, DEFAULT_PRESENCE_TIMEOUT))
    if hub.excluded_cameras != frozenset(entry.options.get(CONF_EXCLUDED_CAMERAS, ())) or (
        hub.excluded_persons != frozenset(entry.options.get(CONF_EXCLUDED_PERSONS, ()))
    ):
        hass.config_entries.async_schedule_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: FaceTrackConfigEntry) -> bool:
    """Unload a config entry."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: FaceTrackConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Allow removing a device that no longer matches an engine camera or a person."""
    return not entry.runtime_data.hub.is_current_device(device)
