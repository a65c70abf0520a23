"""Writing BGR frames to an H.264 MP4 through ffmpeg (OpenCV's ``mp4v`` if ffmpeg is absent)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import IO

import cv2

from facetrack.errors import FaceTrackError
from facetrack.inference.base import Frame

_LOG = logging.getLogger(__name__)


class VideoWriter:
    """Encodes frames of one fixed size to ``path``.

    H.264 (libx264, yuv420p, ``+faststart``) when ``ffmpeg`` is on the PATH, so the file plays
    in browsers and Home Assistant; otherwise MPEG-4 Part 2 through OpenCV.

    Raises:
        FaceTrackError: the output cannot be created.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, crf: int = 23) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width - width % 2, height - height % 2)  # yuv420p needs even sizes
        self.frames = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._cv: cv2.VideoWriter | None = None
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            cmd = [
                ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.size[0]}x{self.size[1]}",
                "-r", f"{fps:.3f}", "-i", "pipe:0",
                # zerolatency (no lookahead, no B-frames) and 2 threads: ~110 MB per 1080p
                # encoder instead of ~280 MB, since a camera may run several clip encoders at once.
                "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                "-tune", "zerolatency", "-threads", "2",
                "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(self.path),
            ]  # fmt: skip
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        else:
            _LOG.warning("ffmpeg not found: writing MPEG-4 Part 2 with OpenCV instead of H.264")
            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), fps, self.size)
            if not self._cv.isOpened():
                raise FaceTrackError(f"cannot create video file {self.path}")

    def write(self, frame: Frame) -> None:
        """Append one ``(H, W, 3) uint8`` BGR frame (cropped to an even size)."""
        w, h = self.size
        frame = frame[:h, :w]
        if self._proc is not None:
            stdin: IO[bytes] | None = self._proc.stdin
            if stdin is None:
                raise FaceTrackError("ffmpeg pipe closed")
            try:
                stdin.write(frame.tobytes())
            except BrokenPipeError:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise FaceTrackError(f"ffmpeg failed writing {self.path}: {err.strip()}") from None
        elif self._cv is not None:
            self._cv.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (waits for the encoder)."""
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()
            rc = self._proc.wait()
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            self._proc = None
            if rc != 0:
                raise FaceTrackError(f"ffmpeg exited with {rc} writing {self.path}: {err.strip()}")
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
