"""The second opinion on grey-zone matches: dlib's descriptor of the probe vs the person's gallery.

See :mod:`facetrack.matching` for when it is asked and the distances it must meet. The probe's
descriptor is computed from the frame and the detector's box (dlib aligns its own chip on the
face's context crop) by the same :class:`~facetrack.library.second.SecondDescriber` enrolment
uses; the person's descriptors were stored with each enrolment
(``FaceLibrary.second_descriptors``).
"""

from __future__ import annotations

import numpy as np

from facetrack.inference.base import FloatArray, Frame
from facetrack.inference.dlib_resnet import distances
from facetrack.library import FaceLibrary
from facetrack.library.second import SecondDescriber


class SecondOpinion:
    """Distances from a probe face to one person's second-model descriptors.

    Args:
        library: the face library (its ``second_descriptors(person_id)``).
        describer: computes probe descriptors; by default one on the process-wide dlib model,
            loaded on first use.
    """

    def __init__(self, library: FaceLibrary, describer: SecondDescriber | None = None) -> None:
        self.library = library
        self.describer = describer if describer is not None else SecondDescriber()

    def distance(self, image_bgr: Frame, box: FloatArray, person_id: str) -> float | None:
        """Smallest distance from the face at ``box`` (pixels of ``image_bgr``) to the person.

        Returns:
            The distance, or ``None`` when no opinion can be given: the person has no stored
            descriptors (enrolled before descriptors were kept, or from the inbox) or dlib is
            unavailable (logged once by the describer).
        """
        gallery = self.library.second_descriptors(person_id)
        if gallery.shape[0] == 0 or not self.describer.available:
            return None
        probe = self.describer.describe_one(image_bgr, np.asarray(box, dtype=np.float32))
        if not np.all(np.isfinite(probe)):
            return None
        return float(distances(probe, gallery).min())
