"""Base entities of the FaceTrack integration."""

from __future__ import annotations

import asyncio
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import EntityPlatform
from homeassistant.util import slugify

from .hub import FaceTrackHub, camera_identifier, engine_identifier, object_id_prefix, person_identifier
from .payloads import CameraState, Seen


class FaceTrackEntity(Entity):
    """An entity fed by the engine's MQTT topics (push, no polling)."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    # Whether the entity id carries the engine's name before the device's (see `add_to_platform_start`).
    _engine_in_entity_id = False

    def __init__(self, hub: FaceTrackHub) -> None:
        """Initialise."""
        self.hub = hub

    @callback
    def add_to_platform_start(
        self, hass: HomeAssistant, platform: EntityPlatform, parallel_updates: asyncio.Semaphore | None
    ) -> None:
        """Suggest the id of a new camera or person entity: `<domain>.<engine>_<device>_<name>`.

        Home Assistant derives an entity id from the device's name and the entity's (English) name,
        `camera.front_door`, `event.front_door_face`: the engine's name in front keeps them apart from
        other integrations' devices of the same name (`camera.facetrack_front_door`,
        `event.facetrack_front_door_face`, `binary_sensor.facetrack_anna_presence`; see
        `hub.object_id_prefix`). The registry keeps it unique, and an entity already registered keeps
        its id (`migration.py` renames those of older versions). The engine's own entities (whose
        device is named after the engine) keep Home Assistant's default.
        """
        super().add_to_platform_start(hass, platform, parallel_updates)
        if not self._engine_in_entity_id or (info := self.device_info) is None:
            return
        # As Home Assistant does: the user's name of the device, else the integration's.
        device = dr.async_get(hass).async_get_device(identifiers=info["identifiers"])
        device_name = (device.name_by_user if device is not None else None) or info.get("name")
        entity_name = None if self.use_device_name else self.suggested_object_id
        parts = (object_id_prefix(self.hub.prefix), device_name, entity_name)
        self.entity_id = f"{platform.domain}.{slugify(' '.join(part for part in parts if part))}"

    async def async_added_to_hass(self) -> None:
        """Follow the engine's status."""
        await super().async_added_to_hass()
        self._connect("status", "", self._handle_update)

    def _connect(self, kind: str, key: str, target: Any) -> None:
        self.async_on_remove(async_dispatcher_connect(self.hass, self.hub.signal(kind, key), target))

    @callback
    def _handle_update(self, *args: Any) -> None:
        self.async_write_ha_state()

    @property
    def available(self) -> bool:
        """Available while the engine is online."""
        return self.hub.online


class FaceTrackCameraEntity(FaceTrackEntity):
    """An entity of one engine camera (device per camera)."""

    _engine_in_entity_id = True

    def __init__(self, hub: FaceTrackHub, camera: str, description: EntityDescription | None = None) -> None:
        """Initialise."""
        super().__init__(hub)
        self.camera = camera
        if description is not None:
            self.entity_description = description
            self._attr_unique_id = f"{hub.prefix}_{camera}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={camera_identifier(hub.prefix, camera)},
            manufacturer="FaceTrack",
            model="FaceTrack camera",
            name=camera.replace("_", " ").capitalize(),
            via_device=engine_identifier(hub.prefix),
        )

    async def async_added_to_hass(self) -> None:
        """Follow the camera's state too."""
        await super().async_added_to_hass()
        self._connect("camera", self.camera, self._handle_update)

    @property
    def camera_state(self) -> CameraState:
        """The camera's last `<prefix>/<camera>/state` payload (all None before the first)."""
        return self.hub.camera_states.get(self.camera) or CameraState()

    @property
    def available(self) -> bool:
        """Available while the engine is online and the camera neither offline nor disabled."""
        return self.hub.camera_available(self.camera)


class FaceTrackPersonEntity(FaceTrackEntity):
    """An entity of one person of the face library (device per person)."""

    _engine_in_entity_id = True

    def __init__(self, hub: FaceTrackHub, person_id: str, description: EntityDescription) -> None:
        """Initialise."""
        super().__init__(hub)
        self.person_id = person_id
        self.entity_description = description
        self._attr_unique_id = f"{hub.prefix}_{person_id}_{description.key}"
        person = hub.persons.get(person_id)
        self._attr_device_info = DeviceInfo(
            identifiers={person_identifier(hub.prefix, person_id)},
            manufacturer="FaceTrack",
            model="Enrolled person",
            name=person.display_name if person is not None else person_id,
            via_device=engine_identifier(hub.prefix),
        )

    async def async_added_to_hass(self) -> None:
        """Follow the person's `seen` messages and the face library."""
        await super().async_added_to_hass()
        self._connect("seen", self.person_id, self._handle_seen)
        self._connect("persons", "", self._handle_update)

    @callback
    def _handle_seen(self, seen: Seen) -> None:
        """Handle a `<prefix>/seen/<person_id>` message (subclasses keep what they need)."""
        self.async_write_ha_state()


class FaceTrackEngineEntity(FaceTrackEntity):
    """An entity of the engine instance itself (its device), e.g. the unknown-face inbox."""

    def __init__(self, hub: FaceTrackHub, description: EntityDescription, key: str | None = None) -> None:
        """Initialise; `key` tells apart several entities of one description (one per inbox group)."""
        super().__init__(hub)
        self.entity_description = description
        self._attr_unique_id = f"{hub.prefix}_{description.key}" + (f"_{key}" if key else "")
        self._attr_device_info = DeviceInfo(identifiers={engine_identifier(hub.prefix)})
