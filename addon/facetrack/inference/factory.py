"""Picking the inference backend a configuration names (one implementation module per backend,
imported only when chosen: the DeGirum PySDK is never loaded for the OpenCV default)."""

from __future__ import annotations

import os
from typing import Any

from facetrack.inference.base import InferenceBackend


def backend_from_config(config: Any, cameras: int = 1) -> InferenceBackend:
    """The backend a :class:`~facetrack.config.FaceTrackerConfig` names, with its detector settings.

    ``cameras``: how many cameras share the process. With at least one per core, OpenCV runs each
    network on one thread: the cameras' own threads keep the cores busy, and a forward pass split
    over 2 threads costs about 20 % more CPU (a busy 720p camera: 49 against 39-42 ms of CPU per
    frame, benchmarks/README.md "Capacity").
    """
    extra: dict[str, Any] = {}
    if config.backend == "degirum":
        extra["options"] = dict(getattr(config, "degirum", None) or {})
    elif cameras >= (os.cpu_count() or 1):
        extra["threads"] = 1
    return create_backend(
        config.backend,
        detector_input_size=config.detector_input_size,
        score_threshold=config.detection_score_threshold,
        nms_threshold=config.nms_threshold,
        **extra,
    )


def create_backend(backend: str = "opencv", **options: Any) -> InferenceBackend:
    """Instantiate the backend named ``backend`` (``"opencv"`` or ``"degirum"``) with its options.

    The ``degirum`` backend loads its models on first use; its errors
    (:class:`~facetrack.inference.degirum.InferenceUnavailableError`) say what is missing.

    Raises:
        ValueError: unknown backend name.
    """
    if backend == "opencv":
        from facetrack.inference.opencv import OpenCVBackend

        return OpenCVBackend(**options)
    if backend == "degirum":
        from facetrack.inference.degirum import DeGirumBackend

        return DeGirumBackend(**options)
    raise ValueError(f"unknown inference backend {backend!r}; available: 'opencv', 'degirum'")
