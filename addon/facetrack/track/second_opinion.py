"""The second opinion on grey-zone matches: dlib's descriptor of the probe vs the person's gallery.

See :mod:`facetrack.matching` for when it is asked and the distances it must meet. The probe's
descriptor is computed from the frame and the detector's box (dlib aligns its own chip); the
person's descriptors were stored with each enrolment (``FaceLibrary.second_descriptors``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import numpy as np

from facetrack.inference.base import FloatArray, Frame, InferenceUnavailableError
from facetrack.inference.dlib_resnet import distances, shared

if TYPE_CHECKING:
    from facetrack.library import FaceLibrary

_LOG = logging.getLogger(__name__)


class Descriptor(Protocol):
    """What the second opinion needs of a descriptor model (:class:`DlibResNet`)."""

    def describe(self, image_bgr: Frame, boxes: FloatArray) -> FloatArray: ...


class SecondOpinion:
    """Distances from a probe face to one person's second-model descriptors.

    Args:
        library: the face library (its ``second_descriptors(person_id)``).
        model: the descriptor model; by default the process-wide dlib ResNet, loaded on first use.
    """

    def __init__(self, library: FaceLibrary, model: Descriptor | None = None) -> None:
        self.library = library
        self.model: Descriptor = model if model is not None else shared()
        self._disabled: str | None = None
        self.calls = 0

    @property
    def disabled(self) -> str | None:
        """Why the second opinion is off (the model cannot load), or ``None``."""
        return self._disabled

    def gallery(self, person_id: str) -> FloatArray:
        """``(M, 128) float32`` descriptors of ``person_id`` (``M`` may be 0)."""
        getter = getattr(self.library, "second_descriptors", None)
        if getter is None:
            return np.zeros((0, 128), dtype=np.float32)
        return np.asarray(getter(person_id), dtype=np.float32)

    def distance(self, image_bgr: Frame, box: FloatArray, person_id: str) -> float | None:
        """Smallest distance from the face at ``box`` (pixels of ``image_bgr``) to the person.

        Returns:
            The distance, or ``None`` when no opinion can be given: the person has no stored
            descriptors (enrolled before descriptors were kept) or the model cannot load (logged
            once; the second opinion then stays off).
        """
        if self._disabled is not None:
            return None
        gallery = self.gallery(person_id)
        if gallery.shape[0] == 0:
            return None
        try:
            probe = self.model.describe(image_bgr, np.asarray(box, dtype=np.float32).reshape(1, 4))[0]
        except InferenceUnavailableError as err:
            self._disabled = str(err)
            _LOG.warning("second opinion off: %s", err)
            return None
        self.calls += 1
        return float(distances(probe, gallery).min())
