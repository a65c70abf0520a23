"""Face events per camera (`known_face` / `unknown_face`, from `<prefix>/<camera>/alert`), and the
engine's `new_group` event when a new unknown person appears in the inbox (`<prefix>/inbox/event`)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import EVENT_KNOWN_FACE, EVENT_NEW_GROUP, EVENT_UNKNOWN_FACE
from .entity import FaceTrackCameraEntity, FaceTrackEngineEntity
from .hub import FaceTrackConfigEntry

PARALLEL_UPDATES = 0

FACE_EVENT = EventEntityDescription(
    key="face",
    translation_key="face",
    event_types=[EVENT_KNOWN_FACE, EVENT_UNKNOWN_FACE],
)

INBOX_EVENT = EventEntityDescription(
    key="unknown_person",
    translation_key="unknown_person",
    event_types=[EVENT_NEW_GROUP],
)

# Alert fields passed on as event attributes.
EVENT_ATTRIBUTES = ("person", "person_id", "similarity", "track_id", "snapshot_url", "clip_url", "alert_id")
INBOX_EVENT_ATTRIBUTES = ("group_id", "camera", "track_id", "crop_url")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FaceTrackConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a face event entity per camera, now and for cameras added later."""
    hub = entry.runtime_data.hub

    @callback
    def _add_cameras(cameras: list[str]) -> None:
        async_add_entities(FaceTrackFaceEvent(hub, camera, FACE_EVENT) for camera in cameras)

    entry.async_on_unload(hub.async_add_camera_listener(_add_cameras))
    async_add_entities([FaceTrackInboxEvent(hub, INBOX_EVENT)])


class FaceTrackFaceEvent(FaceTrackCameraEntity, EventEntity):
    """An alert of the camera: a known or an unknown face."""

    async def async_added_to_hass(self) -> None:
        """Follow the camera's alerts."""
        await super().async_added_to_hass()
        self._connect("alert", self.camera, self._handle_alert)

    @property
    def available(self) -> bool:
        """Alerts only need the engine online."""
        return self.hub.online

    @callback
    def _handle_alert(self, alert: dict[str, Any]) -> None:
        kind = alert["kind"]
        if kind not in (self.event_types or ()):
            return
        self._trigger_event(kind, {key: alert.get(key) for key in EVENT_ATTRIBUTES})
        self.async_write_ha_state()


class FaceTrackInboxEvent(FaceTrackEngineEntity, EventEntity):
    """A new unknown person (a new group) appeared in the engine's unknown-face inbox."""

    async def async_added_to_hass(self) -> None:
        """Follow `<prefix>/inbox/event`."""
        await super().async_added_to_hass()
        self._connect("inbox_event", "", self._handle_inbox_event)

    @callback
    def _handle_inbox_event(self, event: dict[str, Any]) -> None:
        if event["type"] not in (self.event_types or ()):
            return
        self._trigger_event(event["type"], {key: event.get(key) for key in INBOX_EVENT_ATTRIBUTES})
        self.async_write_ha_state()
