"""Is an inbox crop a usable cover? One face, found again by the detector in the aligned crop.

A track's best crops passed the quality filters on the full frame (size, score, pose from the
landmarks, sharpness), yet some are no face to show: the back of a head with plausible landmarks
(hair only), or two faces close together (the crop holds both). The cheapest sound check is to
run the camera's own detector once more on the 112x112 aligned crop: a usable cover has exactly
one confident face, near the crop's centre, filling a good part of it.

The aligned crop is tight (the face fills it, the chin and forehead are cut), which detectors
trained on whole scenes miss; a grey border (:data:`BORDER` px each side) gives the face its
context back (224x224 in all: one YuNet pass on it takes about 1 ms on one core).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from facetrack.inference.base import Detection, Frame

#: Grey border added on each side of the aligned crop before detection, pixels.
BORDER = 56
#: Detector score a cover's face needs (YuNet's own default threshold is 0.5 on whole frames).
MIN_SCORE = 0.6
#: A second face with at least this score makes the crop a two-face crop.
OTHER_FACE_SCORE = 0.5
#: The face's box centre must be within this fraction of the crop's side from the crop's centre.
MAX_CENTRE_OFFSET = 0.2
#: The face's box must be at least this fraction of the crop's side (a small face in a corner is
#: someone else's).
MIN_SIZE = 0.4

Detect = Callable[[Frame], Sequence[Detection]]


def single_face(detect: Detect, crop: Frame) -> bool:
    """True when ``crop`` (``(S, S, 3) uint8`` aligned BGR face, usually 112x112) shows one usable
    face: exactly one detection scoring >= :data:`OTHER_FACE_SCORE`, and that one scoring >=
    :data:`MIN_SCORE`, centred and large (see the module's constants).

    ``detect`` is an inference backend's ``detect`` (a camera's own, on its own thread: detectors
    are not thread-safe). A detector error is the caller's to handle.
    """
    side = float(crop.shape[0])
    padded = np.pad(crop, ((BORDER, BORDER), (BORDER, BORDER), (0, 0)), constant_values=128)
    faces = [d for d in detect(padded) if d.score >= OTHER_FACE_SCORE]
    if len(faces) != 1:
        return False
    face = faces[0]
    x1, y1, x2, y2 = (float(v) - BORDER for v in face.box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    centred = abs(cx - side / 2) <= MAX_CENTRE_OFFSET * side and abs(cy - side / 2) <= MAX_CENTRE_OFFSET * side
    large = min(x2 - x1, y2 - y1) >= MIN_SIZE * side
    return face.score >= MIN_SCORE and centred and large
