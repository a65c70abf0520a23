"""Images: the face snapshot of each camera's last alert, and the best crop of each unknown person
waiting in the inbox.

An alert's `snapshot_url` (signed) is its own face, which the engine serves from the moment it
publishes the alert: the image fetches it when the alert arrives and then shows it, with the
alert's time and attributes. If the fetch fails (the engine unreachable, an error, not an image)
the previous image stays as it was, never a broken one. Older engines store the snapshot with the
alert's clip, a few seconds later: the latest alert not shown yet is fetched again when
`<prefix>/<camera>/clip` announces its clip.

An inbox group's image (`crop_url`, signed, valid 24 h, republished at least every 12 h) lives as
long as the group is pending: naming, merging away, discarding or ignoring it (or the engine
re-matching it to a person enrolled since) removes the entity. These images are **disabled by
default**: a busy camera makes dozens of groups, and one image entity each would flood the default
dashboard. The `Unknown persons` sensor lists every group (ids for the inbox actions); enable the
image of a group to see its face in Home Assistant (the engine's web page shows them all).
"""

from __future__ import annotations

import asyncio

import aiohttp
from homeassistant.components.image import Image, ImageEntity, ImageEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .const import GROUP_PENDING, LOGGER
from .entity import FaceTrackCameraEntity, FaceTrackEngineEntity
from .hub import FaceTrackConfigEntry, FaceTrackHub
from .payloads import Alert, Clip, InboxGroup, parse_time

PARALLEL_UPDATES = 0
FETCH_TIMEOUT = 10

LAST_ALERT = ImageEntityDescription(key="last_alert", translation_key="last_alert")
UNKNOWN_GROUP = ImageEntityDescription(key="unknown_group", translation_key="unknown_group")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FaceTrackConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a last-alert image per camera and a crop per pending inbox group, now and later."""
    hub = entry.runtime_data.hub

    @callback
    def _add_cameras(cameras: list[str]) -> None:
        async_add_entities(FaceTrackAlertImage(hass, hub, camera) for camera in cameras)

    @callback
    def _add_groups(group_ids: list[str]) -> None:
        async_add_entities(FaceTrackUnknownGroupImage(hass, hub, group_id) for group_id in group_ids)

    @callback
    def _remove_gone_groups() -> None:
        """Registry entries of groups no longer pending go (disabled ones too: they are never added,
        so they cannot remove themselves); an enabled entity goes with its entry."""
        registry = er.async_get(hass)
        pending = set(hub.pending_groups())
        for item in er.async_entries_for_config_entry(registry, entry.entry_id):
            if (
                item.domain == "image"
                and item.translation_key == UNKNOWN_GROUP.translation_key
                and item.unique_id[-32:] not in pending
            ):
                registry.async_remove(item.entity_id)

    entry.async_on_unload(hub.async_add_camera_listener(_add_cameras))
    entry.async_on_unload(hub.async_add_group_listener(_add_groups))
    entry.async_on_unload(async_dispatcher_connect(hass, hub.signal("inbox"), _remove_gone_groups))


class FaceTrackAlertImage(FaceTrackCameraEntity, ImageEntity):
    """The face snapshot of the camera's last alert whose snapshot could be fetched; its time is
    that alert's."""

    _attr_content_type = "image/jpeg"

    def __init__(self, hass: HomeAssistant, hub: FaceTrackHub, camera: str) -> None:
        """Initialise (no alert yet: no image)."""
        FaceTrackCameraEntity.__init__(self, hub, camera, LAST_ALERT)
        ImageEntity.__init__(self, hass)
        self._image: Image | None = None
        self._pending: Alert | None = None  # the latest alert, until its snapshot shows
        self._requested = 0  # fetches started, in the order of the alerts
        self._shown = 0  # the fetch whose image shows
        self._attr_extra_state_attributes = {"alert_id": None, "kind": None, "person": None}

    async def async_added_to_hass(self) -> None:
        """Follow the camera's alerts and stored clips."""
        await super().async_added_to_hass()
        self._connect("alert", self.camera, self._handle_alert)
        self._connect("clip", self.camera, self._handle_clip)

    @property
    def available(self) -> bool:
        """Alerts only need the engine online (and the camera not disabled)."""
        return self.hub.camera_alerts_available(self.camera)

    @callback
    def _handle_alert(self, alert: Alert) -> None:
        if not alert.snapshot_url:
            return  # no snapshot (no HTTP server, no clip): the image stays
        self._pending = alert
        self._fetch(alert, alert.snapshot_url)

    @callback
    def _handle_clip(self, clip: Clip) -> None:
        """An older engine stored the latest alert's clip: its snapshot can be fetched now."""
        alert = self._pending
        if alert is None or clip.alert_id != alert.alert_id:
            return
        url = clip.snapshot_url or alert.snapshot_url
        if url:
            self._fetch(alert, url)

    @callback
    def _fetch(self, alert: Alert, url: str) -> None:
        self._requested += 1
        self.hass.async_create_task(
            self._async_show(self._requested, alert, url), f"facetrack {self.camera} alert snapshot"
        )

    async def _async_show(self, request: int, alert: Alert, url: str) -> None:
        """Fetch an alert's snapshot and show it, unless that failed or a later alert's shows."""
        try:
            image = await _async_fetch_image(self.hass, url, f"the snapshot of alert {alert.alert_id}")
        except Exception as err:  # a task of its own: whatever failed, the previous image stays
            LOGGER.warning("Cannot fetch the snapshot of alert %s: %s", alert.alert_id, err)
            return
        if image is None or request < self._shown:
            return
        self._shown = request
        if self._pending is alert:
            self._pending = None
        self._image = image
        self._attr_content_type = image.content_type
        self._attr_image_last_updated = parse_time(alert.time) or dt_util.utcnow()
        self._attr_extra_state_attributes = {"alert_id": alert.alert_id, "kind": alert.kind, "person": alert.person}
        # A new access token changes entity_picture: every view fetches the new image.
        self.async_update_token()
        self.async_write_ha_state()

    async def async_image(self) -> bytes | None:
        """The snapshot shown (fetched when its alert came)."""
        return self._image.content if self._image is not None else None


class FaceTrackUnknownGroupImage(FaceTrackEngineEntity, ImageEntity):
    """The cover crop of an unknown person (a pending group of the engine's inbox); disabled by
    default (see the module's docstring)."""

    _attr_content_type = "image/jpeg"
    _attr_entity_registry_enabled_default = False

    def __init__(self, hass: HomeAssistant, hub: FaceTrackHub, group_id: str) -> None:
        """Initialise from the group in the hub's inbox."""
        FaceTrackEngineEntity.__init__(self, hub, UNKNOWN_GROUP, group_id)
        ImageEntity.__init__(self, hass)
        self.group_id = group_id
        # Entity names by group: "Unknown person 0b5e1c2d" (the id's head is what the actions take).
        self._attr_translation_placeholders = {"group": group_id[:8]}
        self._update_from_inbox()

    @callback
    def _update_from_inbox(self) -> None:
        group = self.hub.inbox.get(self.group_id) or InboxGroup(self.group_id)
        if group.crop_url != self._attr_image_url:
            self._attr_image_url = group.crop_url
            self._cached_image = None
        self._attr_image_last_updated = parse_time(group.last_seen) or dt_util.utcnow()
        # The group's fields (the crop URL is the image itself).
        self._attr_extra_state_attributes = group.attributes()

    async def async_added_to_hass(self) -> None:
        """Follow the inbox."""
        await super().async_added_to_hass()
        self._connect("inbox", "", self._handle_inbox)

    @callback
    def _handle_inbox(self) -> None:
        group = self.hub.inbox.get(self.group_id)
        if group is None or group.status != GROUP_PENDING:
            # Named, merged away, discarded, ignored or re-matched: the platform removes the entity's
            # registry entry, and the entity with it (a returning group gets a new one).
            return
        self._update_from_inbox()
        self.async_write_ha_state()

    async def async_image(self) -> bytes | None:
        """The group's best crop (fetched once per crop URL)."""
        if self._cached_image is None and self._attr_image_url:
            self._cached_image = await _async_fetch_image(
                self.hass, self._attr_image_url, f"the crop of unknown group {self.group_id}"
            )
        return self._cached_image.content if self._cached_image is not None else None


async def _async_fetch_image(hass: HomeAssistant, url: str, what: str) -> Image | None:
    """GET an image from the engine's HTTP server; None (logged at debug) when missing or failing."""
    session = async_get_clientsession(hass)
    try:
        async with asyncio.timeout(FETCH_TIMEOUT), session.get(url) as response:
            if response.status == 404:
                LOGGER.debug("%s is not stored (yet)", what.capitalize())
                return None
            response.raise_for_status()
            content_type = (response.content_type or "").lower()
            if not content_type.startswith("image/"):
                LOGGER.debug("%s is not an image: %s", what.capitalize(), content_type)
                return None
            return Image(content_type=content_type, content=await response.read())
    except (TimeoutError, aiohttp.ClientError) as err:
        LOGGER.debug("Cannot fetch %s: %s", what, err)
        return None
