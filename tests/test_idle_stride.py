"""An idle camera converts and processes only every ``IDLE_STRIDE``-th frame while nothing moves
and nothing is tracked; the sinks still get every frame (the previous picture again), and a
frame that moves is processed at most one frame after the motion began."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.camera import runner as runner_module
from facetrack.camera.runner import CameraRunner, FrameSink, ProcessedFrame
from facetrack.config import parse_config
from facetrack.inference.base import Detection, FloatArray, Frame, InferenceBackend
from facetrack.library import FaceLibrary

D = 8
W, H = 320, 240


class CountingNoFaces(InferenceBackend):
    """Finds no face; counts the frames the detector was run on."""

    model_id = "none"
    embedding_dim = D

    def __init__(self) -> None:
        self.detected = 0

    def detect(self, frame_bgr: Frame) -> list[Detection]:
        self.detected += 1
        return []

    def embed(self, frame_bgr: Frame, detections: Sequence[Detection]) -> FloatArray:
        return np.zeros((len(detections), D), np.float32)

    def aligned_crop(self, frame_bgr: Frame, detection: Detection) -> Frame:
        return np.zeros((112, 112, 3), np.uint8)


class Frames(FrameSink):
    def __init__(self) -> None:
        self.got: list[ProcessedFrame] = []

    def frame(self, f: ProcessedFrame) -> None:
        self.got.append(f)


def _clip(path: Path, moving_from: int, frames: int = 60) -> Path:
    """A still noisy scene; from ``moving_from`` on, a bright square slides across it."""
    rng = np.random.default_rng(5)
    scene = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(frames):
        f = np.clip(scene + rng.normal(0, 2.0, scene.shape), 0, 255).astype(np.uint8)
        if i >= moving_from:
            x = 10 + 8 * (i - moving_from)
            f[80:140, x : x + 60] = 255
        writer.write(f)
    writer.release()
    return path


def _run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: Path, **config: object
) -> tuple[list[ProcessedFrame], int, int]:
    backend = CountingNoFaces()
    lib = FaceLibrary(tmp_path / "db", backend.model_id, D)
    sink = Frames()
    runner = CameraRunner("door", str(clip), backend, lib, parse_config(config), [sink])
    processed: list[int] = []
    original = runner_module.FaceTracker.process

    def counting(self, frame_bgr, frame_index, ts):  # type: ignore[no-untyped-def]
        processed.append(frame_index)
        return original(self, frame_bgr, frame_index, ts)

    monkeypatch.setattr(runner_module.FaceTracker, "process", counting)
    summary = runner.run()
    assert summary.frames == len(sink.got)
    return sink.got, len(processed), backend.detected


def test_a_still_camera_processes_every_other_frame_and_the_sinks_get_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner_module.IDLE_STRIDE == 2
    clip = _clip(tmp_path / "still.avi", moving_from=10**6)
    got, processed, detected = _run(tmp_path, monkeypatch, clip)
    assert [f.index for f in got] == list(range(60))  # every frame reaches the sinks, in order
    assert [f.ts for f in got] == [i / 10 for i in range(60)]
    # Frames 0 and 1 are processed (the first counts as moving); then every other one.
    assert 30 <= processed <= 32, processed
    # A frame not processed shows the picture of the frame before it, still, without faces or events.
    repeats = [f for f in got[1:] if f.frame is got[f.index - 1].frame]
    assert len(repeats) == 60 - processed
    assert all(f.result.still and not f.result.detected and not f.result.faces and not f.result.events for f in repeats)
    assert [f.index for f in repeats] == list(range(3, 60, 2))
    assert detected == 1  # nothing moved after the first look: no periodic detection within 6 s


def test_motion_is_processed_at_most_one_frame_late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = _clip(tmp_path / "moves.avi", moving_from=31)
    got, _, _ = _run(tmp_path, monkeypatch, clip)
    first = next(f.index for f in got if f.result.detected and f.index >= 31)
    assert first in (31, 32), first
    assert all(not f.result.still for f in got[33:])  # the square keeps moving: every frame processed


def test_without_the_motion_gate_every_frame_is_processed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = _clip(tmp_path / "still.avi", moving_from=10**6, frames=20)
    got, processed, detected = _run(tmp_path, monkeypatch, clip, motion_gate=False)
    assert len(got) == processed == detected == 20
