"""Sensors: last seen per person; faces in view and frames/s per camera."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from .entity import FaceTrackCameraEntity, FaceTrackPersonEntity
from .hub import FaceTrackConfigEntry, FaceTrackHub

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class FaceTrackCameraSensorDescription(SensorEntityDescription):
    """A sensor of a camera, read from its `<prefix>/<camera>/state`."""

    value_fn: Callable[[dict[str, Any]], StateType]


CAMERA_SENSORS: tuple[FaceTrackCameraSensorDescription, ...] = (
    FaceTrackCameraSensorDescription(
        key="faces",
        translation_key="faces",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda state: state.get("faces"),
    ),
    FaceTrackCameraSensorDescription(
        key="fps",
        translation_key="fps",
        native_unit_of_measurement="fps",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda state: state.get("fps"),
    ),
)

LAST_SEEN = SensorEntityDescription(
    key="last_seen",
    translation_key="last_seen",
    device_class=SensorDeviceClass.TIMESTAMP,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FaceTrackConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the camera and person sensors, now and for cameras / persons added later."""
    hub = entry.runtime_data.hub

    @callback
    def _add_cameras(cameras: list[str]) -> None:
        async_add_entities(
            FaceTrackCameraSensor(hub, camera, description) for camera in cameras for description in CAMERA_SENSORS
        )

    @callback
    def _add_persons(person_ids: list[str]) -> None:
        async_add_entities(FaceTrackLastSeen(hub, pid, LAST_SEEN) for pid in person_ids)

    entry.async_on_unload(hub.async_add_camera_listener(_add_cameras))
    entry.async_on_unload(hub.async_add_person_listener(_add_persons))


class FaceTrackCameraSensor(FaceTrackCameraEntity, SensorEntity):
    """A value of the camera's state."""

    entity_description: FaceTrackCameraSensorDescription

    @property
    def native_value(self) -> StateType:
        """The value in the camera's last state."""
        return self.entity_description.value_fn(self.camera_state)


class FaceTrackLastSeen(FaceTrackPersonEntity, SensorEntity):
    """When the person was last seen (the `seen` messages and the library's `last_seen`)."""

    def __init__(self, hub: FaceTrackHub, person_id: str, description: SensorEntityDescription) -> None:
        """Initialise from the face library's last sighting."""
        super().__init__(hub, person_id, description)
        self._similarity: float | None = None
        self._camera: str | None = None
        self._last_seen: datetime | None = None
        self._update_from_library()

    @callback
    def _update_from_library(self) -> None:
        person = self.hub.persons.get(self.person_id, {})
        last_seen = _parse_time(person.get("last_seen"))
        if last_seen is not None and (self._last_seen is None or last_seen > self._last_seen):
            self._last_seen = last_seen
            self._camera = person.get("last_camera")
            self._similarity = None

    @callback
    def _handle_update(self, *args: Any) -> None:
        self._update_from_library()
        super()._handle_update(*args)

    @callback
    def _handle_seen(self, seen: dict[str, Any]) -> None:
        self._last_seen = _parse_time(seen.get("time")) or dt_util.utcnow()
        self._camera = seen.get("camera")
        self._similarity = seen.get("similarity")
        super()._handle_seen(seen)

    @property
    def native_value(self) -> datetime | None:
        """The last sighting."""
        return self._last_seen

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """The camera and the similarity of the last sighting."""
        return {"camera": self._camera, "similarity": self._similarity}


def _parse_time(value: Any) -> datetime | None:
    """Parse an ISO 8601 UTC time of the contract ("...Z")."""
    if not isinstance(value, str):
        return None
    return dt_util.parse_datetime(value)
