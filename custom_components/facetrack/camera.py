"""A camera entity per engine camera: its stream and snapshot URLs."""

from __future__ import annotations

import asyncio

import aiohttp
from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import LOGGER
from .entity import FaceTrackCameraEntity
from .hub import FaceTrackConfigEntry, FaceTrackHub

PARALLEL_UPDATES = 0
SNAPSHOT_TIMEOUT = 10


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FaceTrackConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a camera entity per engine camera, now and for cameras added later."""
    hub = entry.runtime_data.hub

    @callback
    def _add_cameras(cameras: list[str]) -> None:
        async_add_entities(FaceTrackCamera(hub, camera) for camera in cameras)

    entry.async_on_unload(hub.async_add_camera_listener(_add_cameras))


class FaceTrackCamera(FaceTrackCameraEntity, Camera):
    """The camera as the engine serves it (stream URL, snapshot URL)."""

    _attr_name = None  # the device's name

    def __init__(self, hub: FaceTrackHub, camera: str) -> None:
        """Initialise."""
        FaceTrackCameraEntity.__init__(self, hub, camera)
        Camera.__init__(self)
        self._attr_unique_id = f"{hub.prefix}_{camera}_camera"

    @property
    def supported_features(self) -> CameraEntityFeature:
        """Streaming when the engine gives a stream URL."""
        if self.camera_state.stream_url:
            return CameraEntityFeature.STREAM
        return CameraEntityFeature(0)

    @property
    def is_streaming(self) -> bool:
        """Whether the camera's source is running."""
        return self.camera_state.state == "online"

    async def stream_source(self) -> str | None:
        """The stream URL of the camera's state (RTSP or MJPEG)."""
        return self.camera_state.stream_url

    async def async_camera_image(self, width: int | None = None, height: int | None = None) -> bytes | None:
        """Fetch the snapshot at the state's snapshot URL."""
        url = self.camera_state.snapshot_url
        if not url:
            return None
        session = async_get_clientsession(self.hass)
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT):
                response = await session.get(url)
                response.raise_for_status()
                return await response.read()
        except (TimeoutError, aiohttp.ClientError) as err:
            LOGGER.debug("Cannot fetch the snapshot of %s: %s", self.camera, err)
            return None
