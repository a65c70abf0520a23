"""Reading frames from a file, an ``rtsp://`` / ``http(s)://`` URL or a webcam index.

Files and webcams are decoded in-process by OpenCV (its FFmpeg backend for files); network
streams by one ``ffmpeg`` process each (:mod:`facetrack.camera.stream`: opens and reads with a
timeout and a stop event, so one hanging camera never delays another). A frame that fails to
decode in the middle of a file is skipped (and counted), never fatal; a source that yields no
frame at all is an error.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import cv2
import numpy as np

from facetrack.camera.stream import STREAM_TIMEOUT_SECONDS, open_stream, redact
from facetrack.errors import VideoSourceError
from facetrack.inference.base import Frame

_LOG = logging.getLogger(__name__)
#: Consecutive failed reads after which a file is considered finished / a stream dropped.
MAX_CONSECUTIVE_FAILURES = 25


class FrameSource(Protocol):
    """What :func:`open_source` returns: :class:`VideoSource` (OpenCV) or
    :class:`~facetrack.camera.stream.StreamSource` (ffmpeg process); same attributes, same
    ``frames()`` contract: ``(index, ts_seconds, frame_bgr)``, frame ``(H, W, 3)`` uint8."""

    uri: str
    fps: float
    frame_count: int | None
    width: int
    height: int
    live: bool
    corrupt_frames: int
    error: str | None

    def frames(
        self, keep: Callable[[float], bool] | None = None, picture: Callable[[float], bool] | None = None
    ) -> Iterator[tuple[int, float, Frame | None]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(slots=True)
class VideoSource:
    """A source opened by OpenCV (a file, a webcam, or a stream when ffmpeg is missing).

    Attributes:
        uri: what was opened (path, URL or webcam index as a string).
        fps: nominal frame rate, frames/s (25 if the source does not say).
        frame_count: frames in a file, ``None`` for live sources or when unknown.
        width / height: frame size, pixels.
        live: True for webcams and network streams (timestamps from the wall clock).
        error: why ``frames()`` ended early (``None``: end of file, or not known).
    """

    uri: str
    capture: cv2.VideoCapture
    fps: float
    frame_count: int | None
    width: int
    height: int
    live: bool
    corrupt_frames: int = 0
    error: str | None = None

    def frames(
        self, keep: Callable[[float], bool] | None = None, picture: Callable[[float], bool] | None = None
    ) -> Iterator[tuple[int, float, Frame | None]]:
        """Yield ``(index, ts_seconds, frame_bgr)``; ``ts`` is the position in a file, or seconds
        since opening for a live source. Ends at the end of a file or after
        ``MAX_CONSECUTIVE_FAILURES`` failed reads of a stream.

        ``keep(ts)`` false: that frame is decoded (the codec needs it) but not converted to BGR
        nor yielded (over a frame-rate cap: the conversion is 40 % of decoding a 720p frame).
        ``picture(ts)`` false (asked only of kept frames): it is yielded with ``None`` for its
        picture, decoded but not converted (the caller shows the previous picture again)."""
        index = 0
        failures = 0
        start = time.monotonic()
        while True:
            ok, frame = self.capture.grab(), None
            if ok:
                ts = time.monotonic() - start if self.live else index / self.fps
                if keep is not None and not keep(ts):
                    failures = 0
                    index += 1
                    continue
                if picture is not None and not picture(ts):
                    failures = 0
                    yield index, ts, None
                    index += 1
                    continue
                ok, frame = self.capture.retrieve()
            if not ok or frame is None:
                failures += 1
                if not self.live or failures >= MAX_CONSECUTIVE_FAILURES:
                    return
                time.sleep(0.02)
                continue
            failures = 0
            if frame.ndim != 3 or frame.dtype != np.uint8 or frame.shape[2] != 3:
                self.corrupt_frames += 1
                continue
            yield index, ts, np.ascontiguousarray(frame, dtype=np.uint8)
            index += 1

    def close(self) -> None:
        """Release the capture."""
        self.capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(
    source: str | int,
    timeout: float = STREAM_TIMEOUT_SECONDS,
    stop: threading.Event | None = None,
    decode_threads: int = 0,
) -> FrameSource:
    """Open a video file, a stream URL or a webcam index (an int or a string of digits).

    Args:
        timeout: network streams: seconds to wait for the first frame, then for each next one
            (a stream silent that long ends; see :func:`~facetrack.camera.stream.open_stream`).
        stop: network streams: set it to abandon an open or a read within 0.2 s.
        decode_threads: files: decoder threads (``0``: FFmpeg's choice, one per core). One thread
            costs less CPU per frame (a 720p H.264 file at 10 frames/s: 4.6 % of a core against
            6.2 % with two) where throughput does not matter, a file replayed in real time.

    Raises:
        VideoSourceError: missing file, unsupported or corrupt content, unreachable, silent or
            refusing stream or camera; the message says which (never a URL's password).
    """
    if isinstance(source, str) and "://" in source and shutil.which("ffmpeg"):
        return open_stream(source, timeout, stop)
    if isinstance(source, str) and source.strip().isdigit():
        source = int(source.strip())
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
        uri, live = f"webcam:{source}", True
    else:
        uri = source
        live = "://" in source
        if not live:
            path = Path(source)
            if not path.exists():
                raise VideoSourceError(f"video file not found: {source}")
            if not path.is_file():
                raise VideoSourceError(f"not a video file: {source}")
            if not os.access(path, os.R_OK):
                raise VideoSourceError(f"video file not readable: {source}")
            params = [cv2.CAP_PROP_N_THREADS, decode_threads] if decode_threads > 0 else []
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        else:
            # No ffmpeg executable: OpenCV, whose opens share one process-wide lock (a hanging
            # camera delays the others' reopening by up to ``timeout``).
            uri = redact(source)
            _LOG.warning("ffmpeg not found: opening %s in-process with OpenCV", uri)
            if source.startswith("rtsp"):
                # TCP avoids the smeared frames UDP packet loss gives on Wi-Fi cameras.
                os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
            ms = int(timeout * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise VideoSourceError(f"cannot open video source {uri} (unsupported, corrupt or unreachable)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not 0.5 <= fps <= 240:
        fps = 25.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if not live and (width <= 0 or height <= 0):
        cap.release()
        raise VideoSourceError(f"cannot decode video file {uri}: no video stream")
    _LOG.info("opened %s: %dx%d @ %.2f fps%s", uri, width, height, fps, f", {count} frames" if count > 0 else "")
    return VideoSource(uri, cap, fps, count if count > 0 and not live else None, width, height, live)
