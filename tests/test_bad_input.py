"""Bad input: each a clear error, nothing written, nothing crashes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facetrack.camera import open_source
from facetrack.config import FaceTrackerConfig
from facetrack.errors import ImageReadError, ModelMismatchError, VideoSourceError
from facetrack.images import decode_image, read_image
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.pipeline import run_pipeline
from facetrack.track import FaceTracker


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "facetrack", *args], capture_output=True, text=True, timeout=120)


def test_unreadable_and_non_images(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)
    text = tmp_path / "x.jpg"
    text.write_text("not really a jpeg")
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(text)
    with pytest.raises(ImageReadError, match="empty"):
        decode_image(b"")
    truncated = tmp_path / "t.jpg"
    import cv2

    _, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    truncated.write_bytes(bytes(buf)[:20])
    with pytest.raises(ImageReadError):
        read_image(truncated)


def test_missing_and_corrupt_video(tmp_path: Path, video_path: Path) -> None:
    with pytest.raises(VideoSourceError, match="not found"):
        open_source(str(tmp_path / "missing.mp4"))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoSourceError):
        open_source(str(corrupt))
    # A real file cut in half still yields its first frames and ends cleanly.
    half = tmp_path / "half.mp4"
    half.write_bytes(video_path.read_bytes()[: video_path.stat().st_size // 2])
    try:
        with open_source(str(half)) as v:
            n = sum(1 for _ in v.frames())
    except VideoSourceError:
        n = -1  # moov atom at the end: unopenable is also a clear outcome
    assert n == -1 or 0 < n < 105


def test_cli_errors_are_json_and_exit_nonzero(tmp_path: Path) -> None:
    proc = run_cli("track", "--db", str(tmp_path / "db"), "--source", str(tmp_path / "missing.mp4"))
    assert proc.returncode == 1
    assert "not found" in json.loads(proc.stdout.strip().splitlines()[-1])["error"]
    assert "not found" in proc.stderr
    proc = run_cli("verify", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"))
    assert proc.returncode == 1 and "no such file" in json.loads(proc.stdout)["error"]
    bad_cfg = tmp_path / "c.yaml"
    bad_cfg.write_text("credence_cont: 3\n")
    proc = run_cli("persons", "--db", str(tmp_path / "db"), "--config", str(bad_cfg))
    assert proc.returncode == 1 and "unknown key 'credence_cont'" in proc.stdout


def test_library_of_another_model_writes_nothing(tmp_path: Path, backend: InferenceBackend, data_dir: Path) -> None:
    db = tmp_path / "db"
    other = FaceLibrary(db, "arcface_mobilefacenet_hailo", 512)
    e = np.ones((1, 512), np.float32) / np.sqrt(512)
    other.enroll("Anna", e, [b""], ["x"])
    before = sorted(p.relative_to(db) for p in db.rglob("*"))
    with pytest.raises(ModelMismatchError):
        FaceLibrary(db, backend.model_id, backend.embedding_dim)
    img = data_dir / "deepface/tests/unit/dataset/img1.jpg"
    proc = run_cli("enroll", "--db", str(db), "--name", "Bob", str(img))
    assert proc.returncode == 1 and "arcface_mobilefacenet_hailo" in json.loads(proc.stdout)["error"]
    assert sorted(p.relative_to(db) for p in db.rglob("*")) == before


def test_corrupt_frames_never_stop_the_loop(
    tmp_path: Path, backend: InferenceBackend, config: FaceTrackerConfig
) -> None:
    lib = FaceLibrary(tmp_path / "db", backend.model_id, backend.embedding_dim)
    tracker = FaceTracker(backend, lib, config)
    with pytest.raises(ValueError, match="uint8"):
        tracker.process(np.zeros((10, 10), np.float32), 0, 0.0)  # type: ignore[arg-type]
    # The tracker is still usable after the bad frame.
    assert tracker.process(np.zeros((240, 320, 3), np.uint8), 1, 0.04).events == []


def test_pipeline_skips_a_failing_frame(
    tmp_path: Path,
    backend: InferenceBackend,
    config: FaceTrackerConfig,
    video_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lib = FaceLibrary(tmp_path / "db", backend.model_id, backend.embedding_dim)
    original = FaceTracker.process

    def flaky(self: FaceTracker, frame: np.ndarray, index: int, ts: float):
        if index == 5:
            raise RuntimeError("decoder hiccup")
        return original(self, frame, index, ts)

    monkeypatch.setattr(FaceTracker, "process", flaky)
    summary = run_pipeline(str(video_path), backend, lib, config, on_event=lambda e: None, max_frames=12)
    assert summary.failed_frames == 1 and summary.frames == 12  # max_frames counts processed frames
