"""From a track event to an alert with its evidence, as a sink of a camera's
:class:`~facetrack.camera.runner.CameraRunner`.

:class:`~facetrack.alerts.AlertPolicy` decides (mode, alert once, cooldown); this sink skips the
unknown faces the user chose to ignore (an ignored inbox group: the postman), cuts the alert's own
face snapshot (its track's box on the alert's frame, drawn, with context) and keeps it
(:class:`~facetrack.record.snapshots.AlertSnapshots`) before anything names it, asks the clip
recorder for the clip that will hold the alert (a new one, or one recording that it joins) and
the alert's time in it, publishes ``<prefix>/<camera>/alert`` and hands the alert on (the web
page's history, notifications).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import cv2

from facetrack.alerts import Alert, AlertPolicy
from facetrack.camera.runner import FrameSink, ProcessedFrame
from facetrack.comms.payloads import AlertPayload, alert_payload
from facetrack.config.service import AlertConfig
from facetrack.events import TrackEvent
from facetrack.images import encode_jpeg
from facetrack.inference.base import FloatArray, Frame
from facetrack.record.clips import ClipRecorder
from facetrack.record.snapshots import AlertSnapshots
from facetrack.record.storage import clip_key, new_clip_id

_LOG = logging.getLogger(__name__)
#: Context around the face in an alert's snapshot, as a fraction of the face box on each side.
SNAPSHOT_MARGIN = 0.6
#: Colour (BGR) of the face box drawn on a snapshot: known faces green, unknown red (as the
#: annotated video).
BOX_KNOWN = (60, 200, 60)
BOX_UNKNOWN = (50, 50, 230)


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
        snapshots: where each alert's snapshot is kept (``None``: not kept).
        snapshot_url: alert id -> the signed URL of its kept snapshot, or ``None`` when not served
            (``None``: the HTTP server is off; an alert that starts a clip then names the clip's
            snapshot, its own face, and one that joins a clip names none).
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
        *,
        snapshots: AlertSnapshots | None = None,
        snapshot_url: Callable[[str], str | None] | None = None,
    ) -> None:
        self.camera = camera
        self.policy = AlertPolicy(camera, config)
        self.topics = topics
        self.on_alert = on_alert
        self.recorder = recorder
        self.clip_url = clip_url
        self.ignored = ignored
        self.snapshots = snapshots
        self.snapshot_url = snapshot_url

    def event(self, event: TrackEvent, f: ProcessedFrame | None) -> None:
        if f is not None and self._ignored(event, f):
            return
        alert = self.policy.consider(event, time.monotonic())
        if alert is None:
            return
        captured = f.captured if f is not None else time.time()
        snapshot = None
        if f is not None:
            snapshot = snapshot_jpeg(f.frame, event.bbox, box=BOX_KNOWN if event.person_id else BOX_UNKNOWN)
        snapshot_url = None
        kept, url_of = self.snapshots, self.snapshot_url
        # Kept before the alert goes out: its URL answers as soon as anyone reads it.
        if snapshot is not None and kept is not None and url_of is not None and kept.put(alert.alert_id, snapshot):
            snapshot_url = url_of(alert.alert_id)
        clip_url = offset = None
        clip_id = None
        if self.recorder is not None and f is not None and self.clip_url is not None:
            # The clip is complete a few seconds from now; its URLs are known already.
            new_id = new_clip_id(captured, alert.alert_id)
            clip_id = self.recorder.start_clip(new_id)
            offset = self.recorder.offset_seconds(clip_id)
            clip_url = with_offset(self.clip_url(clip_key(self.camera, clip_id, "original")), offset)
            if snapshot_url is None and clip_id == new_id and snapshot is not None:
                # Not served by the engine (no HTTP server: S3 clips): the clip's snapshot is this
                # alert's own face only in the clip it starts.
                snapshot_url = self.clip_url(clip_key(self.camera, clip_id, "snapshot"))
        payload = alert_payload(alert, captured, snapshot_url, clip_url, offset)
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


def snapshot_jpeg(
    frame: Frame,
    bbox: list[float],
    margin: float = SNAPSHOT_MARGIN,
    box: tuple[int, int, int] | None = None,
) -> bytes | None:
    """JPEG of the face in ``bbox`` (``[x1, y1, x2, y2]`` pixels) with ``margin`` x its size of
    context on each side, cut from ``frame`` (``(H, W, 3) uint8`` BGR, left as it is), with the
    face's box drawn in colour ``box`` (BGR; ``None``: no box); ``None`` if the box lies outside
    the frame or encoding fails."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    crop = frame[top : min(h, int(y2 + my)), left : min(w, int(x2 + mx))]
    if crop.size == 0:
        return None
    if box is not None:
        crop = crop.copy()
        thick = max(1, round(max(crop.shape[:2]) / 160))
        corner1 = (round(x1) - left, round(y1) - top)
        corner2 = (round(x2) - left, round(y2) - top)
        cv2.rectangle(crop, corner1, corner2, box, thick)
    try:
        return encode_jpeg(crop)
    except ValueError:
        return None


def with_offset(url: str | None, offset: float | None) -> str | None:
    """``url`` with the Media Fragments time ``#t=<offset>`` (seconds) appended (players start
    there); ``url`` as it is without an offset."""
    if url is None or offset is None:
        return url
    return f"{url}#t={offset:g}"
