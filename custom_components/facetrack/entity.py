"""Base entities of the FaceTrack integration."""

from __future__ import annotations

from typing import Any

from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription

from .hub import FaceTrackHub, camera_identifier, engine_identifier, person_identifier
from .payloads import CameraState, Seen


class FaceTrackEntity(Entity):
    """An entity fed by the engine's MQTT topics (push, no polling)."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, hub: FaceTrackHub) -> None:
        """Initialise."""
        self.hub = hub

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
        """Available while the engine is online and the camera is not offline."""
        return self.hub.camera_available(self.camera)


class FaceTrackPersonEntity(FaceTrackEntity):
    """An entity of one person of the face library (device per person)."""

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
