"""Writing BGR frames to an H.264 MP4 through ffmpeg (OpenCV's ``mp4v`` if ffmpeg is absent)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from facetrack.errors import FaceTrackError
from facetrack.inference.base import Frame

_LOG = logging.getLogger(__name__)


class VideoWriter:
    """Encodes frames of one fixed size to ``path``.

    H.264 (libx264, yuv420p, ``+faststart``) when ``ffmpeg`` is on the PATH, so the file plays
    in browsers and Home Assistant; otherwise MPEG-4 Part 2 through OpenCV.

    Args:
        path: the MP4 file to write.
        width, height: frame size in pixels (cropped to even numbers for yuv420p).
        fps: frame rate (frames/s).
        crf: libx264 quality (lower is better; 23 is libx264's default).
        fragmented: write a fragmented MP4 as the frames come (a fragment at each keyframe and
            at least every second, flushed at once) instead of a ``+faststart`` one: if the
            process is killed, every fragment written so far stays playable. ffmpeg only.
        keep_fds: file descriptors the ffmpeg process inherits (a lock it holds until it exits).

    Raises:
        FaceTrackError: the output cannot be created.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        crf: int = 23,
        *,
        fragmented: bool = False,
        keep_fds: Sequence[int] = (),
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width - width % 2, height - height % 2)  # yuv420p needs even sizes
        self.frames = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._cv: cv2.VideoWriter | None = None
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            if fragmented:
                # frag_duration is in microseconds; flush_packets writes each fragment out at once
                # instead of holding it in ffmpeg's 32 KB output buffer.
                mux = ["-movflags", "+frag_keyframe+empty_moov+default_base_moof",
                       "-frag_duration", "1000000", "-flush_packets", "1"]  # fmt: skip
            else:
                mux = ["-movflags", "+faststart"]
            cmd = [
                ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.size[0]}x{self.size[1]}",
                "-r", f"{fps:.3f}", "-i", "pipe:0",
                # zerolatency (no lookahead, no B-frames) and 2 threads: ~110 MB per 1080p
                # encoder instead of ~280 MB, since a camera may run several clip encoders at once.
                "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                "-tune", "zerolatency", "-threads", "2",
                "-pix_fmt", "yuv420p", *mux, "-f", "mp4", str(self.path),
            ]  # fmt: skip
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=tuple(keep_fds))
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
            data = np.ascontiguousarray(frame)  # a view when the size is even: no copy
            stdin: IO[bytes] | None = self._proc.stdin
            if stdin is None:
                raise FaceTrackError("ffmpeg pipe closed")
            try:
                stdin.write(memoryview(data).cast("B"))
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


def salvage_mp4(path: Path, max_frames: int | None = None, timeout: float = 120.0) -> int:
    """Turn what a killed encoder left (a fragmented MP4 cut anywhere) into a whole MP4, in place.

    The complete fragments are remuxed without re-encoding (ffmpeg ``-c copy``, ``+faststart``);
    a cut last fragment is dropped. The frames of the result are then counted by decoding them
    (OpenCV), so a file that does not play counts 0.

    Args:
        path: the MP4 file; replaced by the salvaged one, or removed if nothing plays.
        max_frames: keep at most this many frames (the first ones).
        timeout: seconds allowed to ffmpeg.

    Returns:
        Frames in the file now (0: nothing playable, ``path`` removed).
    """
    ffmpeg = shutil.which("ffmpeg")
    if not path.is_file() or path.stat().st_size == 0:
        path.unlink(missing_ok=True)
        return 0
    if ffmpeg:
        fixed = path.with_name(f".{path.name}.salvaged.mp4")
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(path),
               "-map", "0:v:0", "-c", "copy", *(["-frames:v", str(max_frames)] if max_frames is not None else []),
               "-movflags", "+faststart", "-f", "mp4", str(fixed)]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            done = None
        if done is not None and done.returncode == 0 and fixed.is_file() and fixed.stat().st_size > 0:
            fixed.replace(path)
        else:
            fixed.unlink(missing_ok=True)
            why = done.stderr.decode(errors="replace").strip() if done is not None else "timed out"
            _LOG.warning("cannot remux %s: %s", path, why)
    frames = count_frames(path)
    if frames == 0:
        path.unlink(missing_ok=True)
    return frames


def count_frames(path: Path) -> int:
    """Frames of ``path`` that decode (OpenCV); 0 for a missing or unreadable file."""
    cap = cv2.VideoCapture(str(path))
    try:
        n = 0
        while cap.isOpened() and cap.grab():
            n += 1
        return n
    finally:
        cap.release()
