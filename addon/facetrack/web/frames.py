"""The latest annotated frame of every camera, JPEG-encoded lazily for the HTTP server.

Camera threads call :meth:`FrameHub.publish` on every frame. That only swaps a reference under a
lock (no copy, no drawing, no JPEG encoding), so the live stream costs nothing when nobody
watches. Drawing and encoding happen in :meth:`FrameHub.latest_jpeg`, called by the HTTP server
for a snapshot or an MJPEG part: at most once per published frame, cached and shared by every
viewer.

Thread safety: one ``threading.Condition`` guards the state; blocking waits
(:meth:`FrameHub.wait_new`) use it, and asyncio waiters (:meth:`FrameHub.wait_new_async`) are
woken through ``loop.call_soon_threadsafe`` by the publishing thread, so an MJPEG handler never
ties up a thread while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from facetrack.annotate import draw_faces
from facetrack.camera.runner import FrameSink, ProcessedFrame
from facetrack.images import encode_jpeg

_LOG = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
DrawFn = Callable[[Image], Image]


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A JPEG of one published frame."""

    seq: int
    """The frame's sequence number (1, 2, ... per camera)."""
    jpeg: bytes
    width: int
    height: int
    published_at: float
    """``time.monotonic()`` when the frame was published."""


@dataclass(slots=True)
class _Slot:
    """One camera's state; guarded by ``FrameHub._cond`` except ``encode_lock``."""

    frame: Image | None = None
    draw: DrawFn | None = None
    seq: int = 0
    published_at: float = 0.0
    cached: EncodedFrame | None = None
    watchers: int = 0
    encodes: int = 0
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(default_factory=list)
    encode_lock: threading.Lock = field(default_factory=threading.Lock)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FrameHub:
    """Per camera, the latest frame (by reference) and its cached JPEG."""

    def __init__(self, jpeg_quality: int = 80, max_width: int | None = None) -> None:
        """``jpeg_quality`` 1-100; ``max_width``: downscale wider frames before encoding (None: keep)."""
        if not 1 <= jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be 1-100")
        if max_width is not None and max_width < 16:
            raise ValueError("max_width must be at least 16")
        self._quality = jpeg_quality
        self._max_width = max_width
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot] = {}

    # -- camera side ------------------------------------------------------------------------

    def register(self, camera: str) -> None:
        """Make ``camera`` known before its first frame (its stream then waits instead of 404)."""
        with self._cond:
            self._slots.setdefault(camera, _Slot())

    def remove(self, camera: str) -> None:
        """Forget ``camera`` and release its frame; its waiters are woken."""
        with self._cond:
            slot = self._slots.pop(camera, None)
            if slot is not None:
                self._wake_locked(slot)
            self._cond.notify_all()

    def publish(self, camera: str, frame_bgr: Image, draw: DrawFn | None = None) -> None:
        """Make ``frame_bgr`` the camera's latest frame. Cheap: it only keeps a reference.

        The hub keeps ``frame_bgr`` until the next publish and never modifies it, so the caller must
        not modify it afterwards either (publish a new array per frame, as the video sources
        produce; if you draw on the frame in place for a recording, publish it *after* drawing with
        ``draw=None``). ``draw``, if given, is called later, only when someone wants the picture, on
        a private copy of the frame, and returns the annotated image; it must capture what it draws
        (e.g. a list of the frame's faces) rather than read state that changes later.
        """
        now = time.monotonic()
        with self._cond:
            slot = self._slots.get(camera)
            if slot is None:
                slot = self._slots[camera] = _Slot()
            slot.frame = frame_bgr
            slot.draw = draw
            slot.seq += 1
            slot.published_at = now
            if slot.waiters:
                self._wake_locked(slot)
            self._cond.notify_all()

    # -- viewer side ------------------------------------------------------------------------

    def cameras(self) -> list[str]:
        """Known cameras (registered or having published), sorted."""
        with self._cond:
            return sorted(self._slots)

    def has_camera(self, camera: str) -> bool:
        """Whether ``camera`` is known."""
        with self._cond:
            return camera in self._slots

    def seq(self, camera: str) -> int:
        """The sequence number of the camera's latest frame (0: none yet or unknown camera)."""
        with self._cond:
            slot = self._slots.get(camera)
            return slot.seq if slot is not None else 0

    def latest_jpeg(self, camera: str, max_age_s: float | None = None) -> EncodedFrame | None:
        """The latest frame, annotated and JPEG-encoded (encoded once per frame, then cached).

        None if the camera is unknown, has no frame yet, its latest frame is older than
        ``max_age_s`` seconds, or encoding failed. Blocking (drawing + encoding takes milliseconds):
        call it from a worker thread, not from an event loop.
        """
        with self._cond:
            slot = self._slots.get(camera)
            if slot is None or slot.frame is None:
                return None
            if max_age_s is not None and time.monotonic() - slot.published_at > max_age_s:
                return None
            if slot.cached is not None and slot.cached.seq == slot.seq:
                return slot.cached
        return self._encode_latest(slot)

    def _encode_latest(self, slot: _Slot) -> EncodedFrame | None:
        # One encoder per camera at a time: concurrent viewers wait for it and share its result.
        with slot.encode_lock:
            with self._cond:
                if slot.frame is None or (slot.cached is not None and slot.cached.seq == slot.seq):
                    return slot.cached if slot.frame is not None else None
                frame, draw, seq, published_at = slot.frame, slot.draw, slot.seq, slot.published_at
            encoded = self._encode(frame, draw, seq, published_at)
            if encoded is not None:
                with self._cond:
                    slot.encodes += 1
                    if slot.cached is None or slot.cached.seq < encoded.seq:
                        slot.cached = encoded
            return encoded

    def _encode(self, frame: Image, draw: DrawFn | None, seq: int, published_at: float) -> EncodedFrame | None:
        try:
            image = frame
            if draw is not None:
                try:
                    image = draw(frame.copy())
                except Exception:
                    _LOG.exception("drawing on a frame failed; serving it unannotated")
                    image = frame
            if self._max_width is not None and image.shape[1] > self._max_width:
                height = max(1, round(image.shape[0] * self._max_width / image.shape[1]))
                image = cast(Image, cv2.resize(image, (self._max_width, height), interpolation=cv2.INTER_AREA))
            jpeg = encode_jpeg(image, self._quality)
        except (cv2.error, ValueError, TypeError, AttributeError, IndexError):
            _LOG.warning("could not encode a frame as JPEG", exc_info=True)
            return None
        return EncodedFrame(seq, jpeg, int(image.shape[1]), int(image.shape[0]), published_at)

    def encode_count(self, camera: str | None = None) -> int:
        """JPEG encodings done so far, for ``camera`` or for all cameras."""
        with self._cond:
            if camera is not None:
                slot = self._slots.get(camera)
                return slot.encodes if slot is not None else 0
            return sum(s.encodes for s in self._slots.values())

    def watchers(self, camera: str) -> int:
        """Active MJPEG viewers of ``camera``."""
        with self._cond:
            slot = self._slots.get(camera)
            return slot.watchers if slot is not None else 0

    def add_watcher(self, camera: str) -> None:
        """Count one more viewer of ``camera`` (pair with :meth:`remove_watcher`)."""
        with self._cond:
            slot = self._slots.setdefault(camera, _Slot())
            slot.watchers += 1

    def remove_watcher(self, camera: str) -> None:
        """Count one viewer less."""
        with self._cond:
            slot = self._slots.get(camera)
            if slot is not None and slot.watchers > 0:
                slot.watchers -= 1

    @contextlib.contextmanager
    def watching(self, camera: str) -> Iterator[None]:
        """``with hub.watching(camera):`` counts a viewer for the duration of the block."""
        self.add_watcher(camera)
        try:
            yield
        finally:
            self.remove_watcher(camera)

    def wait_new(self, camera: str, after_seq: int, timeout: float) -> int | None:
        """Block until the camera has a frame newer than ``after_seq``; its seq, or None on timeout.

        Returns None at once if the camera is unknown.
        """

        def newer() -> bool:
            slot = self._slots.get(camera)
            return slot is None or slot.seq > after_seq

        with self._cond:
            if not self._cond.wait_for(newer, timeout=max(0.0, timeout)):
                return None
            slot = self._slots.get(camera)
            return slot.seq if slot is not None else None

    async def wait_new_async(self, camera: str, after_seq: int, timeout: float) -> int | None:
        """Like :meth:`wait_new` for a coroutine: waits without a thread and without polling.

        Also returns None (early) when :meth:`wake_all` is called.
        """
        loop = asyncio.get_running_loop()
        with self._cond:
            slot = self._slots.get(camera)
            if slot is None:
                return None
            if slot.seq > after_seq:
                return slot.seq
            fut: asyncio.Future[None] = loop.create_future()
            entry = (loop, fut)
            slot.waiters.append(entry)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout=max(0.0, timeout))
        finally:
            with self._cond:
                with contextlib.suppress(ValueError):
                    slot.waiters.remove(entry)
                seq = slot.seq
        return seq if seq > after_seq else None

    def wake_all(self) -> None:
        """Wake every waiter (blocking and asyncio), e.g. when the server stops."""
        with self._cond:
            for slot in self._slots.values():
                self._wake_locked(slot)
            self._cond.notify_all()

    @staticmethod
    def _wake_locked(slot: _Slot) -> None:
        for loop, fut in slot.waiters:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to wake
                loop.call_soon_threadsafe(_wake, fut)
        slot.waiters.clear()


class FrameHubSink(FrameSink):
    """Hands a camera's processed frames to the :class:`FrameHub` (the live stream and snapshot):
    a reference and a drawing function, so a frame nobody watches is never drawn or encoded."""

    def __init__(self, hub: FrameHub, camera: str) -> None:
        self.hub = hub
        self.camera = camera

    def frame(self, f: ProcessedFrame) -> None:
        self.hub.publish(self.camera, f.frame, partial(draw_faces, faces=f.result.faces))
