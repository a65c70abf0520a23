"""Sensors: last seen and gallery coverage per person; faces in view and frames/s per camera; the unknown-face
inbox."""

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

from .entity import FaceTrackCameraEntity, FaceTrackEngineEntity, FaceTrackPersonEntity
from .hub import FaceTrackConfigEntry, FaceTrackHub
from .payloads import COVERAGE_STATES, CameraState, Person, Seen, parse_time

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class FaceTrackCameraSensorDescription(SensorEntityDescription):
    """A sensor of a camera, read from its `<prefix>/<camera>/state`."""

    value_fn: Callable[[CameraState], StateType]


CAMERA_SENSORS: tuple[FaceTrackCameraSensorDescription, ...] = (
    FaceTrackCameraSensorDescription(
        key="faces",
        translation_key="faces",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda state: state.faces,
    ),
    FaceTrackCameraSensorDescription(
        key="fps",
        translation_key="fps",
        native_unit_of_measurement="fps",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda state: state.fps,
    ),
)

UNKNOWN_FACES = SensorEntityDescription(
    key="unknown_faces",
    translation_key="unknown_faces",
    state_class=SensorStateClass.MEASUREMENT,
)

LAST_SEEN = SensorEntityDescription(
    key="last_seen",
    translation_key="last_seen",
    device_class=SensorDeviceClass.TIMESTAMP,
)

GALLERY_COVERAGE = SensorEntityDescription(
    key="gallery_coverage",
    translation_key="gallery_coverage",
    device_class=SensorDeviceClass.ENUM,
    options=list(COVERAGE_STATES),
    entity_category=EntityCategory.DIAGNOSTIC,
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
        async_add_entities(
            entity
            for pid in person_ids
            for entity in (FaceTrackLastSeen(hub, pid, LAST_SEEN), FaceTrackGalleryCoverage(hub, pid, GALLERY_COVERAGE))
        )

    entry.async_on_unload(hub.async_add_camera_listener(_add_cameras))
    entry.async_on_unload(hub.async_add_person_listener(_add_persons))
    async_add_entities([FaceTrackUnknownFaces(hub, UNKNOWN_FACES)])


class FaceTrackCameraSensor(FaceTrackCameraEntity, SensorEntity):
    """A value of the camera's state."""

    entity_description: FaceTrackCameraSensorDescription

    @property
    def native_value(self) -> StateType:
        """The value in the camera's last state."""
        return self.entity_description.value_fn(self.camera_state)


class FaceTrackUnknownFaces(FaceTrackEngineEntity, SensorEntity):
    """Unknown persons waiting in the inbox to be named; the groups (pending and ignored) as an attribute.

    The inbox's one entity on the default dashboard: the groups' image entities are disabled by default
    (see image.py), and every group is listed here with the id the inbox actions take.
    """

    # The group list changes with every sighting: keep it out of the recorder's history.
    _unrecorded_attributes = frozenset({"groups"})

    async def async_added_to_hass(self) -> None:
        """Follow the engine's `<prefix>/inbox`."""
        await super().async_added_to_hass()
        self._connect("inbox", "", self._handle_update)

    @property
    def native_value(self) -> int | None:
        """Pending groups (unknown until the engine publishes its inbox: engines before 1.1 have none)."""
        return self.hub.inbox_counts.get("pending")

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Ignored groups and every group's summary, newest sighting first (not the signed, expiring crop URL)."""
        return {
            "ignored": self.hub.inbox_counts.get("ignored"),
            "groups": [
                {"group_id": group.group_id, "status": group.status, **group.attributes()}
                for group in self.hub.inbox.values()
            ],
        }


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
        person = self.hub.persons.get(self.person_id) or Person(self.person_id)
        last_seen = parse_time(person.last_seen)
        if last_seen is not None and (self._last_seen is None or last_seen > self._last_seen):
            self._last_seen = last_seen
            self._camera = person.last_camera
            self._similarity = None

    @callback
    def _handle_update(self, *args: Any) -> None:
        self._update_from_library()
        super()._handle_update(*args)

    @callback
    def _handle_seen(self, seen: Seen) -> None:
        self._last_seen = parse_time(seen.time) or dt_util.utcnow()
        self._camera = seen.camera
        self._similarity = seen.similarity
        super()._handle_seen(seen)

    @property
    def native_value(self) -> datetime | None:
        """The last sighting."""
        return self._last_seen

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """The camera and the similarity of the last sighting."""
        return {"camera": self._camera, "similarity": self._similarity}


class FaceTrackGalleryCoverage(FaceTrackPersonEntity, SensorEntity):
    """Which head poses the person's gallery lacks, as a translated hint ("Add a profile photo").

    A face seen from a pose the gallery has no embedding of is recognised less often. The state is a key of
    `COVERAGE_STATES` (`Person.coverage`), unknown with an engine that does not report poses or a library
    enrolled before it recorded them; the attributes are the library's counts as sent.
    """

    @property
    def _person(self) -> Person:
        return self.hub.persons.get(self.person_id) or Person(self.person_id)

    @property
    def native_value(self) -> str | None:
        """The coverage hint."""
        return self._person.coverage

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """`poses`: embeddings per head-pose bin (None from an engine without them); `missing_poses`: the bins
        without any, frontal to profile."""
        person = self._person
        return {
            "poses": dict(person.poses) if person.poses is not None else None,
            "missing_poses": list(person.missing_poses),
        }
