"""Second descriptors for enrolment: dlib's ResNet on the face's own box, or nothing without dlib.

Every enrolment stores, next to the SFace embedding, the descriptor of
:mod:`facetrack.inference.dlib_resnet` (the second opinion the tracker asks for borderline
matches). dlib is optional: when it is missing (or a model file is), enrolment goes on and stores
no second descriptor (a row of NaN for :meth:`facetrack.library.FaceLibrary.enroll`), and this is
logged once.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from facetrack.inference.base import FloatArray, Frame, InferenceUnavailableError
from facetrack.inference.dlib_resnet import DIM, DlibResNet, shared

_LOG = logging.getLogger(__name__)


class SecondDescriber:
    """Computes second descriptors, creating the dlib model on first use (thread-safe).

    Args:
        model: the model to use; ``None`` takes the process-wide one
            (:func:`facetrack.inference.dlib_resnet.shared`) when first needed.
    """

    def __init__(self, model: DlibResNet | None = None) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._unavailable = False

    @property
    def available(self) -> bool:
        """False once dlib turned out to be missing (no further attempt is made)."""
        return not self._unavailable

    def describe(self, image_bgr: Frame, boxes: FloatArray | list[list[float]]) -> FloatArray:
        """``(N, 128) float32`` descriptors of the faces at ``boxes`` (``(N, 4)`` ``x1, y1, x2, y2``
        pixels) in ``image_bgr`` (``(H, W, 3) uint8``); rows of NaN when dlib is unavailable."""
        arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        missing = np.full((arr.shape[0], DIM), np.nan, dtype=np.float32)
        if arr.shape[0] == 0 or self._unavailable:
            return missing
        with self._lock:
            if self._model is None:
                self._model = shared()
            model = self._model
        try:
            out: FloatArray = np.asarray(model.describe(image_bgr, arr), dtype=np.float32)
        except InferenceUnavailableError as err:
            if not self._unavailable:
                _LOG.warning(
                    "enrolment stores no second descriptor and grey-zone matches get no second opinion: %s", err
                )
            self._unavailable = True
            return missing
        return out

    def describe_one(self, image_bgr: Frame | None, box: FloatArray | None) -> FloatArray:
        """``(128,) float32`` descriptor of one face, NaN when there is no image, no box or no dlib."""
        if image_bgr is None or box is None:
            return np.full(DIM, np.nan, dtype=np.float32)
        row: FloatArray = self.describe(image_bgr, np.asarray(box, dtype=np.float32).reshape(1, 4))[0]
        return row
