"""From a track event to an alert with its evidence, as a sink of a camera's
:class:`~facetrack.camera.runner.CameraRunner`.

:class:`~facetrack.alerts.AlertPolicy` decides (mode, alert once, cooldown); this sink skips the
unknown faces the user chose to ignore (an ignored inbox group: the postman), cuts the face
snapshot, asks the clip recorder for the clip that will hold the alert (its URLs are known before
the clip is stored), publishes ``<prefix>/<camera>/alert`` and hands the alert on (the web page's
history, notifications).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from facetrack.alerts import Alert, AlertPolicy
from facetrack.camera.runner import FrameSink, ProcessedFrame
from facetrack.comms.payloads import AlertPayload, alert_payload
from facetrack.config.service import AlertConfig
from facetrack.events import TrackEvent
from facetrack.images import encode_jpeg
from facetrack.inference.base import FloatArray, Frame
from facetrack.record.clips import ClipRecorder
from facetrack.record.storage import clip_key, new_clip_id

_LOG = logging.getLogger(__name__)
#: Context around the face in an alert's snapshot, as a fraction of the face box on each side.
SNAPSHOT_MARGIN = 0.6


class AlertTopic(Protocol):
    """The publisher's method for alerts (:class:`facetrack.comms.publisher.Publisher`)."""

    def alert(self, camera: str, payload: Any) -> None: ...


class AlertSink(FrameSink):
    """Raises a camera's alerts.

    Args:
        camera: the camera's name.
        config: its alert settings.
        topics: where alerts are published.
        on_alert: called with ``(alert, payload, snapshot_jpeg)`` after the alert is published.
        recorder: the camera's clip recorder (``None``: clips are off).
        clip_url: storage key -> URL of a stored clip file (``None``: clips are off).
        ignored: a track's mean embedding ``(D,) float32`` -> the ignored inbox group it matches,
            or ``None`` (``None``: no inbox).
    """

    def __init__(
        self,
        camera: str,
        config: AlertConfig,
        topics: AlertTopic,
        on_alert: Callable[[Alert, AlertPayload, bytes | None], None],
        recorder: ClipRecorder | None = None,
        clip_url: Callable[[str], str | None] | None = None,
        ignored: Callable[[FloatArray], str | None] | None = None,
    ) -> None:
        self.camera = camera
        self.policy = AlertPolicy(camera, config)
        self.topics = topics
        self.on_alert = on_alert
        self.recorder = recorder
        self.clip_url = clip_url
        self.ignored = ignored

    def event(self, event: TrackEvent, f: ProcessedFrame | None) -> None:
        if f is not None and self._ignored(event, f):
            return
        alert = self.policy.consider(event, time.monotonic())
        if alert is None:
            return
        captured = f.captured if f is not None else time.time()
        snapshot = snapshot_jpeg(f.frame, event.bbox) if f is not None else None
        urls: dict[str, str | None] = {"snapshot_url": None, "clip_url": None}
        clip_id = None
        if self.recorder is not None and f is not None and self.clip_url is not None:
            # The clip is complete a few seconds from now; its URLs are known already.
            clip_id = self.recorder.start_clip(new_clip_id(captured, alert.alert_id))
            urls = {
                "snapshot_url": self.clip_url(clip_key(self.camera, clip_id, "snapshot")),
                "clip_url": self.clip_url(clip_key(self.camera, clip_id, "original")),
            }
        payload = alert_payload(alert, captured, **urls)
        self.topics.alert(self.camera, payload)
        if clip_id is not None and self.recorder is not None:
            self.recorder.note_alert(clip_id, payload, snapshot)
        self.on_alert(alert, payload, snapshot)

    def _ignored(self, event: TrackEvent, f: ProcessedFrame) -> bool:
        """An unknown track whose face is an ignored inbox group (the postman): no alert."""
        if self.ignored is None or event.type != "identity" or event.person_id is not None:
            return False
        track = f.tracks.get(event.track_id)
        mean = track.mean_embedding if track is not None else None
        group = self.ignored(mean) if mean is not None else None
        if group is not None:
            _LOG.info("camera %s: track %d is ignored group %s: no alert", self.camera, event.track_id, group)
        return group is not None


def snapshot_jpeg(frame: Frame, bbox: list[float], margin: float = SNAPSHOT_MARGIN) -> bytes | None:
    """JPEG of the face in ``bbox`` (``[x1, y1, x2, y2]`` pixels) with ``margin`` x its size of
    context on each side, cut from ``frame`` (``(H, W, 3) uint8`` BGR); ``None`` if the box lies
    outside the frame or encoding fails."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    crop = frame[max(0, int(y1 - my)) : min(h, int(y2 + my)), max(0, int(x1 - mx)) : min(w, int(x2 + mx))]
    if crop.size == 0:
        return None
    try:
        return encode_jpeg(crop)
    except ValueError:
        return None
