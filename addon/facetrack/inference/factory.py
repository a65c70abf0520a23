"""Picking the inference backend a configuration names (one implementation module per backend,
imported only when chosen: the DeGirum PySDK is never loaded for the OpenCV default)."""

from __future__ import annotations

from typing import Any

from facetrack.inference.base import InferenceBackend


def backend_from_config(config: Any) -> InferenceBackend:
    """The backend a :class:`~facetrack.config.FaceTrackerConfig` names, with its detector settings."""
    extra: dict[str, Any] = {}
    if config.backend == "degirum":
        extra["options"] = dict(getattr(config, "degirum", None) or {})
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
