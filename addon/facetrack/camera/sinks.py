"""Sinks for one-off runs of a :class:`~facetrack.camera.runner.CameraRunner` (``facetrack track``,
``find-faces``, the benchmarks): callbacks, the annotated video and a progress bar. The service's
sinks live next to what they feed (:mod:`facetrack.comms.camera`, :mod:`facetrack.alerting`,
:mod:`facetrack.record.clips`, :mod:`facetrack.web.frames`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from facetrack.annotate import draw_faces
from facetrack.camera.runner import FrameSink, ProcessedFrame
from facetrack.camera.source import FrameSource
from facetrack.events import TrackEvent
from facetrack.record.video import VideoWriter
from facetrack.track.face_tracker import FrameResult, Track


class CallbackSink(FrameSink):
    """Calls plain functions: ``on_event(event)`` for each event, ``on_frame(index, result)`` after
    each frame, ``on_track_ended(track)`` for each ended track (after its ``track_ended`` event)."""

    def __init__(
        self,
        on_event: Callable[[TrackEvent], None] | None = None,
        on_frame: Callable[[int, FrameResult], None] | None = None,
        on_track_ended: Callable[[Track], None] | None = None,
    ) -> None:
        self.on_event = on_event
        self.on_frame = on_frame
        self.on_track_ended = on_track_ended

    def event(self, event: TrackEvent, f: ProcessedFrame | None) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def tracks_ended(self, tracks: Sequence[Track]) -> None:
        if self.on_track_ended is not None:
            for track in tracks:
                self.on_track_ended(track)

    def frame_done(self, f: ProcessedFrame) -> None:
        if self.on_frame is not None:
            self.on_frame(f.index, f.result)


class AnnotatedVideoSink(FrameSink):
    """Writes every processed frame with its faces drawn (boxes, track ids, names) to an MP4
    (:class:`~facetrack.record.video.VideoWriter`: H.264 with ffmpeg), at the source's rate."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._fps = 25.0
        self._writer: VideoWriter | None = None

    def opened(self, source: FrameSource, rate: float) -> None:
        self._fps = source.fps

    def frame_done(self, f: ProcessedFrame) -> None:
        if self._writer is None:
            h, w = f.frame.shape[:2]
            self._writer = VideoWriter(self.path, w, h, self._fps)
        self._writer.write(draw_faces(f.frame.copy(), f.result.faces))  # a copy: other sinks hold the frame

    def closed(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ProgressSink(FrameSink):
    """A ``tqdm`` progress bar on stderr over a file's frames (none for a live source)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def opened(self, source: FrameSource, rate: float) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=source.frame_count, unit="frame", disable=source.live, leave=False)

    def frame_done(self, f: ProcessedFrame) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def closed(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
