"""Presence of each enrolled person (occupancy, from `<prefix>/seen/<person_id>`)."""

from __future__ import annotations

from datetime import datetime

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_call_later

from .entity import FaceTrackPersonEntity
from .hub import FaceTrackConfigEntry, FaceTrackHub
from .payloads import Seen

PARALLEL_UPDATES = 0

PRESENCE = BinarySensorEntityDescription(
    key="presence",
    translation_key="presence",
    device_class=BinarySensorDeviceClass.OCCUPANCY,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FaceTrackConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a presence sensor per person, now and for every person enrolled later."""
    hub = entry.runtime_data.hub

    @callback
    def _add_persons(person_ids: list[str]) -> None:
        async_add_entities(FaceTrackPresence(hub, pid, PRESENCE) for pid in person_ids)

    entry.async_on_unload(hub.async_add_person_listener(_add_persons))


class FaceTrackPresence(FaceTrackPersonEntity, BinarySensorEntity):
    """On while a `seen` message of the person came within the presence timeout."""

    _attr_is_on = False
    _cancel_off: CALLBACK_TYPE | None = None

    def __init__(self, hub: FaceTrackHub, person_id: str, description: BinarySensorEntityDescription) -> None:
        """Initialise (off: nobody seen since setup)."""
        super().__init__(hub, person_id, description)
        self._attr_extra_state_attributes = {"camera": None}

    async def async_will_remove_from_hass(self) -> None:
        """Cancel the pending switch-off."""
        self._cancel_timer()
        await super().async_will_remove_from_hass()

    @callback
    def _cancel_timer(self) -> None:
        if self._cancel_off is not None:
            self._cancel_off()
            self._cancel_off = None

    @callback
    def _handle_seen(self, seen: Seen) -> None:
        self._cancel_timer()
        self._attr_is_on = True
        self._attr_extra_state_attributes = {"camera": seen.camera}
        self._cancel_off = async_call_later(self.hass, self.hub.presence_timeout, self._async_presence_timeout)
        super()._handle_seen(seen)

    @callback
    def _async_presence_timeout(self, _now: datetime) -> None:
        self._cancel_off = None
        self._attr_is_on = False
        self.async_write_ha_state()
