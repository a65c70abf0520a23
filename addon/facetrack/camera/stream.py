"""Network streams (``rtsp://``, ``http(s)://``, ...) decoded by one ``ffmpeg`` child process each.

Why a process and not OpenCV: OpenCV's FFmpeg backend opens every capture under one process-wide
mutex (``CvCapture_FFMPEG::open`` in ``cap_ffmpeg_impl.hpp``; measured with OpenCV 4.14: a file
open waited 29.6 s behind an ``rtsp://`` server that accepts and never answers, OpenCV's default
30 s open timeout), so one hanging camera stalls every other camera's (re)open, and a read blocked
inside FFmpeg cannot be abandoned on shutdown. Here each stream is its own ``ffmpeg`` process
writing raw BGR frames to a pipe: the engine waits on that pipe with a deadline (``poll``), checks
its stop event between short waits, and kills the process on close. Nothing is shared between
cameras, so a stuck camera costs only its own thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import shutil
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO

import numpy as np

from facetrack.errors import VideoSourceError
from facetrack.inference.base import Frame

_LOG = logging.getLogger(__name__)
#: Default seconds a stream may take to deliver its first frame (open) or the next one (read)
#: before it is given up and reopened. A camera answers RTSP in about a second; 20 s leaves room
#: for a slow one waking up while keeping a dead one from holding its camera for OpenCV's 30 s.
STREAM_TIMEOUT_SECONDS = 20.0
#: Granularity of the stop checks while waiting on ffmpeg (s): shutdown never waits longer.
_POLL_SECONDS = 0.2
#: Lines of ffmpeg's log kept to explain a failure.
_LOG_LINES = 20

_CREDENTIALS = re.compile(r"(?<=://)([^:/@\s]+):[^@\s]*@")
_SIZE = re.compile(r"\s(\d{2,5})x(\d{2,5})\b")  # "320x240"; not the "0x18524742" fourcc
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)\b")

#: Live ffmpeg processes, killed at interpreter exit if a worker never got to close its stream.
_LIVE: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``***``
    (camera URLs carry credentials; errors go to logs and the retained MQTT state)."""
    return _CREDENTIALS.sub(r"\1:***@", text)


class _StderrReader(threading.Thread):
    """Drains ffmpeg's log (so it never blocks on a full pipe), keeps its last lines and reads the
    output frame size and rate from the ``Output #0`` stream line."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(name="ffmpeg-log", daemon=True)
        self.pipe = pipe
        self.lines: deque[str] = deque(maxlen=_LOG_LINES)
        self.header = threading.Event()
        self.width = self.height = 0
        self.fps = 0.0

    def run(self) -> None:
        in_output = False
        pending = b""
        fd = self.pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            *complete, pending = re.split(rb"[\r\n]", pending + chunk)
            for raw in complete:
                line = raw.decode(errors="replace").rstrip()
                if not line:
                    continue
                self.lines.append(line)
                if line.startswith("Output #0"):
                    in_output = True
                elif in_output and not self.header.is_set() and "Video: rawvideo" in line:
                    self._parse(line)
        if pending.strip():
            self.lines.append(pending.decode(errors="replace").rstrip())

    def _parse(self, line: str) -> None:
        size = _SIZE.search(line)
        if size is None:
            return
        self.width, self.height = int(size.group(1)), int(size.group(2))
        fps = _FPS.search(line)
        self.fps = float(fps.group(1)) if fps else 0.0
        self.header.set()

    def reason(self, url: str) -> str | None:
        """ffmpeg's last log line (normally the error it exits with), credentials redacted and
        without the ``<url>: `` ffmpeg puts in front."""
        return redact(self.lines[-1]).removeprefix(f"{url}: ") if self.lines else None


def ffmpeg_command(ffmpeg: str, url: str, timeout: float) -> list[str]:
    """The ffmpeg command that decodes ``url``'s first video stream to raw BGR on stdout.

    ffmpeg's own socket timeout (``-timeout`` for RTSP, ``-rw_timeout`` otherwise; microseconds)
    is a few seconds longer than the engine's deadline: the engine's deadline decides, ffmpeg's
    only ends a process whose engine is gone (killed with ``-9``)."""
    us = str(int((timeout + 5.0) * 1e6))
    net = ["-rtsp_transport", "tcp", "-timeout", us] if url.lower().startswith("rtsp") else ["-rw_timeout", us]
    # TCP for RTSP: UDP packet loss smears frames on Wi-Fi cameras.
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", *net, "-i", url,
        "-map", "0:v:0", "-an", "-sn", "-dn", "-f", "rawvideo", "-pix_fmt", "bgr24", "-fps_mode", "passthrough",
        "pipe:1",
    ]  # fmt: skip


class StreamSource:
    """A network stream being decoded by its own ffmpeg process (see the module docstring).

    Attributes:
        uri: the URL, password redacted.
        fps: the stream's frame rate, frames/s (25 if it does not say).
        frame_count: always ``None`` (live).
        width / height: frame size, pixels (fixed at open).
        live: always True: timestamps are seconds since :meth:`frames` started.
        timeout: seconds without a frame after which the stream is given up.
        error: why :meth:`frames` ended (``None`` while running or when stopped).
    """

    frame_count: int | None = None
    live = True

    def __init__(
        self, uri: str, proc: subprocess.Popen[bytes], log: _StderrReader, timeout: float, stop: threading.Event | None
    ) -> None:
        self.uri = uri
        self.width, self.height = log.width, log.height
        self.fps = log.fps if 0.5 <= log.fps <= 240 else 25.0
        self.timeout = timeout
        self.corrupt_frames = 0
        self.error: str | None = None
        self._proc = proc
        self._log = log
        self._stop = stop

    def frames(
        self, keep: Callable[[float], bool] | None = None, picture: Callable[[float], bool] | None = None
    ) -> Iterator[tuple[int, float, Frame | None]]:
        """Yield ``(index, ts_seconds, frame_bgr)``: ``frame`` is ``(height, width, 3)`` uint8
        (a fresh array per frame), ``ts`` seconds since this call, ``index`` 0, 1, 2, ...
        ``keep(ts)`` false: that frame is read and dropped (its buffer is reused); ``picture(ts)``
        false (asked only of kept frames): it is yielded with ``None`` for its picture.

        Ends when ffmpeg ends (stream dropped: :attr:`error` says why), when no frame arrives
        within :attr:`timeout` seconds (:attr:`error` says so), or within ``0.2`` s of the stop
        event being set. Never raises for a bad stream."""
        size = self.width * self.height * 3
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        poller = select.poll()  # not select.select: descriptors above 1024 are fine
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        start = time.monotonic()
        index = 0
        buf = bytearray(size)
        while True:
            view = memoryview(buf)
            got = 0
            deadline = time.monotonic() + self.timeout
            while got < size:
                if self._stop is not None and self._stop.is_set():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    self.error = f"no frame from {self.uri} for {self.timeout:g} s"
                    _LOG.warning("%s; giving it up", self.error)
                    return
                if not poller.poll(int(min(left, _POLL_SECONDS) * 1000) + 1):
                    continue
                n = os.readv(fd, [view[got:]])
                if not n:  # ffmpeg ended: the end of the stream, or an error it logged last
                    try:
                        rc = self._proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:  # closed its output yet runs on: killed in close()
                        rc = -1
                    self._log.join(1.0)
                    why = "" if rc == 0 else f": {self._log.reason(self.uri) or f'ffmpeg exited with status {rc}'}"
                    self.error = f"stream {self.uri} ended{why}"
                    return
                got += n
            ts = time.monotonic() - start
            if keep is not None and not keep(ts):
                index += 1
                continue
            if picture is not None and not picture(ts):
                yield index, ts, None
                index += 1
                continue
            frame = np.frombuffer(buf, dtype=np.uint8).reshape(self.height, self.width, 3)
            buf = bytearray(size)
            yield index, ts, frame
            index += 1

    def close(self) -> None:
        """Kill the ffmpeg process (it holds nothing worth a graceful exit) and reap it."""
        _stop_process(self._proc, self._log)

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_process(proc: subprocess.Popen[bytes], log: _StderrReader) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # uninterruptible I/O: the kernel reaps it later
        _LOG.warning("ffmpeg (pid %d) did not exit after SIGKILL", proc.pid)
    if proc.stdout is not None:
        proc.stdout.close()
    log.join(1.0)  # ends at EOF, now that ffmpeg is gone
    if proc.stderr is not None and not log.is_alive():  # never close a descriptor still being read
        proc.stderr.close()
    _LIVE.discard(proc)


def open_stream(
    url: str, timeout: float = STREAM_TIMEOUT_SECONDS, stop: threading.Event | None = None, ffmpeg: str | None = None
) -> StreamSource:
    """Start decoding ``url`` and wait for its first frame.

    Args:
        url: any URL ffmpeg reads (``rtsp://``, ``http(s)://``, ``rtmp://``, ...).
        timeout: seconds to wait for the first frame (and later for each next one), > 0.
        stop: when set, the wait ends within 0.2 s (raises).
        ffmpeg: the ffmpeg executable (default: ``ffmpeg`` on ``PATH``).

    Raises:
        VideoSourceError: ffmpeg missing, the stream refused, unreadable or without video (the
            message carries ffmpeg's reason), no video within ``timeout``, or ``stop`` set.
            Credentials in ``url`` never appear in the message.
    """
    exe = ffmpeg or shutil.which("ffmpeg")
    shown = redact(url)
    if exe is None:
        raise VideoSourceError(f"cannot open {shown}: ffmpeg is not installed (network streams are read through it)")
    proc = subprocess.Popen(
        ffmpeg_command(exe, url, timeout), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        bufsize=0,
    )  # fmt: skip
    _LIVE.add(proc)
    assert proc.stderr is not None
    log = _StderrReader(proc.stderr)
    log.start()
    deadline = time.monotonic() + timeout
    reason: str | None = None
    while not log.header.wait(_POLL_SECONDS):
        if proc.poll() is not None:
            log.join(1.0)
            reason = log.reason(shown) or f"ffmpeg exited with status {proc.returncode}"
        elif stop is not None and stop.is_set():
            reason = "stopped while opening"
        elif time.monotonic() >= deadline:
            reason = f"no video within {timeout:g} s"
        if reason is not None:
            _stop_process(proc, log)
            raise VideoSourceError(f"cannot open video source {shown}: {reason}")
    source = StreamSource(shown, proc, log, timeout, stop)
    _LOG.info("opened %s: %dx%d @ %.2f fps (ffmpeg pid %d)", shown, source.width, source.height, source.fps, proc.pid)
    return source
