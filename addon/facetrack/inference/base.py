"""The inference interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Sequence

from facetrack.errors import FaceTrackError

FloatArray = npt.NDArray[np.float32]
Frame = npt.NDArray[np.uint8]


class InferenceUnavailableError(FaceTrackError):
    """A model, runtime, device or inference host the configuration names cannot be used.

    Raised by a backend when it (lazily) loads its models; the message says what is missing and
    what to do. Every frame would fail the same way, so a camera reports it in its MQTT ``state``
    (``error``) and retries later instead of counting failed frames.
    """


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(4,) float32`` ``x1, y1, x2, y2`` in pixels of the frame passed to ``detect``.
        score: detector confidence in ``[0, 1]``.
        landmarks: ``(5, 2) float32`` pixel coordinates, in the order right eye, left eye,
            nose tip, right mouth corner, left mouth corner (subject's right/left, as YuNet and
            ArcFace's 5-point template use).
    """

    box: FloatArray
    score: float
    landmarks: FloatArray

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """Shorter side of the box in pixels (the usual "face size" of face filters)."""
        return min(self.width, self.height)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict: ``bbox`` (xyxy pixels, 1 decimal), ``score``, ``landmarks``."""
        return {
            "bbox": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
        }


class InferenceBackend(ABC):
    """Face detection and embedding on BGR frames.

    Implementations must be usable from one thread at a time; the engine creates one
    backend per camera.
    """

    #: Name of the embedding model; a face library is bound to exactly one (e.g. ``sface_2021dec``).
    model_id: str
    #: Embedding dimension ``D``.
    embedding_dim: int

    @abstractmethod
    def detect(self, frame_bgr: Frame) -> list[Detection]:
        """Detect faces.

        Args:
            frame_bgr: ``(H, W, 3) uint8`` BGR image.

        Returns:
            Detections sorted by descending score, boxes clipped to the frame.

        Raises:
            ValueError: ``frame_bgr`` is not an ``(H, W, 3) uint8`` array.
        """

    @abstractmethod
    def embed(self, frame_bgr: Frame, detections: Sequence[Detection]) -> FloatArray:
        """Align each face on its 5 landmarks and compute its embedding.

        Args:
            frame_bgr: ``(H, W, 3) uint8`` BGR image the detections came from.
            detections: faces to embed.

        Returns:
            ``(N, D) float32``, each row L2-normalised (cosine similarity is a dot product).
        """

    @abstractmethod
    def aligned_crop(self, frame_bgr: Frame, detection: Detection) -> Frame:
        """The aligned face crop the embedding is computed from: ``(S, S, 3) uint8`` BGR."""


def check_frame(frame_bgr: Any) -> Frame:
    """Validate a frame: ``(H, W, 3) uint8``; raise ``ValueError`` otherwise."""
    if (
        not isinstance(frame_bgr, np.ndarray)
        or frame_bgr.dtype != np.uint8
        or frame_bgr.ndim != 3
        or frame_bgr.shape[2] != 3
        or frame_bgr.shape[0] < 2
        or frame_bgr.shape[1] < 2
    ):
        shape = getattr(frame_bgr, "shape", None)
        dtype = getattr(frame_bgr, "dtype", None)
        raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got shape={shape} dtype={dtype}")
    return frame_bgr


def l2_normalise(x: npt.NDArray[Any]) -> FloatArray:
    """Row-wise L2 normalisation of a ``(N, D)`` array to ``float32``; zero rows stay zero."""
    arr: FloatArray = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: FloatArray = (arr / np.maximum(norms, 1e-12)).astype(np.float32)
    return out
