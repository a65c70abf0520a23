"""A camera's MQTT reports, as a sink of its :class:`~facetrack.camera.runner.CameraRunner`:
every track event (``<prefix>/<camera>/track``), known persons in view (``<prefix>/seen/<id>``,
at once and every :data:`SEEN_INTERVAL` s while they stay), and the retained camera state (on
every change and every :data:`STATE_INTERVAL` s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from facetrack.camera.runner import CameraStatus, FrameSink, ProcessedFrame
from facetrack.camera.source import FrameSource
from facetrack.comms.payloads import SeenPayload, StatePayload, seen_payload, state_payload, track_payload
from facetrack.events import TrackEvent
from facetrack.track.identity import IdentityState

#: Seconds between periodic retained ``state`` updates of a camera.
STATE_INTERVAL = 10.0
#: A known person in view is reported on ``<prefix>/seen/<person_id>`` at least this often (s).
SEEN_INTERVAL = 10.0


class CameraTopics(Protocol):
    """The publisher's methods a camera uses (:class:`facetrack.comms.publisher.Publisher`)."""

    def state(self, camera: str, payload: Any) -> None: ...

    def track(self, camera: str, payload: Any) -> None: ...

    def seen(self, person_id: str, payload: Any) -> None: ...


class CameraReporter(FrameSink):
    """Publishes one camera's track events, sightings and state.

    Args:
        status: the camera's status (its runner's :attr:`~CameraRunner.status`).
        topics: where to publish.
        urls: ``urls(camera)`` -> the camera's ``snapshot_url``, ``mjpeg_url`` and ``stream_url``
            for its state (empty without the HTTP server).
        on_sighting: called with each ``seen`` payload after it is published (the service keeps
            each person's last sighting).
    """

    def __init__(
        self,
        status: CameraStatus,
        topics: CameraTopics,
        urls: Callable[[str], Mapping[str, str | None]] | None = None,
        on_sighting: Callable[[SeenPayload], None] | None = None,
    ) -> None:
        self.status = status
        self.topics = topics
        self.urls = urls
        self.on_sighting = on_sighting
        self._seen_at: dict[int, float] = {}  # track id -> monotonic time of its last "seen"
        self._state_at = 0.0

    @property
    def camera(self) -> str:
        return self.status.name

    def state_payload(self) -> StatePayload:
        """The camera's retained ``state`` payload now."""
        s = self.status
        urls = self.urls(s.name) if self.urls else {}
        return state_payload(
            s.name, s.state, s.fps, s.faces, s.error,
            stream_url=urls.get("stream_url"), snapshot_url=urls.get("snapshot_url"), mjpeg_url=urls.get("mjpeg_url"),
        )  # fmt: skip

    def publish_state(self) -> None:
        """Publish the retained state now."""
        self.topics.state(self.camera, self.state_payload())

    # ---- sink hooks -------------------------------------------------------------------------

    def opened(self, source: FrameSource, rate: float) -> None:
        self._state_at = 0.0  # the first frame of each pass reports the state

    def state_changed(self, status: CameraStatus) -> None:
        self.publish_state()

    def event(self, event: TrackEvent, f: ProcessedFrame | None) -> None:
        captured = f.captured if f is not None else time.time()
        self.topics.track(self.camera, track_payload(self.camera, event, captured))
        if event.type == "identity" and event.person_id is not None:
            self._seen(event.track_id, event.person_id, event.person, event.similarity, captured)
        elif event.type == "track_ended":
            self._seen_at.pop(event.track_id, None)

    def frame_done(self, f: ProcessedFrame) -> None:
        now = time.monotonic()
        for face in f.result.faces:
            if face.state is IdentityState.KNOWN and now - self._seen_at.get(face.track_id, 0.0) >= SEEN_INTERVAL:
                track = f.tracks.get(face.track_id)
                v = track.voter if track is not None else None
                if v is not None and v.person_id is not None:
                    self._seen(face.track_id, v.person_id, v.name, v.similarity, f.captured)
        if now - self._state_at >= STATE_INTERVAL:
            self._state_at = now
            self.publish_state()

    def _seen(
        self, track_id: int, person_id: str, person: str | None, similarity: float | None, captured: float
    ) -> None:
        self._seen_at[track_id] = time.monotonic()
        payload = seen_payload(self.camera, track_id, person_id, person, similarity, captured)
        self.topics.seen(person_id, payload)
        if self.on_sighting is not None:
            self.on_sighting(payload)
