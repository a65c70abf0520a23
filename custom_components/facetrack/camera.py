"""A camera entity per engine camera: its RTSP stream and snapshot URLs.

HA's stream component plays a camera's ``stream_source`` as HLS/WebRTC: right for the H.264 the
app's RTSP server serves (``rtsp://<host>:8554/<camera>``), wrong for the engine's MJPEG URL (it
would be wrapped as MJPEG-in-MP4, which browsers do not play). So the entity advertises ``STREAM``
only for an ``rtsp(s)://`` stream URL; otherwise the frontend shows still images through HA's
camera proxy (``camera_image`` from the snapshot URL).
"""

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
STREAM_SCHEMES = ("rtsp://", "rtsps://")  # what HA's stream component plays; not the engine's MJPEG URL


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
    def _rtsp_url(self) -> str | None:
        """The state's stream URL if it is RTSP (the app's RTSP server is configured), else None."""
        url = self.camera_state.stream_url
        return url if url and url.lower().startswith(STREAM_SCHEMES) else None

    @property
    def supported_features(self) -> CameraEntityFeature:
        """``STREAM`` only with an RTSP stream URL (H.264 HA can play)."""
        return CameraEntityFeature.STREAM if self._rtsp_url else CameraEntityFeature(0)

    @property
    def is_streaming(self) -> bool:
        """Whether the camera's source is running."""
        return self.camera_state.state == "online"

    async def stream_source(self) -> str | None:
        """``rtsp://<host>:8554/<camera>`` from the camera's state; None without an RTSP server."""
        return self._rtsp_url

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
