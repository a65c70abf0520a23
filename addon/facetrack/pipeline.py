"""The per-camera pipeline, top to bottom: read -> detect/track/identify -> events -> annotate.

``run_pipeline`` is what ``facetrack track`` runs on a file, an RTSP URL or a webcam.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facetrack.annotate import draw_faces
from facetrack.camera import open_source
from facetrack.config import FaceTrackerConfig
from facetrack.events import TrackEvent
from facetrack.inference.base import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.record import VideoWriter
from facetrack.track import FaceTracker
from facetrack.track.face_tracker import FrameResult, Track

_LOG = logging.getLogger(__name__)


@dataclass(slots=True)
class Summary:
    """End of a run: frames processed, mean processing rate (frames/s), embeddings computed,
    confirmed tracks, frames that failed to process (skipped, logged)."""

    frames: int
    fps: float
    embeddings: int
    tracks: int
    failed_frames: int = 0

    def to_json(self) -> dict[str, Any]:
        """The CLI's closing JSON line."""
        return {
            "type": "summary",
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "embeddings": self.embeddings,
            "tracks": self.tracks,
            "failed_frames": self.failed_frames,
        }


def run_pipeline(
    source: str | int,
    backend: InferenceBackend,
    library: FaceLibrary,
    config: FaceTrackerConfig,
    on_event: Callable[[TrackEvent], None],
    annotated_path: str | Path | None = None,
    progress: bool = False,
    max_frames: int | None = None,
    on_frame: Callable[[int, FrameResult], None] | None = None,
    on_track_ended: Callable[[Track], None] | None = None,
) -> Summary:
    """Track faces in ``source`` until it ends (or ``max_frames``), calling ``on_event`` per event.

    Args:
        on_frame: called with ``(frame index, tracker result)`` after each processed frame.
        on_track_ended: called with each track as it ends (its best crops and embeddings), after
            its ``track_ended`` event.

    Raises:
        VideoSourceError: the source cannot be opened or yields no frame.
    """
    video = open_source(source)
    tracker = FaceTracker(backend, library, config, fps=video.fps)
    writer: VideoWriter | None = None
    bar = tqdm(total=video.frame_count, unit="frame", disable=not progress or video.live, leave=False)
    frames = failed = 0
    started = time.perf_counter()
    try:
        for index, ts, frame in video.frames():
            try:
                result = tracker.process(frame, index, ts)
            except Exception:  # one bad frame must never stop a camera
                failed += 1
                _LOG.exception("frame %d of %s failed; skipped", index, video.uri)
                continue
            for event in result.events:
                on_event(event)
            if on_track_ended is not None:
                for track in tracker.ended.values():
                    on_track_ended(track)
            if on_frame is not None:
                on_frame(index, result)
            if annotated_path is not None:
                if writer is None:
                    writer = VideoWriter(annotated_path, frame.shape[1], frame.shape[0], video.fps)
                writer.write(draw_faces(frame, result.faces))
            frames += 1
            bar.update(1)
            if max_frames is not None and frames >= max_frames:
                break
        for event in tracker.finish():
            on_event(event)
        if on_track_ended is not None:
            for track in tracker.ended.values():
                on_track_ended(track)
    finally:
        bar.close()
        video.close()
        if writer is not None:
            writer.close()
    if frames == 0 and failed == 0:
        from facetrack.errors import VideoSourceError

        raise VideoSourceError(f"no frame could be decoded from {video.uri}")
    elapsed = time.perf_counter() - started
    return Summary(
        frames, frames / elapsed if elapsed > 0 else 0.0, tracker.total_embeddings, tracker.total_tracks, failed
    )
