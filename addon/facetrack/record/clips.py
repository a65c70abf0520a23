"""Alert clips: a per-camera ring buffer with pre-roll, recorded around an alert and encoded off
the camera loop.

On an alert the camera's last ``pre_roll`` frames and the next frames up to ``clip_duration``
frames in all (DeGirum's ``clip_duration``, in frames) become one clip: the original video
(H.264 MP4), the annotated video, the per-frame annotations (JSON) and the face snapshot (JPEG).
The camera loop only keeps references to frames it has already decoded (no copy, no encode);
drawing and encoding run on one background thread per recorder, writing into a temporary folder
that is handed to the storage only when every file is complete, so a slow disk never stalls
tracking and no half-written clip is ever visible. Memory: ``pre_roll`` frames of the camera's
resolution (1 s of 720p at 25 fps is about 70 MB).
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import tempfile
import threading
import time
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
#: Clips waiting for the encoder; beyond, a new clip is dropped (logged) rather than stall tracking.
MAX_PENDING_CLIPS = 4


@dataclass(slots=True)
class _Frame:
    index: int
    ts: float
    frame: Frame
    faces: list[TrackedFace]


@dataclass(slots=True)
class _Pending:
    clip_id: str
    alert: dict[str, Any]
    snapshot: bytes | None
    frames: list[_Frame]
    remaining: int
    fps: float
    started: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class StoredClip:
    """A clip handed to the storage: its id, keys by kind, frame count and duration (s)."""

    camera: str
    clip_id: str
    alert_id: str
    keys: dict[str, str]
    frames: int
    duration_seconds: float


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
        self._active: list[_Pending] = []
        self._queue: queue.Queue[_Pending | None] = queue.Queue(MAX_PENDING_CLIPS)
        self._thread = threading.Thread(target=self._encode_loop, name=f"clips-{camera}", daemon=True)
        self._thread.start()
        self.stored = 0
        self.dropped = 0

    # ---- camera loop side (cheap) ----------------------------------------------------------------

    def add_frame(self, index: int, ts: float, frame: Frame, faces: list[TrackedFace], fps: float) -> None:
        """Keep a reference to the frame (ring buffer and any clip being recorded). Call it for
        every processed frame before :meth:`trigger` for that frame's alerts, so the alert's own
        frame is the last pre-roll frame."""
        item = _Frame(index, ts, frame, list(faces))
        if self.pre_roll:
            self._ring.append(item)
        for clip in list(self._active):
            clip.frames.append(item)
            clip.remaining -= 1
            clip.fps = fps
            if clip.remaining <= 0:
                self._finish(clip)

    def trigger(self, clip_id: str, alert: dict[str, Any], snapshot: bytes | None, fps: float) -> None:
        """Start a clip for an alert: the pre-roll now, the rest as frames arrive."""
        frames = list(self._ring)
        remaining = self.clip_duration - len(frames)
        self._active.append(_Pending(clip_id, alert, snapshot, frames, remaining, fps))

    def _finish(self, clip: _Pending) -> None:
        self._active.remove(clip)
        try:
            self._queue.put_nowait(clip)
        except queue.Full:
            self.dropped += 1
            _LOG.warning("camera %s: clip %s dropped, the encoder is behind (slow disk?)", self.camera, clip.clip_id)

    def close(self, timeout: float = 60.0) -> None:
        """Finish clips in progress with the frames they have, encode what is queued, stop."""
        for clip in list(self._active):
            if clip.frames:
                self._finish(clip)
            else:
                self._active.remove(clip)
        self._ring.clear()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    # ---- encoder thread -----------------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while True:
            clip = self._queue.get()
            if clip is None:
                return
            work = Path(tempfile.mkdtemp(prefix=f"facetrack-clip-{self.camera}-"))
            try:
                stored = self._encode(clip, work)
            except Exception:
                _LOG.exception("camera %s: clip %s failed; nothing stored", self.camera, clip.clip_id)
                continue
            finally:
                shutil.rmtree(work, ignore_errors=True)
            self.stored += 1
            if self.on_stored is not None:
                try:
                    self.on_stored(stored)
                except Exception:
                    _LOG.exception("clip callback failed")

    def _encode(self, clip: _Pending, work: Path) -> StoredClip:
        first = clip.frames[0].frame
        h, w = first.shape[:2]
        fps = clip.fps if clip.fps > 0 else 25.0
        files = {kind: work / name for kind, (name, _) in CLIP_FILES.items()}
        annotations = []
        with VideoWriter(files["original"], w, h, fps) as original, VideoWriter(files["annotated"], w, h, fps) as ann:
            for f in clip.frames:
                original.write(f.frame)
                ann.write(draw_faces(f.frame.copy(), f.faces))
                annotations.append(
                    {
                        "frame": f.index,
                        "ts": round(f.ts, 3),
                        "faces": [
                            {
                                "track_id": face.track_id,
                                "bbox": [round(float(v), 1) for v in face.detection.box],
                                "score": round(face.detection.score, 3),
                                "state": face.state.value,
                                "person": face.person,
                                "similarity": None if face.similarity is None else round(face.similarity, 4),
                            }
                            for face in f.faces
                        ],
                    }
                )
        meta = {
            "camera": self.camera,
            "clip_id": clip.clip_id,
            "alert": clip.alert,
            "fps": round(fps, 3),
            "frames": annotations,
        }
        files["annotations"].write_text(json.dumps(meta, separators=(",", ":")))
        if clip.snapshot:
            files["snapshot"].write_bytes(clip.snapshot)
        keys = {}
        for kind, path in files.items():
            if not path.exists():
                continue
            key = clip_key(self.camera, clip.clip_id, kind)
            self.storage.put(key, path, CLIP_FILES[kind][1])
            keys[kind] = key
        n = len(clip.frames)
        return StoredClip(self.camera, clip.clip_id, str(clip.alert.get("alert_id", "")), keys, n, n / fps)
