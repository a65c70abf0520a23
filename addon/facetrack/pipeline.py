"""A one-off run over a video: ``facetrack track`` (and ``find-faces``, the benchmarks).

:func:`run_pipeline` attaches the CLI's sinks (event callback, annotated video, progress bar) to a
:class:`~facetrack.camera.runner.CameraRunner`, the same frame loop ``facetrack serve`` runs per
camera, and runs it once over the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facetrack.camera.runner import CameraRunner, FrameSink
from facetrack.camera.sinks import AnnotatedVideoSink, CallbackSink, ProgressSink
from facetrack.config import FaceTrackerConfig
from facetrack.events import TrackEvent
from facetrack.inference.base import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.track.face_tracker import FrameResult, Track


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

    Every frame is processed, as fast as possible (no fps cap, no real-time pacing).

    Args:
        on_frame: called with ``(frame index, tracker result)`` after each processed frame.
        on_track_ended: called with each track as it ends (its best crops and embeddings), after
            its ``track_ended`` event.

    Raises:
        VideoSourceError: the source cannot be opened or yields no frame.
        InferenceUnavailableError: the inference backend cannot run.
    """
    sinks: list[FrameSink] = [CallbackSink(on_event, on_frame, on_track_ended)]
    if annotated_path is not None:
        sinks.append(AnnotatedVideoSink(annotated_path))
    if progress:
        sinks.append(ProgressSink())
    name = source if isinstance(source, str) else f"webcam:{source}"
    runner = CameraRunner(name, source, backend, library, config, sinks, max_frames=max_frames)
    s = runner.run()
    return Summary(s.frames, s.fps, s.embeddings, s.tracks, s.failed_frames)
