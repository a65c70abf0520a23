"""Diagnostics of a FaceTrack config entry (URLs and person names redacted)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .hub import FaceTrackConfigEntry

# Stream / snapshot URLs can carry camera credentials (rtsp://user:pass@...) or signed tokens;
# person names are personal data.
TO_REDACT = {
    "stream_url",
    "snapshot_url",
    "mjpeg_url",
    "clip_url",
    "name",
    "person",
    "error",
    "crop_url",
    "nearest_person",
}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: FaceTrackConfigEntry) -> dict[str, Any]:
    """Return the engine's state as the integration sees it."""
    hub = entry.runtime_data.hub
    return {
        "entry": {
            "title": entry.title,
            "data": dict(entry.data),
            "options": dict(entry.options),
        },
        "status": hub.status,
        "info": hub.info.raw if hub.info is not None else None,
        "cameras": hub.cameras,
        "camera_states": async_redact_data(
            {camera: state.raw for camera, state in hub.camera_states.items()}, TO_REDACT
        ),
        "persons": async_redact_data([person.raw for person in hub.persons.values()], TO_REDACT),
        "inbox": {
            **hub.inbox_counts,
            "groups": async_redact_data([group.raw for group in hub.inbox.values()], TO_REDACT),
        },
    }
