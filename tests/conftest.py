"""Shared fixtures: real data from ../shared, one inference backend per session."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from facetrack.config import FaceTrackerConfig, parse_config
from facetrack.inference import InferenceBackend, backend_from_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared")).resolve()
DATA = SHARED / "data"
VIDEO = DATA / "facenet_pytorch" / "examples" / "video.mp4"
#: Inference backends the identification and tracking tests run on (``degirum``: the bundled
#: YuNet + SFace zoo through DeGirum's ONNX/CPU runtime, the code path Hailo uses).
BACKENDS = ("opencv", "degirum")


def _require_shared() -> None:
    if not (DATA / "labels.csv").exists():
        pytest.fail(f"shared test data not found at {DATA} (set FACETRACK_SHARED)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``: real labelled photos and clips."""
    _require_shared()
    return DATA


@pytest.fixture(scope="session")
def video_path() -> Path:
    """The multi-face tracking clip (1920x1080, 25 fps, 105 frames)."""
    _require_shared()
    return VIDEO


@pytest.fixture(scope="session")
def labels(data_dir: Path) -> list[dict[str, str]]:
    """Rows of ``labels.csv`` without derived copies / duplicates (non-empty ``note``)."""
    with (data_dir / "labels.csv").open(newline="") as f:
        return [r for r in csv.DictReader(f) if not r["note"]]


@pytest.fixture(scope="session")
def config() -> FaceTrackerConfig:
    """The default configuration."""
    return parse_config({})


@pytest.fixture(scope="session")
def backend_factory(config: FaceTrackerConfig) -> Callable[[str], InferenceBackend]:
    """``factory(name)``: the session's backend of that name (models load once per backend)."""
    cache: dict[str, InferenceBackend] = {}

    def factory(name: str) -> InferenceBackend:
        if name not in cache:
            cache[name] = backend_from_config(parse_config({"backend": name}))
        return cache[name]

    return factory


@pytest.fixture(scope="session")
def backend(backend_factory: Callable[[str], InferenceBackend]) -> InferenceBackend:
    """The default OpenCV backend, shared by the session (models load once)."""
    return backend_factory("opencv")
