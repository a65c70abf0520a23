"""Alert clips: a per-camera ring buffer with pre-roll, recorded around an alert and encoded off
the camera loop as the frames arrive, through an on-disk spool that survives a killed engine.

On an alert the camera's last ``pre_roll_seconds`` and the next frames up to ``duration_seconds``
in all become one clip: the original video (H.264 MP4), the annotated video, the per-frame
annotations (JSON) and the face snapshot of the clip's first alert (JPEG; every alert's own
snapshot is kept apart, see :mod:`facetrack.record.snapshots`). Seconds become frames at the
camera's processing rate (:meth:`ClipRecorder.rate`: frames per second of the source's time, the
source's frame rate while the camera processes all of it), which is also the clip's frame rate, so
it plays at the speed of what it shows. A clip also ends once ``duration_seconds -
pre_roll_seconds`` (plus :data:`MAX_LATE_S`) have passed on the clock since its alert, however
slowly the camera processes (a file it cannot keep up with), so it is stored a few seconds after
that.

Memory is bounded in bytes. The pre-roll ring keeps ``pre_roll_seconds`` of frames at the source's
rate as JPEG (quality :data:`PRE_ROLL_JPEG_QUALITY`, at most :data:`MAX_PRE_ROLL_BYTES` per camera:
a 720p frame is about 140 KB instead of 2.7 MB decoded, so 2 s at 25 frames/s is about 7 MB
instead of 138 MB; encoding costs about 3.4 ms of CPU per 720p frame, measured in
benchmarks/README.md "Memory"); a clip decodes them on its encoder thread when it starts. Frames
after the alert are handed to the clip's encoder thread by reference (no copy) while its queue
holds at most :data:`MAX_QUEUED_RAW_BYTES` of decoded frames; beyond (the encoder is catching up
with the pre-roll, or a slow disk), they wait as JPEG, up to :data:`MAX_QUEUED_FRAMES` frames and
:data:`MAX_QUEUED_BYTES` per clip. Past that, frames are dropped from that clip (counted) rather
than stall tracking. An alert while a clip is
recording that will still cover at least half of the post-roll joins that clip (at most
:data:`MAX_ACTIVE_CLIPS` clips record at once); :meth:`ClipRecorder.offset_seconds` gives the
alert's time in it.

The spool. The alert's URLs go out before its clip exists, so each clip is recorded in its own
folder ``<spool_dir>/facetrack-clip-<camera>-<clip_id>-<random>/``, created (with a journal
naming the clip, its storage and its state) before :meth:`ClipRecorder.start_clip` returns, and
locked (``flock``) by the process recording it and by its ffmpeg encoders. The videos are written
as fragmented MP4 (a fragment at least every second), the annotations one JSON line per frame, the
alerts and snapshot as they come. A finished clip is sealed (journal state ``encoded``), handed to
the storage and its folder removed, so no half-written clip is ever visible. After a crash or
``kill -9``, :func:`recover_clips` (run at start-up, and periodically for uploads that failed)
takes every unlocked folder: a clip still ``recording`` keeps the complete fragments of its videos
(remuxed) and the annotations of their frames; what cannot be recovered is marked lost in the
storage (:meth:`~facetrack.record.storage.ClipStorage.mark_lost`: its URLs answer "410 Gone"); an
``encoded`` clip whose upload was cut (or failed: S3 down) is uploaded again. A clip interrupted by
shutdown is finished with the frames it has.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from facetrack.annotate import draw_faces
from facetrack.camera.runner import FrameSink, ProcessedFrame
from facetrack.camera.source import FrameSource
from facetrack.inference.base import Frame
from facetrack.record.storage import CLIP_FILES, ClipStorage, StorageError, clip_key, clip_time
from facetrack.record.video import VideoWriter, salvage_mp4
from facetrack.track.face_tracker import TrackedFace

_LOG = logging.getLogger(__name__)
#: Frames waiting for one clip's encoder; beyond, frames are dropped from that clip.
MAX_QUEUED_FRAMES = 50
#: Bytes of decoded frames waiting for one clip's encoder (about 4 frames of 720p); further frames
#: wait as JPEG. The first waiting frame is always kept decoded, whatever its size.
MAX_QUEUED_RAW_BYTES = 12 * 2**20
#: Bytes of frames (decoded and JPEG) waiting for one clip's encoder; beyond, frames are dropped.
MAX_QUEUED_BYTES = 32 * 2**20
#: Bytes of JPEG the pre-roll ring keeps per camera (2 s of 1080p at 25 frames/s is about 15 MB);
#: beyond, the oldest frames go (a shorter pre-roll, logged once).
MAX_PRE_ROLL_BYTES = 32 * 2**20
#: JPEG quality (OpenCV's 0-100 scale) of the frames kept for pre-roll and queued as JPEG; the clip
#: re-encodes them with H.264 at crf 23, which loses more than this.
PRE_ROLL_JPEG_QUALITY = 85
#: A still frame (no motion on it nor the frame before, nothing tracked: ``FrameResult.still``)
#: enters the pre-roll as the previous frame's JPEG when that was encoded less than this many
#: seconds (source time) before: encoding is most of an idle camera's recording cost (3.8 ms of
#: CPU per 720p frame, as much as decoding it). What the motion check calls still differs by less
#: than its pixel threshold; a clock burnt into the picture advances once a second meanwhile.
STILL_REUSE_SECONDS = 1.0
#: Clips recording at the same time per camera; further alerts join the newest clip.
MAX_ACTIVE_CLIPS = 2
#: Frames over which the processing rate is measured.
RATE_WINDOW = 50
#: The measured rate counts once this many frames were processed since the source opened.
MIN_RATE_FRAMES = 5
#: A measured rate this close to the source's (as a share of it) is the source's.
KEEP_UP = 0.9
#: Seconds a clip may record past its post-roll's time on the clock when the camera processes
#: fewer frames than its rate promised (a slow machine), before it ends anyway.
MAX_LATE_S = 1.0
#: The lowest processing rate a clip is recorded at, frames/s.
MIN_RATE = 0.1
#: Prefix of a clip's folder in the spool.
SPOOL_PREFIX = "facetrack-clip-"
#: Reasons given (HTTP 410 body) for the files of a clip that could not be kept.
LOST_RECORDING = "clip lost: the engine stopped while recording it and nothing playable was left"
LOST_NO_FRAMES = "clip lost: no frame was recorded"
LOST_NO_SNAPSHOT = "snapshot lost: no face snapshot was taken for this alert"
LOST_NOT_STARTED = "clip lost: the recording could not be started"
LOST_UPLOAD = "clip lost: it could not be stored before the retention limit"

_JOURNAL = "journal.json"
_LOCK = "lock"
_FRAMES = "frames.jsonl"
_ALERTS = "alerts.jsonl"
_VIDEOS = ("original", "annotated")
_SPOOL_RE = re.compile(rf"{SPOOL_PREFIX}[a-z0-9_]{{1,32}}-[0-9]{{8}}T[0-9]{{6}}Z_[0-9a-f]{{8}}-.+")
_POLL_S = 0.2


@dataclass(slots=True)
class _Frame:
    """A processed frame, decoded (``frame``) or JPEG-encoded (``jpeg``); at least one is set."""

    index: int
    ts: float
    frame: Frame | None
    faces: list[TrackedFace]
    jpeg: bytes | None = None

    @property
    def nbytes(self) -> int:
        """Bytes it holds (the decoded frame if kept, else its JPEG)."""
        if self.frame is not None:
            return int(self.frame.nbytes)
        return len(self.jpeg) if self.jpeg is not None else 0

    def image(self) -> Frame:
        """The ``(H, W, 3) uint8`` BGR frame (decoded from the JPEG if that is all it holds)."""
        if self.frame is not None:
            return self.frame
        assert self.jpeg is not None
        image = cv2.imdecode(np.frombuffer(self.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"frame {self.index}: its JPEG does not decode")
        return np.ascontiguousarray(image, dtype=np.uint8)

    def as_jpeg(self) -> _Frame:
        """The same frame holding only its JPEG (encoded now if needed)."""
        jpeg = self.jpeg
        if jpeg is None:
            assert self.frame is not None
            ok, buf = cv2.imencode(".jpg", self.frame, [cv2.IMWRITE_JPEG_QUALITY, PRE_ROLL_JPEG_QUALITY])
            if not ok:
                raise ValueError(f"frame {self.index}: JPEG encoding failed")
            jpeg = buf.tobytes()
        return _Frame(self.index, self.ts, None, self.faces, jpeg)


@dataclass(frozen=True, slots=True)
class StoredClip:
    """A clip handed to the storage: its id, keys by kind, frame count and duration (s).

    ``recovered``: salvaged by :func:`recover_clips` after the engine stopped mid-clip.
    """

    camera: str
    clip_id: str
    alert_id: str
    keys: dict[str, str]
    frames: int
    duration_seconds: float
    dropped_frames: int = 0
    recovered: bool = False


@dataclass(slots=True)
class RecoveryReport:
    """What :func:`recover_clips` did: clips stored (whole or in part), clips with nothing left
    (marked lost), folders left for later (locked by a running encoder, or the upload failed)."""

    stored: list[StoredClip] = field(default_factory=list)
    lost: int = 0
    pending: int = 0


class _Spool:
    """One clip's spool folder, locked by this process (``flock``; released on close or death)."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.fd = fd

    @classmethod
    def create(cls, root: Path, camera: str, clip_id: str, journal: dict[str, Any]) -> _Spool:
        """A new locked folder with its journal (state ``recording``). Raises OSError."""
        root.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            folder = Path(tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{camera}-{clip_id}-", dir=root))
            spool = cls.lock(folder)
            if spool is not None:  # else a recovery scan took it first: it removes it
                spool.write_journal({**journal, "camera": camera, "clip_id": clip_id, "state": "recording"})
                return spool
        raise OSError(f"cannot lock a spool folder in {root}")

    @classmethod
    def lock(cls, folder: Path) -> _Spool | None:
        """The folder locked for this process, or None if another holder has it (or it is gone)."""
        try:
            fd = os.open(folder / _LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(folder, fd)

    def journal(self) -> dict[str, Any]:
        return read_journal(self.folder)

    def write_journal(self, data: dict[str, Any]) -> None:
        tmp = self.folder / f".{_JOURNAL}.tmp"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.folder / _JOURNAL)

    def append(self, name: str, record: Mapping[str, Any]) -> None:
        with (self.folder / name).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()


def read_journal(folder: Path) -> dict[str, Any]:
    """A spool folder's journal, ``{}`` if missing or unreadable."""
    try:
        data = json.loads((folder / _JOURNAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(slots=True)
class _Clip:
    clip_id: str
    remaining: int
    fps: float
    spool: _Spool
    # One slot more than the frames may take: the end mark always fits, so ending a clip never
    # waits for a stalled encoder (the camera thread is the only producer).
    frames: queue.Queue[_Frame | None] = field(default_factory=lambda: queue.Queue(MAX_QUEUED_FRAMES + 1))
    snapshot: bool = False
    dropped: int = 0
    raw_bytes: int = 0  # decoded frames waiting in ``frames`` (bytes)
    queued_bytes: int = 0  # all frames waiting in ``frames`` (bytes)
    sizes: threading.Lock = field(default_factory=threading.Lock)  # guards the two counts
    queued: int = 0  # frames handed to the encoder: the clip's video frames, in order
    deadline: float = float("inf")  # on the recorder's clock: the clip ends then at the latest
    thread: threading.Thread | None = None


class ClipRecorder:
    """Records alert clips for one camera.

    Args:
        camera: camera name (first segment of the storage keys).
        storage: where finished clips go.
        duration_seconds: seconds per clip, pre-roll included (at least 2 frames).
        pre_roll_seconds: seconds before the alert (at most the duration minus one frame).
        on_stored: called (encoder thread) with each :class:`StoredClip`.
        spool_dir: folder of the clips being recorded (the engine's state directory, never /tmp:
            :func:`recover_clips` must find them after a restart); created if missing.
        clock: monotonic seconds, for the clips' deadlines (a test's own clock).
    """

    def __init__(
        self,
        camera: str,
        storage: ClipStorage,
        duration_seconds: float = 10.0,
        pre_roll_seconds: float = 2.0,
        on_stored: Callable[[StoredClip], None] | None = None,
        *,
        spool_dir: str | Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.camera = camera
        self.storage = storage
        self.clock = clock
        self.duration_seconds = max(0.0, float(duration_seconds))
        self.pre_roll_seconds = min(max(0.0, float(pre_roll_seconds)), self.duration_seconds)
        self.on_stored = on_stored
        self.spool_dir = Path(spool_dir)
        self._source_fps = 25.0  # the source's frame rate after the fps cap (frames/s)
        self._ring: deque[_Frame] = deque(maxlen=self._ring_size())  # JPEG only
        self._ring_bytes = 0
        self._ring_trimmed = False
        self._encoded_ts = 0.0  # source time of the last frame encoded for the pre-roll
        self._times: deque[float] = deque(maxlen=RATE_WINDOW)  # source times of the last frames (s)
        self._active: list[_Clip] = []
        self._encoders: list[threading.Thread] = []  # also those of ended clips still storing
        self._lock = threading.Lock()
        self.stored = 0
        self.failed = 0

    # ---- the processing rate ---------------------------------------------------------------------

    def _ring_size(self) -> int:
        """Pre-roll frames kept: the pre-roll at the source's rate (the highest rate a clip gets)."""
        return max(1, round(self.pre_roll_seconds * self._source_fps))

    def source_opened(self, fps: float) -> None:
        """The camera (re)opened its source, processed at ``fps`` frames/s at most: the rate is
        measured afresh (the time the source was away is no frame)."""
        self._times.clear()
        self._set_source_fps(fps)

    def _set_source_fps(self, fps: float) -> None:
        if fps > 0 and fps != self._source_fps:
            self._source_fps = fps
            self._ring = deque(self._ring, maxlen=self._ring_size())
            self._ring_bytes = sum(item.nbytes for item in self._ring)

    def rate(self) -> float:
        """The camera's processing rate, frames per second of the source's time, measured over
        the last :data:`RATE_WINDOW` frames: a live camera's frames/s (its reader drops what the
        camera cannot process), the file's frame rate (or the fps cap). Within :data:`KEEP_UP` of
        the source's rate it is the source's; at least :data:`MIN_RATE`."""
        times = self._times
        if len(times) < MIN_RATE_FRAMES or times[-1] <= times[0]:
            return self._source_fps
        measured = (len(times) - 1) / (times[-1] - times[0])
        return self._source_fps if measured >= KEEP_UP * self._source_fps else max(MIN_RATE, measured)

    def clip_frames(self, rate: float | None = None) -> tuple[int, int]:
        """``(frames per clip, pre-roll frames)`` at ``rate`` frames/s (default :meth:`rate`)."""
        r = self.rate() if rate is None else rate
        total = max(2, round(self.duration_seconds * r))
        return total, min(round(self.pre_roll_seconds * r), total - 1)

    # ---- camera loop side (cheap) ----------------------------------------------------------------

    def add_frame(
        self, index: int, ts: float, frame: Frame, faces: list[TrackedFace], fps: float, still: bool = False
    ) -> None:
        """Hand a processed frame over (a reference): to the pre-roll ring and to every clip
        recording. ``fps``: the source's frame rate after the fps cap; ``still``: nothing changed
        since the previous frame (see :data:`STILL_REUSE_SECONDS`). Call it before
        :meth:`start_clip` for that frame's alerts, so the alert's own frame is the last pre-roll
        frame."""
        item = _Frame(index, ts, frame, list(faces))
        if self._times and ts < self._times[-1]:
            self._times.clear()  # the source started again
        self._times.append(ts)
        self._set_source_fps(fps)
        if self.pre_roll_seconds > 0:
            self._keep_pre_roll(item, still)
        now = self.clock()
        for clip in list(self._active):
            self._feed(clip, item)
            clip.remaining -= 1
            if clip.remaining <= 0 or now >= clip.deadline:
                self._end(clip)

    def _keep_pre_roll(self, item: _Frame, still: bool = False) -> None:
        """Add ``item`` (as JPEG) to the pre-roll ring, within :data:`MAX_PRE_ROLL_BYTES`; a still
        frame may share the previous frame's JPEG (:data:`STILL_REUSE_SECONDS`). A frame that
        cannot be encoded is left out (logged)."""
        ring = self._ring
        last = ring[-1] if ring else None
        fresh = 0 <= item.ts - self._encoded_ts < STILL_REUSE_SECONDS
        if still and fresh and last is not None and last.jpeg is not None:
            kept = _Frame(item.index, item.ts, None, item.faces, last.jpeg)
        else:
            try:
                kept = item.as_jpeg()
            except (ValueError, cv2.error) as exc:
                _LOG.warning("camera %s: frame %d left out of the pre-roll: %s", self.camera, item.index, exc)
                return
            self._encoded_ts = item.ts
        item.jpeg = kept.jpeg  # a clip queueing this frame as JPEG reuses it
        if len(ring) == ring.maxlen:
            self._ring_bytes -= ring[0].nbytes
        ring.append(kept)
        self._ring_bytes += kept.nbytes
        while self._ring_bytes > MAX_PRE_ROLL_BYTES and len(ring) > 1:
            self._ring_bytes -= ring.popleft().nbytes
            if not self._ring_trimmed:
                self._ring_trimmed = True
                _LOG.warning(
                    "camera %s: pre-roll shortened to %d frames (%d MB of JPEG at most)",
                    self.camera, len(ring), MAX_PRE_ROLL_BYTES // 2**20,
                )  # fmt: skip

    def start_clip(self, clip_id: str) -> str:
        """The clip that will hold an alert raised on the latest frame: a recording clip that still
        covers at least half of the post-roll, or a new one (pre-roll now, the rest as frames
        arrive). Returns its id (``clip_id`` if new). A new clip's spool folder and journal exist
        when this returns (a small write), so the clip survives a crash from then on; if they
        cannot be created, the clip is marked lost (its URLs answer 410) and nothing is recorded."""
        fps = self.rate()
        total, pre = self.clip_frames(fps)
        now, post_s = self.clock(), self.duration_seconds - self.pre_roll_seconds
        for active in reversed(self._active):
            covers = active.remaining >= (total - pre) // 2 and active.deadline - now >= post_s / 2
            if covers or len(self._active) >= MAX_ACTIVE_CLIPS:
                return active.clip_id
        journal = {"storage": self.storage.identity, "fps": round(fps, 3), "created": time.time()}
        try:
            spool = _Spool.create(self.spool_dir, self.camera, clip_id, journal)
        except OSError as exc:
            self.failed += 1
            _LOG.error("camera %s: clip %s cannot be recorded: %s", self.camera, clip_id, exc)
            _mark_lost(self.storage, self.camera, clip_id, dict.fromkeys(CLIP_FILES, LOST_NOT_STARTED))
            return clip_id
        frames = list(self._ring)[-pre:] if pre else []
        clip = _Clip(clip_id, total - len(frames), fps, spool, deadline=now + post_s + MAX_LATE_S)
        clip.thread = threading.Thread(target=self._encode, args=(clip,), name=f"clip-{clip_id}", daemon=True)
        clip.thread.start()
        self._encoders = [t for t in self._encoders if t.is_alive()] + [clip.thread]
        self._active.append(clip)
        for item in frames:
            self._feed(clip, item)
        return clip_id

    def offset_seconds(self, clip_id: str) -> float | None:
        """Seconds from the start of recording clip ``clip_id`` to its latest frame (the frame of
        an alert raised now: its place in the clip's video), or None if the clip is not recording."""
        clip = next((c for c in self._active if c.clip_id == clip_id), None)
        if clip is None:
            return None
        return round(max(0, clip.queued - 1) / clip.fps, 3)

    def note_alert(self, clip_id: str, alert: Mapping[str, Any], snapshot: bytes | None) -> None:
        """Record an alert's payload (and, for the clip's first alert, its face snapshot) in the
        clip's spool folder."""
        for clip in self._active:
            if clip.clip_id != clip_id:
                continue
            try:
                clip.spool.append(_ALERTS, alert)
                if not clip.snapshot and snapshot:
                    (clip.spool.folder / CLIP_FILES["snapshot"][0]).write_bytes(snapshot)
                    clip.snapshot = True
            except OSError as exc:  # the clip records on; what is missing is marked lost at the end
                _LOG.error("camera %s: clip %s: cannot save the alert: %s", self.camera, clip_id, exc)

    def _feed(self, clip: _Clip, item: _Frame) -> None:
        """Queue ``item`` for the clip's encoder: decoded while the queue's decoded frames fit in
        :data:`MAX_QUEUED_RAW_BYTES`, else as JPEG; dropped (counted) past :data:`MAX_QUEUED_FRAMES`
        frames or :data:`MAX_QUEUED_BYTES`."""
        queued: _Frame | None = None
        if clip.frames.qsize() < MAX_QUEUED_FRAMES:
            with clip.sizes:
                raw_fits = item.frame is not None and (
                    clip.raw_bytes == 0 or clip.raw_bytes + item.nbytes <= MAX_QUEUED_RAW_BYTES
                )
            if raw_fits:
                queued = _Frame(item.index, item.ts, item.frame, item.faces)
            else:
                try:
                    queued = item.as_jpeg()
                except (ValueError, cv2.error) as exc:
                    _LOG.warning("camera %s: frame %d left out of clip %s: %s", self.camera, item.index,
                                 clip.clip_id, exc)  # fmt: skip
            if queued is not None:
                with clip.sizes:
                    if clip.queued_bytes + queued.nbytes > MAX_QUEUED_BYTES and clip.queued_bytes > 0:
                        queued = None
                    else:
                        clip.queued_bytes += queued.nbytes
                        if queued.frame is not None:
                            clip.raw_bytes += queued.nbytes
        if queued is not None:
            clip.frames.put_nowait(queued)
            clip.queued += 1
        else:
            clip.dropped += 1
            if clip.dropped == 1:
                _LOG.warning(
                    "camera %s: clip %s encoder behind (slow disk?): dropping frames", self.camera, clip.clip_id
                )

    def _end(self, clip: _Clip) -> None:
        self._active.remove(clip)
        clip.frames.put_nowait(None)  # the encoder finishes the files and stores them

    def close(self, timeout: float = 60.0) -> None:
        """Finish the clips recording with the frames they have; wait (up to ``timeout`` s each)
        for every encoder still encoding or storing. A clip not stored by then stays in the spool
        for :func:`recover_clips`."""
        for clip in list(self._active):
            self._end(clip)
        self._ring.clear()
        self._ring_bytes = 0
        for thread in self._encoders:
            thread.join(timeout)

    # ---- encoder threads -----------------------------------------------------------------------------

    def _encode(self, clip: _Clip) -> None:
        spool = clip.spool
        try:
            try:
                written = self._write(clip)
                _seal(spool, written, clip.dropped)
            except Exception:
                self.failed += 1
                _LOG.exception("camera %s: clip %s failed; keeping what plays", self.camera, clip.clip_id)
                while clip.frames.get() is not None:  # drain, so the camera loop never blocks on it
                    pass
                _seal(spool, None, clip.dropped)
            stored = _upload(spool, self.storage)
        except Exception as exc:  # kept in the spool: recover_clips tries again
            _LOG.error("camera %s: clip %s not stored yet (%s); will retry", self.camera, clip.clip_id, exc)
            spool.release()
            return
        if stored is None:
            return
        with self._lock:
            self.stored += 1
        if self.on_stored is not None:
            try:
                self.on_stored(stored)
            except Exception:
                _LOG.exception("clip callback failed")

    def _write(self, clip: _Clip) -> int:
        """Encode the clip's frames into its spool folder as they arrive; returns frames written."""
        folder = clip.spool.folder
        writers: list[VideoWriter] = []
        annotations: IO[str] | None = None
        n = 0
        try:
            annotations = (folder / _FRAMES).open("a", encoding="utf-8")
            while (item := clip.frames.get()) is not None:
                with clip.sizes:
                    clip.queued_bytes -= item.nbytes
                    if item.frame is not None:
                        clip.raw_bytes -= item.nbytes
                image = item.image()
                item.frame = item.jpeg = None  # the queue no longer holds it
                if not writers:
                    h, w = image.shape[:2]
                    for kind in _VIDEOS:
                        writers.append(
                            VideoWriter(folder / CLIP_FILES[kind][0], w, h, clip.fps,
                                        fragmented=True, keep_fds=(clip.spool.fd,))
                        )  # fmt: skip
                writers[0].write(image)
                writers[1].write(draw_faces(image.copy(), item.faces))
                # After both videos: a killed engine never leaves annotations for frames not encoded.
                annotations.write(json.dumps(_annotation(item), separators=(",", ":")) + "\n")
                annotations.flush()
                n += 1
        finally:
            if annotations is not None:
                annotations.close()
            errors = []
            for writer in writers:
                try:
                    writer.close()
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
        return n


def _seal(spool: _Spool, written: int | None, dropped: int | None) -> None:
    """``recording`` -> ``encoded``: the final files in the folder and the journal saying which
    are lost and why. ``written``: frames the encoders finished cleanly; ``None`` after a crash
    or an encoder failure, when the videos are salvaged (complete fragments kept, remuxed)."""
    journal = spool.journal()
    folder = spool.folder
    fps = float(journal.get("fps") or 25.0)
    lost: dict[str, str] = {}
    frames = _read_lines(folder / _FRAMES)
    counts: dict[str, int] = {}
    for kind in _VIDEOS:
        path = folder / CLIP_FILES[kind][0]
        counts[kind] = salvage_mp4(path, len(frames)) if written is None else (written if path.is_file() else 0)
    if written is None:
        # A crash may cut the two videos and the annotations at different frames: all keep the
        # frames all of them hold (or the annotated video alone, if the original is lost).
        n = min(counts.values()) or counts["annotated"]
        for kind in _VIDEOS:
            if 0 < n < counts[kind]:
                counts[kind] = salvage_mp4(folder / CLIP_FILES[kind][0], n)
        frames = frames[: counts["original"] or counts["annotated"]]
    for kind in _VIDEOS:
        if counts[kind] == 0:
            (folder / CLIP_FILES[kind][0]).unlink(missing_ok=True)
            lost[kind] = LOST_RECORDING if written is None else LOST_NO_FRAMES
    if frames:
        meta = {"camera": journal.get("camera"), "clip_id": journal.get("clip_id"),
                "alerts": _read_lines(folder / _ALERTS), "fps": round(fps, 3),
                "dropped_frames": dropped, "recovered": written is None, "frames": frames}  # fmt: skip
        (folder / CLIP_FILES["annotations"][0]).write_text(json.dumps(meta, separators=(",", ":")), encoding="utf-8")
    else:
        lost["annotations"] = LOST_RECORDING if written is None else LOST_NO_FRAMES
    if not (folder / CLIP_FILES["snapshot"][0]).is_file():
        lost["snapshot"] = LOST_NO_SNAPSHOT
    frame_count = counts["original"] or counts["annotated"] or len(frames)
    spool.write_journal({**journal, "state": "encoded", "frames": frame_count, "lost": lost,
                         "recovered": written is None, "dropped_frames": dropped})  # fmt: skip


def _upload(spool: _Spool, storage: ClipStorage) -> StoredClip | None:
    """``encoded`` -> stored: every kept file to the storage (each put atomic, so a repeat after a
    crash is harmless), the lost ones marked, the folder removed. Returns the clip, or None if it
    holds no video frame. Raises StorageError (the folder stays, for a retry)."""
    journal = spool.journal()
    camera, clip_id = str(journal["camera"]), str(journal["clip_id"])
    lost: dict[str, str] = dict(journal.get("lost") or {})
    keys: dict[str, str] = {}
    for kind, (name, content_type) in CLIP_FILES.items():
        path = spool.folder / name
        if kind not in lost and path.is_file():
            key = clip_key(camera, clip_id, kind)
            storage.put(key, path, content_type)
            keys[kind] = key
        else:
            lost.setdefault(kind, LOST_RECORDING)
    if lost:
        storage.mark_lost(camera, clip_id, lost)
    alerts = _read_lines(spool.folder / _ALERTS)
    spool.remove()
    frames = int(journal.get("frames") or 0)
    if frames == 0 or "original" not in keys:
        return None
    alert_id = str(alerts[0].get("alert_id", "")) if alerts else ""
    fps = float(journal.get("fps") or 25.0)
    dropped = journal.get("dropped_frames")
    return StoredClip(camera, clip_id, alert_id, keys, frames, frames / fps,
                      dropped if isinstance(dropped, int) else 0, bool(journal.get("recovered")))  # fmt: skip


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (a line cut by a crash is skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                out.append(record)
    return out


def _mark_lost(storage: ClipStorage, camera: str, clip_id: str, reasons: dict[str, str]) -> None:
    try:
        storage.mark_lost(camera, clip_id, reasons)
    except (StorageError, ValueError) as exc:
        _LOG.error("camera %s: cannot mark clip %s lost: %s", camera, clip_id, exc)


def recover_clips(
    spool_dir: str | Path,
    storage: ClipStorage,
    *,
    wait_s: float = 0.0,
    now: float | None = None,
) -> RecoveryReport:
    """Finish or remove every clip a stopped engine left in ``spool_dir`` for ``storage``.

    Run at start-up, before the cameras (and the HTTP server) start, and now and then to retry
    failed uploads. A folder still locked (the encoders of a killed engine finishing their files,
    or a clip this process records) is waited for up to ``wait_s`` seconds, then left for later.
    A ``recording`` clip keeps what plays (see :func:`_seal`); the files that cannot be kept are
    marked lost; an ``encoded`` one is uploaded again. Folders of another storage (another
    instance sharing the folder) are left alone; a folder without a journal is removed.

    Args:
        spool_dir: the recorders' ``spool_dir``.
        storage: where the clips go.
        wait_s: seconds to wait for locked folders.
        now: epoch seconds (default: the current time): a clip whose upload keeps failing is
            dropped (marked lost) once older than ``storage.config.max_age_days``.

    Returns:
        What was stored, lost and left for later. Never raises for one clip's failure (logged).
    """
    root = Path(spool_dir)
    deadline = time.monotonic() + wait_s
    report = RecoveryReport()
    waiting = sorted(p for p in _entries(root))
    while waiting:
        busy = []
        for folder in waiting:
            journal = read_journal(folder)
            if journal and journal.get("storage") != storage.identity:
                continue
            spool = _Spool.lock(folder)
            if spool is None:
                if folder.exists():
                    busy.append(folder)
                continue
            _recover_one(spool, storage, report, now)
        if not busy or time.monotonic() >= deadline:
            report.pending += len(busy)
            break
        waiting = busy
        time.sleep(_POLL_S)
    if report.stored or report.lost or report.pending:
        _LOG.info(
            "clip recovery in %s: %d stored, %d lost, %d left for later",
            root, len(report.stored), report.lost, report.pending,
        )  # fmt: skip
    return report


def _entries(root: Path) -> Iterable[Path]:
    try:
        return [p for p in root.iterdir() if _SPOOL_RE.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _recover_one(spool: _Spool, storage: ClipStorage, report: RecoveryReport, now: float | None) -> None:
    journal = spool.journal()
    if "camera" not in journal or "clip_id" not in journal:
        spool.remove()  # created and abandoned before its journal: no alert can name it
        return
    camera, clip_id = str(journal["camera"]), str(journal["clip_id"])
    try:
        if journal.get("state") == "recording":
            _LOG.warning("camera %s: clip %s was interrupted: recovering what plays", camera, clip_id)
            _seal(spool, None, None)
        stored = _upload(spool, storage)
    except Exception as exc:
        created = clip_time(clip_id) or 0.0
        max_age = storage.config.max_age_days
        if max_age is not None and (time.time() if now is None else now) - created > max_age * 86400.0:
            _mark_lost(storage, camera, clip_id, dict.fromkeys(CLIP_FILES, LOST_UPLOAD))
            spool.remove()
            report.lost += 1
            return
        _LOG.error("camera %s: clip %s not stored yet (%s); will retry", camera, clip_id, exc)
        spool.release()
        report.pending += 1
        return
    if stored is None:
        report.lost += 1
    else:
        report.stored.append(stored)


def cleanup_legacy_temp(cameras: Iterable[str], min_age_s: float = 600.0) -> int:
    """Remove the ``facetrack-clip-<camera>-*`` folders earlier versions left in the system's
    temporary folder when killed (they cannot be recovered: plain MP4 without an index, no
    journal). Only folders holding nothing but clip files, untouched for ``min_age_s`` seconds
    (an older engine still recording is left alone), are removed. Returns how many."""
    names = {name for name, _ in CLIP_FILES.values()}
    tmp = Path(tempfile.gettempdir())
    removed = 0
    for camera in cameras:
        for folder in tmp.glob(f"{SPOOL_PREFIX}{camera}-*"):
            try:
                entries = list(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else None
                if entries is None or any(e.name not in names or not e.is_file() for e in entries):
                    continue
                newest = max([folder.stat().st_mtime, *(e.stat().st_mtime for e in entries)])
            except OSError:
                continue
            if time.time() - newest >= min_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


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


class RecorderSink(FrameSink):
    """Feeds a camera's processed frames to its :class:`ClipRecorder` and finishes the clips in
    progress when the camera stops (complete files, never corrupt ones)."""

    def __init__(self, recorder: ClipRecorder) -> None:
        self.recorder = recorder

    def opened(self, source: FrameSource, rate: float) -> None:
        self.recorder.source_opened(rate)

    def frame(self, f: ProcessedFrame) -> None:
        self.recorder.add_frame(f.index, f.ts, f.frame, f.result.faces, f.rate, f.result.still)

    def closed(self) -> None:
        self.recorder.close()
