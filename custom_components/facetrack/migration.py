"""Migrations of the config entries of older versions.

1.1 -> 1.2: the entity ids of cameras and persons get the engine's name in front (`camera.front_door`
-> `camera.facetrack_front_door`, `binary_sensor.anna_presence` -> `binary_sensor.facetrack_anna_presence`;
see `entity.FaceTrackEntity.add_to_platform_start`). Only ids Home Assistant derived itself are renamed:
`<device name>_<English entity name>`, with a `_2`, `_3`... suffix if it had to; an id the user chose is
kept, and so is one whose new id is taken.
"""

from __future__ import annotations

import re
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.translation import async_get_translations
from homeassistant.util import slugify

from .const import CONF_TOPIC_PREFIX, DOMAIN, LOGGER
from .hub import DeviceKind, FaceTrackConfigEntry, object_id_prefix, parse_identifier

#: The config entry version this integration writes (`ConfigFlow.VERSION`, `.MINOR_VERSION`).
ENTRY_VERSION = 1
ENTRY_MINOR_VERSION = 2


async def async_migrate_entry(hass: HomeAssistant, entry: FaceTrackConfigEntry) -> bool:
    """Bring an entry of an older version up to date; False for an entry of a newer version."""
    if entry.version > ENTRY_VERSION:
        return False  # written by a newer FaceTrack: cannot be read
    if entry.minor_version < 2:  # 1.1 -> 1.2
        await async_prefix_entity_ids(hass, entry)
        hass.config_entries.async_update_entry(entry, minor_version=2)
    return True


async def async_prefix_entity_ids(hass: HomeAssistant, entry: FaceTrackConfigEntry) -> None:
    """Rename the default entity ids of the entry's camera and person entities (1.1 -> 1.2)."""
    prefix: str = entry.data[CONF_TOPIC_PREFIX]
    head = object_id_prefix(prefix)
    # Entity ids come from the English names, whatever the language of Home Assistant.
    names = await async_get_translations(hass, "en", "entity", {DOMAIN})
    devices = dr.async_get(hass)
    entities = er.async_get(hass)

    @callback
    def _rename(entity: er.RegistryEntry) -> dict[str, Any] | None:
        device = devices.async_get(entity.device_id) if entity.device_id else None
        if device is None or not any(
            (parsed := parse_identifier(prefix, identifier)) is not None
            and parsed[0] in (DeviceKind.CAMERA, DeviceKind.PERSON)
            for identifier in device.identifiers
        ):
            return None  # the engine's own entities already start with its name
        name = None
        if entity.translation_key is not None:
            name = names.get(f"component.{DOMAIN}.entity.{entity.domain}.{entity.translation_key}.name")
        object_id = entity.entity_id.split(".", 1)[1]
        if object_id.startswith(f"{head}_"):
            return None  # already under the engine's name (a device the user named so)
        for device_name in {device.name, device.name_by_user} - {None}:
            default = slugify(" ".join(part for part in (device_name, name) if part))
            if re.fullmatch(rf"{re.escape(default)}(_\d+)?", object_id):
                break
        else:
            return None  # chosen by the user
        new_id = f"{entity.domain}.{head}_{object_id}"
        if entities.async_is_registered(new_id) or not hass.states.async_available(new_id):
            LOGGER.warning("Cannot rename %s to %s: the id is taken", entity.entity_id, new_id)
            return None
        LOGGER.info("Renaming %s to %s", entity.entity_id, new_id)
        return {"new_entity_id": new_id}

    await er.async_migrate_entries(hass, entry.entry_id, _rename)
