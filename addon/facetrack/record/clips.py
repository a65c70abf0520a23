"""Alert clips: a per-camera ring buffer with pre-roll, recorded around an alert and encoded off
the camera loop as the frames arrive.

On an alert the camera's last ``pre_roll`` frames and the next frames up to ``clip_duration``
frames in all (DeGirum's ``clip_duration``, in frames) become one clip: the original video
(H.264 MP4), the annotated video, the per-frame annotations (JSON) and the face snapshot (JPEG).

The camera loop only hands over references to frames it has already decoded (no copy, no
encode). Each clip has its own encoder thread that draws and encodes frames as they arrive, so
memory stays bounded: the pre-roll ring (``pre_roll`` frames; 25 frames of 720p are about 70 MB,
of 1080p about 155 MB) plus at most :data:`MAX_QUEUED_FRAMES` frames waiting per clip. If an
encoder falls behind (a slow disk), frames are dropped from that clip (counted) rather than stall
tracking. An alert while a clip is recording that will still cover at least half of the post-roll
joins that clip (at most :data:`MAX_ACTIVE_CLIPS` clips record at once). Files are written into a
temporary folder and handed to the storage only when complete, so no half-written clip is ever
visible; a clip interrupted by shutdown is finished with the frames it has.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facetrack.annotate import draw_faces
from facetrack.inference.base import Frame
from facetrack.record.storage import CLIP_FILES, ClipStorage, clip_key
from facetrack.record.video import VideoWriter
from facetrack.track.face_tracker import TrackedFace

_LOG = logging.getLogger(__name__)
#: Frames waiting for one clip's encoder; beyond, frames are dropped from that clip.
MAX_QUEUED_FRAMES = 50
#: Clips recording at the same time per camera; further alerts join the newest clip.
MAX_ACTIVE_CLIPS = 2


@dataclass(slots=True)
class _Frame:
    index: int
    ts: float
    frame: Frame
    faces: list[TrackedFace]


@dataclass(frozen=True, slots=True)
class StoredClip:
    """A clip handed to the storage: its id, keys by kind, frame count and duration (s)."""

    camera: str
    clip_id: str
    alert_id: str
    keys: dict[str, str]
    frames: int
    duration_seconds: float
    dropped_frames: int = 0


@dataclass(slots=True)
class _Clip:
    clip_id: str
    remaining: int
    fps: float
    frames: queue.Queue[_Frame | None] = field(default_factory=lambda: queue.Queue(MAX_QUEUED_FRAMES))
    alerts: list[dict[str, Any]] = field(default_factory=list)
    snapshot: bytes | None = None
    dropped: int = 0
    thread: threading.Thread | None = None


class ClipRecorder:
    """Records alert clips for one camera.

    Args:
        camera: camera name (first segment of the storage keys).
        storage: where finished clips go.
        clip_duration: frames per clip, pre-roll included.
        pre_roll: frames before the alert (at most ``clip_duration - 1``).
        on_stored: called (encoder thread) with each :class:`StoredClip`.
    """

    def __init__(
        self,
        camera: str,
        storage: ClipStorage,
        clip_duration: int = 100,
        pre_roll: int = 25,
        on_stored: Callable[[StoredClip], None] | None = None,
    ) -> None:
        self.camera = camera
        self.storage = storage
        self.clip_duration = max(2, clip_duration)
        self.pre_roll = min(max(0, pre_roll), self.clip_duration - 1)
        self.on_stored = on_stored
        self._ring: deque[_Frame] = deque(maxlen=max(1, self.pre_roll))
        self._active: list[_Clip] = []
        self._lock = threading.Lock()
        self._fps = 25.0  # the camera's processing rate (frames/s): the clip's frame rate
        self.stored = 0
        self.failed = 0

    # ---- camera loop side (cheap) ----------------------------------------------------------------

    def add_frame(self, index: int, ts: float, frame: Frame, faces: list[TrackedFace], fps: float) -> None:
        """Hand a processed frame over (a reference): to the pre-roll ring and to every clip
        recording. Call it before :meth:`start_clip` for that frame's alerts, so the alert's own
        frame is the last pre-roll frame."""
        item = _Frame(index, ts, frame, list(faces))
        self._fps = fps
        if self.pre_roll:
            self._ring.append(item)
        for clip in list(self._active):
            self._feed(clip, item)
            clip.remaining -= 1
            if clip.remaining <= 0:
                self._end(clip)

    def start_clip(self, clip_id: str) -> str:
        """The clip that will hold an alert raised on the latest frame: a recording clip that still
        covers at least half of the post-roll, or a new one (pre-roll now, the rest as frames
        arrive). Returns its id (``clip_id`` if new)."""
        post = self.clip_duration - self.pre_roll
        for clip in reversed(self._active):
            if clip.remaining >= post // 2 or len(self._active) >= MAX_ACTIVE_CLIPS:
                return clip.clip_id
        frames = list(self._ring)
        clip = _Clip(clip_id, self.clip_duration - len(frames), self._fps)
        clip.thread = threading.Thread(target=self._encode, args=(clip,), name=f"clip-{clip_id}", daemon=True)
        clip.thread.start()
        self._active.append(clip)
        for item in frames:
            self._feed(clip, item)
        return clip_id

    def note_alert(self, clip_id: str, alert: dict[str, Any], snapshot: bytes | None) -> None:
        """Record an alert's payload (and, for the clip's first alert, its face snapshot)."""
        for clip in self._active:
            if clip.clip_id == clip_id:
                clip.alerts.append(alert)
                if clip.snapshot is None:
                    clip.snapshot = snapshot

    def _feed(self, clip: _Clip, item: _Frame) -> None:
        try:
            clip.frames.put_nowait(item)
        except queue.Full:
            clip.dropped += 1
            if clip.dropped == 1:
                _LOG.warning(
                    "camera %s: clip %s encoder behind (slow disk?): dropping frames", self.camera, clip.clip_id
                )

    def _end(self, clip: _Clip) -> None:
        self._active.remove(clip)
        clip.frames.put(None)  # the encoder finishes the files and stores them

    def close(self, timeout: float = 60.0) -> None:
        """Finish the clips recording with the frames they have, wait for their encoders."""
        clips = list(self._active)
        for clip in clips:
            self._end(clip)
        self._ring.clear()
        for clip in clips:
            if clip.thread is not None:
                clip.thread.join(timeout)

    # ---- encoder threads -----------------------------------------------------------------------------

    def _encode(self, clip: _Clip) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"facetrack-clip-{self.camera}-"))
        try:
            stored = self._encode_files(clip, work)
        except Exception:
            self.failed += 1
            _LOG.exception("camera %s: clip %s failed; nothing stored", self.camera, clip.clip_id)
            while clip.frames.get() is not None:  # drain, so the camera loop never blocks on it
                pass
            return
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if stored is None:
            return
        with self._lock:
            self.stored += 1
        if self.on_stored is not None:
            try:
                self.on_stored(stored)
            except Exception:
                _LOG.exception("clip callback failed")

    def _encode_files(self, clip: _Clip, work: Path) -> StoredClip | None:
        files = {kind: work / name for kind, (name, _) in CLIP_FILES.items()}
        original: VideoWriter | None = None
        annotated: VideoWriter | None = None
        annotations: list[dict[str, Any]] = []
        try:
            while (item := clip.frames.get()) is not None:
                if original is None or annotated is None:
                    h, w = item.frame.shape[:2]
                    fps = clip.fps if clip.fps > 0 else 25.0
                    original = VideoWriter(files["original"], w, h, fps)
                    annotated = VideoWriter(files["annotated"], w, h, fps)
                original.write(item.frame)
                annotated.write(draw_faces(item.frame.copy(), item.faces))
                annotations.append(_annotation(item))
        finally:
            for writer in (original, annotated):
                if writer is not None:
                    writer.close()
        if not annotations:
            return None
        fps = clip.fps if clip.fps > 0 else 25.0
        meta = {"camera": self.camera, "clip_id": clip.clip_id, "alerts": clip.alerts, "fps": round(fps, 3),
                "dropped_frames": clip.dropped, "frames": annotations}  # fmt: skip
        files["annotations"].write_text(json.dumps(meta, separators=(",", ":")))
        if clip.snapshot:
            files["snapshot"].write_bytes(clip.snapshot)
        keys = {}
        for kind, path in files.items():
            if path.exists():
                key = clip_key(self.camera, clip.clip_id, kind)
                self.storage.put(key, path, CLIP_FILES[kind][1])
                keys[kind] = key
        alert_id = str(clip.alerts[0].get("alert_id", "")) if clip.alerts else ""
        n = len(annotations)
        return StoredClip(self.camera, clip.clip_id, alert_id, keys, n, n / fps, clip.dropped)


def _annotation(item: _Frame) -> dict[str, Any]:
    return {
        "frame": item.index,
        "ts": round(item.ts, 3),
        "faces": [
            {
                "track_id": face.track_id,
                "bbox": [round(float(v), 1) for v in face.detection.box],
                "score": round(face.detection.score, 3),
                "state": face.state.value,
                "person": face.person,
                "similarity": None if face.similarity is None else round(face.similarity, 4),
            }
            for face in item.faces
        ],
    }
