"""``CameraRunner.run_forever``: a file that ends replays without going ``offline``; a live source
that drops, a file that fails and a file without frames are still reported ``offline``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.camera import runner as runner_module
from facetrack.camera.runner import CameraRunner, CameraStatus, FrameSink
from facetrack.config import parse_config
from facetrack.inference.base import Detection, FloatArray, Frame, InferenceBackend
from facetrack.library import FaceLibrary

D = 8


class NoFaces(InferenceBackend):
    """Finds no face (the runner's loop is what is tested, not the tracker)."""

    model_id = "none"
    embedding_dim = D

    def detect(self, frame_bgr: Frame) -> list[Detection]:
        return []

    def embed(self, frame_bgr: Frame, detections: Sequence[Detection]) -> FloatArray:
        return np.zeros((len(detections), D), np.float32)

    def aligned_crop(self, frame_bgr: Frame, detection: Detection) -> Frame:
        return np.zeros((112, 112, 3), np.uint8)


@dataclass
class States(FrameSink):
    """Records each state change and counts the passes (``opened``)."""

    seen: list[tuple[str, str | None]] = field(default_factory=list)
    passes: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def opened(self, source: object, rate: float) -> None:
        with self.changed:
            self.passes += 1
            self.changed.notify_all()

    def state_changed(self, status: CameraStatus) -> None:
        with self.changed:
            self.seen.append((status.state, status.error))
            self.changed.notify_all()

    def wait(self, passes: int = 0, states: int = 0, timeout: float = 30.0) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: self.passes >= passes and len(self.seen) >= states, timeout)
        assert ok, (self.passes, self.seen)


def _clip(path: Path, frames: int = 8, fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def _runner(tmp_path: Path, source: str, states: States) -> tuple[CameraRunner, threading.Thread]:
    lib = FaceLibrary(tmp_path / "db", NoFaces.model_id, D)
    runner = CameraRunner("door", source, NoFaces(), lib, parse_config({}), [states], reconnect_max_seconds=2.0)
    worker = threading.Thread(target=runner.run_forever, daemon=True)
    worker.start()
    return runner, worker


def _stop(runner: CameraRunner, worker: threading.Thread) -> None:
    runner.stop.set()
    worker.join(30)
    assert not worker.is_alive()


def test_a_file_that_ends_replays_without_going_offline(tmp_path: Path) -> None:
    states = States()
    clip = str(_clip(tmp_path / "clip.avi"))
    # Timed from before the thread starts: Thread.start() may return after its first pass began.
    started = time.monotonic()
    runner, worker = _runner(tmp_path, clip, states)
    states.wait(passes=3)
    took = time.monotonic() - started
    _stop(runner, worker)
    assert states.seen == [("online", None), ("offline", None)]  # offline only once stopped
    assert took >= 2 * runner_module.MIN_REPLAY_SECONDS  # an 8-frame file does not spin


@dataclass
class FakeSource:
    """A source of ``frames`` black frames that ends, live or not, with ``error`` or not."""

    live: bool
    frames_left: int = 3
    error: str | None = None
    uri: str = "fake"
    fps: float = 25.0
    frame_count: int | None = None
    width: int = 64
    height: int = 48
    corrupt_frames: int = 0

    def frames(
        self, keep: Callable[[float], bool] | None = None, picture: Callable[[float], bool] | None = None
    ) -> Iterator[tuple[int, float, Frame | None]]:
        for i in range(self.frames_left):
            if keep is None or keep(i / self.fps):
                yield i, i / self.fps, np.zeros((48, 64, 3), np.uint8)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (FakeSource(live=True), "source ended"),  # a stream that dropped
        (FakeSource(live=True, error="no video within 20 s"), "no video within 20 s"),
        (FakeSource(live=False, error="read failed"), "read failed"),  # a file that failed
        (FakeSource(live=False, frames_left=0), "source ended"),  # a file without a frame
    ],
    ids=["live-dropped", "live-timeout", "file-failed", "file-empty"],
)
def test_a_source_that_drops_or_fails_is_reported_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: FakeSource, error: str
) -> None:
    monkeypatch.setattr(runner_module, "open_source", lambda *args, **kwargs: source)
    states = States()
    runner, worker = _runner(tmp_path, "fake", states)
    states.wait(passes=2, states=3)  # online, offline, online again after the retry delay
    _stop(runner, worker)
    assert states.seen[:3] == [("online", None), ("offline", error), ("online", None)]
