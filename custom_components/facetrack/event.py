"""Face events per camera (`known_face` / `unknown_face`, from `<prefix>/<camera>/alert`), and the
engine's `new_group` event when a new unknown person appears in the inbox (`<prefix>/inbox/event`)."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import EVENT_KNOWN_FACE, EVENT_NEW_GROUP, EVENT_UNKNOWN_FACE
from .entity import FaceTrackCameraEntity, FaceTrackEngineEntity
from .hub import FaceTrackConfigEntry
from .payloads import Alert, InboxEvent

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
        """Alerts only need the engine online (and the camera not disabled)."""
        return self.hub.camera_alerts_available(self.camera)

    @callback
    def _handle_alert(self, alert: Alert) -> None:
        if alert.kind not in (self.event_types or ()):
            return
        self._trigger_event(
            alert.kind,
            {
                "person": alert.person,
                "person_id": alert.person_id,
                "similarity": alert.similarity,
                "track_id": alert.track_id,
                "snapshot_url": alert.snapshot_url,
                "clip_url": alert.clip_url,
                "clip_offset_seconds": alert.clip_offset_seconds,
                "alert_id": alert.alert_id,
            },
        )
        self.async_write_ha_state()


class FaceTrackInboxEvent(FaceTrackEngineEntity, EventEntity):
    """A new unknown person (a new group) appeared in the engine's unknown-face inbox."""

    async def async_added_to_hass(self) -> None:
        """Follow `<prefix>/inbox/event`."""
        await super().async_added_to_hass()
        self._connect("inbox_event", "", self._handle_inbox_event)

    @callback
    def _handle_inbox_event(self, event: InboxEvent) -> None:
        if event.type not in (self.event_types or ()):
            return
        self._trigger_event(
            event.type,
            {
                "group_id": event.group_id,
                "camera": event.camera,
                "track_id": event.track_id,
                "crop_url": event.crop_url,
            },
        )
        self.async_write_ha_state()
