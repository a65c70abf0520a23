"""The camera runner: the one frame loop of the engine.

``facetrack track``, ``find-faces``, ``serve`` and the benchmarks all run a :class:`CameraRunner`:
it opens a source, paces it (an optional fps cap; files played in real time for ``serve``), runs
the :class:`~facetrack.track.FaceTracker` on each frame and hands what happened to the
:class:`FrameSink` objects attached to it (the event log, the annotated writer, the MQTT publisher,
the alert handler, the clip recorder, the inbox, the live-stream hub). It owns the error paths: a
frame that fails is logged and skipped, never the end of a camera; an unavailable inference
backend ends the pass; :meth:`CameraRunner.run_forever` reopens a failed or dropped source with
exponential backoff, and replays a file that ended at once, until ``stop`` is set.

Per processed frame the sinks are called in their order of attachment, in this order: ``frame``,
``event`` for each event of the frame, ``tracks_ended``, then ``frame_done``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from facetrack.camera.source import FrameSource, open_source
from facetrack.camera.stream import STREAM_TIMEOUT_SECONDS
from facetrack.config import FaceTrackerConfig
from facetrack.errors import FaceTrackError, VideoSourceError
from facetrack.events import TrackEvent
from facetrack.inference.base import Frame, InferenceBackend, InferenceUnavailableError
from facetrack.library import FaceLibrary
from facetrack.track import FaceTracker
from facetrack.track.face_tracker import BestCrop, FrameResult, Track

_LOG = logging.getLogger(__name__)
#: Recently ended tracks whose best crops are kept for enrolment from a track (per camera).
RECENT_TRACKS = 32
#: Frames over which the processing rate (:attr:`CameraStatus.fps`) is measured.
FPS_WINDOW = 50
#: While nothing moves and nothing is tracked (``FrameResult.still``), only every this-many-th
#: frame is converted and processed; the others are decoded (the codec needs them) and handed to
#: the sinks as the previous picture again. The motion check then samples a still scene at half
#: the camera's rate: a person walking in is seen at most one frame later. On an idle 720p
#: camera at 10 frames/s this saves the BGR conversion (1.6 ms) and the motion check (1 ms) of
#: every other frame.
IDLE_STRIDE = 2
#: Shortest pass over a replayed file, seconds: a shorter file waits before it replays.
MIN_REPLAY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ProcessedFrame:
    """One frame the tracker processed, as the sinks see it.

    Attributes:
        index: 0-based processed-frame index (the tracker's frame index; frames skipped by the fps
            cap are not counted).
        ts: seconds since the start of the source (a file's position, or since opening a live one).
        captured: wall-clock time the frame was taken for processing, epoch seconds.
        frame: ``(H, W, 3) uint8`` BGR, as decoded (sinks must not modify it).
        result: the tracker's output (faces, events).
        tracks: the tracks alive after this frame, by track id (read only).
        rate: the processing rate the tracker was built for, frames/s.
    """

    index: int
    ts: float
    captured: float
    frame: Frame
    result: FrameResult
    tracks: Mapping[int, Track]
    rate: float


class FrameSink:
    """Something attached to a :class:`CameraRunner`; every hook is optional (a no-op here).

    Hooks run on the camera's thread: they must be quick (queue slow work) and may raise only
    for a bug (the runner logs it and skips the rest of that frame).
    """

    def opened(self, source: FrameSource, rate: float) -> None:
        """A source was opened; ``rate`` is the processing rate (frames/s) after the fps cap."""

    def frame(self, f: ProcessedFrame) -> None:
        """A frame was processed (called before its events)."""

    def event(self, event: TrackEvent, f: ProcessedFrame | None) -> None:
        """A track event; ``f`` is the frame it happened on, ``None`` for the tracks ended when
        the source ends."""

    def tracks_ended(self, tracks: Sequence[Track]) -> None:
        """Tracks that ended on this frame (or when the source ended), after their events."""

    def frame_done(self, f: ProcessedFrame) -> None:
        """All hooks of this frame have run."""

    def state_changed(self, status: CameraStatus) -> None:
        """The camera's state or error changed (``online``, ``offline``...)."""

    def closed(self) -> None:
        """The runner stops for good (finish pending work, e.g. clips being written)."""


@dataclass(slots=True)
class CameraStatus:
    """What a camera is doing, for its ``state`` topic and the web page.

    Attributes:
        name: the camera's name.
        state: ``starting``, ``online`` or ``offline``.
        error: why it is offline, ``None`` otherwise.
        fps: measured processing rate over the last :data:`FPS_WINDOW` frames, frames/s.
        faces: faces in the last processed frame.
        frames: frames processed since start; failed_frames: frames that failed (skipped).
    """

    name: str
    state: str = "starting"
    error: str | None = None
    fps: float = 0.0
    faces: int = 0
    frames: int = 0
    failed_frames: int = 0


@dataclass(slots=True)
class RunSummary:
    """End of one pass over a source: frames processed, mean processing rate (frames/s, from
    opening to the end), embeddings computed, confirmed tracks, frames that failed (skipped)."""

    frames: int
    fps: float
    embeddings: int
    tracks: int
    failed_frames: int = 0


class CameraRunner:
    """Runs one camera (or one video) through the tracker and its sinks.

    Args:
        name: the camera's name (for logs and its status).
        source: file path, RTSP/HTTP URL or webcam index.
        backend / library / config: what the tracker is built from (one tracker per pass).
        sinks: attached sinks, called in this order.
        fps_cap: at most this many frames per second are processed (``None``: every frame).
        realtime: play files at their own pace, as a camera would deliver them (``serve``), decoded
            on one thread (less CPU per frame); ``False`` processes a file as fast as possible
            (``track``, ``find-faces``).
        stop: set to stop the runner (between frames, and while waiting to reopen).
        source_timeout: seconds a network source may take to deliver its first frame, then each
            next one, before it is given up and reopened.
        max_frames: stop a pass after this many processed frames.
        reconnect_max_seconds: cap of the reopening backoff (1, 2, 4, ... s) of
            :meth:`run_forever`.
    """

    def __init__(
        self,
        name: str,
        source: str | int,
        backend: InferenceBackend,
        library: FaceLibrary,
        config: FaceTrackerConfig,
        sinks: Sequence[FrameSink] = (),
        *,
        fps_cap: float | None = None,
        realtime: bool = False,
        stop: threading.Event | None = None,
        source_timeout: float = STREAM_TIMEOUT_SECONDS,
        max_frames: int | None = None,
        reconnect_max_seconds: float = 60.0,
    ) -> None:
        self.source = source
        self.backend = backend
        self.library = library
        self.config = config
        self.sinks = list(sinks)
        self.fps_cap = fps_cap
        self.realtime = realtime
        self.stop = stop or threading.Event()
        self.source_timeout = source_timeout
        self.max_frames = max_frames
        self.reconnect_max = reconnect_max_seconds
        self.status = CameraStatus(name)
        self._lock = threading.Lock()  # the tracker being swapped vs best_crops on another thread
        self._tracker: FaceTracker | None = None
        self._recent: OrderedDict[int, list[BestCrop]] = OrderedDict()
        self._serving = False

    @property
    def name(self) -> str:
        """The camera's name."""
        return self.status.name

    def best_crops(self, track_id: int) -> list[BestCrop]:
        """Best crops (with their embeddings) of a live or recently ended track, best first; empty
        when the track is unknown. Safe from any thread."""
        with self._lock:
            t = self._tracker
            live = t.tracks.get(track_id) if t is not None else None
            crops = list(live.best) if live is not None else list(self._recent.get(track_id, []))
        return sorted(crops, key=lambda c: -c.rank)

    # ---- one pass -------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Open the source and process it once, until it ends, ``stop`` is set or ``max_frames``;
        then close the sinks (``track``, ``find-faces`` and the benchmarks run this).

        Raises:
            VideoSourceError: the source cannot be opened or yields no frame.
            InferenceUnavailableError: the backend cannot run at all.
        """
        try:
            video = self._open()
            try:
                summary = self.run_source(video)
            finally:
                video.close()
        finally:
            self._close_sinks()
        if summary.frames == 0 and summary.failed_frames == 0:
            raise VideoSourceError(f"no frame could be decoded from {video.uri}")
        return summary

    def _open(self) -> FrameSource:
        """Open the source; a file replayed in real time is decoded on one thread."""
        return open_source(self.source, self.source_timeout, self.stop, 1 if self.realtime else 0)

    def run_source(self, video: FrameSource) -> RunSummary:
        """Process an opened source (see :meth:`run`); the caller closes it.

        Raises:
            InferenceUnavailableError: the backend cannot run at all (every frame would fail).
        """
        cap = self.fps_cap
        rate = min(video.fps, cap) if cap else video.fps
        tracker = FaceTracker(self.backend, self.library, self.config, fps=rate)
        with self._lock:
            self._tracker = tracker
        for sink in self.sinks:
            sink.opened(video, rate)
        self._set_state("online", None)
        status = self.status
        started = time.monotonic()
        window: deque[float] = deque(maxlen=FPS_WINDOW)
        processed = frames = failed = 0
        next_ts = 0.0

        def under_cap(ts: float) -> bool:
            """Whether a frame at ``ts`` is processed; over the fps cap it is decoded, not kept."""
            nonlocal next_ts
            if ts + 1e-6 < next_ts:
                return False
            next_ts = max(next_ts + 1.0 / cap, ts) if cap else ts
            return True

        shown: Frame | None = None  # the last picture processed
        still = False  # ... and nothing changed on it (FrameResult.still)
        repeats = 0  # frames since, handed on as that picture again

        def needs_picture(ts: float) -> bool:
            """Whether a kept frame is converted and processed (see :data:`IDLE_STRIDE`)."""
            return not still or repeats >= IDLE_STRIDE - 1

        for _, ts, decoded in video.frames(under_cap if cap else None, needs_picture):
            if self.stop.is_set():
                break
            if self.realtime and not video.live:
                ahead = ts - (time.monotonic() - started)
                if ahead > 0 and self.stop.wait(ahead):
                    break
            captured = time.time()
            index, processed = processed, processed + 1
            ended: list[Track] = []
            if decoded is None:
                if shown is None:  # cannot happen: the first frame is never still
                    continue
                image, result, repeats = shown, FrameResult([], [], 0, detected=False, still=True), repeats + 1
            else:
                image = decoded
                try:
                    result = tracker.process(image, index, ts)
                except InferenceUnavailableError:
                    raise
                except Exception:  # one bad frame never stops a camera
                    failed += 1
                    status.failed_frames += 1
                    still = False
                    _LOG.exception("camera %s: frame %d failed; skipped", self.name, index)
                    continue
                shown, still, repeats, ended = image, result.still, 0, list(tracker.ended.values())
            frames += 1
            status.frames += 1
            status.faces = len(result.faces)
            window.append(time.monotonic())
            if len(window) > 1:
                status.fps = (len(window) - 1) / max(window[-1] - window[0], 1e-6)
            self._dispatch(ProcessedFrame(index, ts, captured, image, result, tracker.tracks, rate), ended)
            if self.max_frames is not None and frames >= self.max_frames:
                break
        self._end(tracker)
        elapsed = time.monotonic() - started
        return RunSummary(
            frames, frames / elapsed if elapsed > 0 else 0.0, tracker.total_embeddings, tracker.total_tracks, failed
        )

    def _dispatch(self, f: ProcessedFrame, ended: list[Track]) -> None:
        try:
            for sink in self.sinks:
                sink.frame(f)
            for event in f.result.events:
                for sink in self.sinks:
                    sink.event(event, f)
            if ended:
                self._remember(ended)
                for sink in self.sinks:
                    sink.tracks_ended(ended)
            for sink in self.sinks:
                sink.frame_done(f)
        except Exception:  # a sink's bug: this frame's remaining hooks are lost, not the camera
            _LOG.exception("camera %s: frame %d: a sink failed", self.name, f.index)

    def _end(self, tracker: FaceTracker) -> None:
        """End every track (their events and ended tracks go to the sinks), then forget the tracker."""
        events = tracker.finish()
        ended = list(tracker.ended.values())
        try:
            for event in events:
                for sink in self.sinks:
                    sink.event(event, None)
            self._remember(ended)
            for sink in self.sinks:
                sink.tracks_ended(ended)
        except Exception:
            _LOG.exception("camera %s: ending the tracks: a sink failed", self.name)
        with self._lock:
            self._tracker = None
        self.status.faces = 0

    def _remember(self, ended: Sequence[Track]) -> None:
        with self._lock:
            for track in ended:
                if track.best:
                    self._recent[track.track_id] = list(track.best)
            while len(self._recent) > RECENT_TRACKS:
                self._recent.popitem(last=False)

    # ---- a camera, for good ---------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run the camera until ``stop`` is set: a source that cannot be opened, drops or fails is
        reported ``offline`` and reopened after 1, 2, 4, ... s (capped); an unavailable backend is
        retried at the cap. A file that played to its end replays at once and stays ``online``
        (a pass takes at least :data:`MIN_REPLAY_SECONDS`). Then the sinks are closed and the
        camera reported ``offline``. Never raises."""
        self._serving = True
        delay = 1.0
        while not self.stop.is_set():
            try:
                # A network source opens and reads in its own ffmpeg process, with a deadline and
                # watching ``stop``: a hanging camera delays neither the others nor shutdown.
                video = self._open()
            except FaceTrackError as err:
                if self.stop.is_set():
                    break
                self._set_state("offline", str(err))
                self.stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            delay = 1.0
            started = time.monotonic()
            replay = False
            try:
                summary = self.run_source(video)
                # A file played to its end, not a live source that dropped nor a file that failed.
                replay = not video.live and video.error is None and summary.frames > 0
            except InferenceUnavailableError as err:  # no device/runtime/model: say so, retry slowly
                _LOG.error("camera %s: inference unavailable: %s", self.name, err)
                self._set_state("offline", str(err))
                delay = self.reconnect_max
            except Exception as err:  # never let one camera take the service down
                _LOG.exception("camera %s failed", self.name)
                self._set_state("offline", f"{type(err).__name__}: {err}")
            finally:
                video.close()
            if replay:
                # Still online: no flapping at each replay (a one-frame file still replays slowly).
                self.stop.wait(max(0.0, MIN_REPLAY_SECONDS - (time.monotonic() - started)))
            elif not self.stop.is_set():
                # The stream dropped or the file failed: report it and retry.
                self._set_state("offline", self.status.error or video.error or "source ended")
                self.stop.wait(delay)
        self._close_sinks()  # e.g. finish the clips in progress: complete files, never corrupt ones
        self._set_state("offline", None)

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.closed()
            except Exception:
                _LOG.exception("camera %s: closing a sink failed", self.name)

    def _set_state(self, state: str, error: str | None) -> None:
        status = self.status
        if (state, error) == (status.state, status.error):
            return
        status.state, status.error = state, error
        if self._serving:  # a camera of ``serve``; a one-off run (``track``) says nothing
            _LOG.info("camera %s: %s%s", self.name, state, f" ({error})" if error else "")
        for sink in self.sinks:
            try:
                sink.state_changed(status)
            except Exception:
                _LOG.exception("camera %s: a sink failed on a state change", self.name)
