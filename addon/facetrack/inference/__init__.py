"""Inference backends: face detection (box, score, 5 landmarks) and face embedding.

One implementation per backend behind :class:`InferenceBackend`; :func:`create_backend`
picks one from the configuration.
"""

from facetrack.inference.base import Detection, InferenceBackend
from facetrack.inference.factory import backend_from_config, create_backend

__all__ = ["Detection", "InferenceBackend", "backend_from_config", "create_backend"]
