"""Scene-cut detection (a PTZ move, a switched stream, edited footage).

The score is PySceneDetect's ``ContentDetector`` content value (Castellano, PySceneDetect,
BSD-3): the mean absolute frame-to-frame difference of the H, S and V channels, averaged; its
default cut threshold is 27. Computed here on a 96x54 thumbnail, which costs well under 1 ms and
keeps the value within a few units of the full-resolution one for real cuts.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facetrack.inference.base import Frame

_THUMB = (96, 54)


class SceneCutDetector:
    """Flags frames whose content differs from the previous frame by more than ``threshold``.

    Args:
        threshold: content value (0-255 scale) above which a frame starts a new scene; ``0``
            disables detection.
    """

    def __init__(self, threshold: float = 30.0) -> None:
        self.threshold = threshold
        self._prev: npt.NDArray[np.int16] | None = None
        self.last_score = 0.0

    def __call__(self, frame_bgr: Frame) -> bool:
        """True when ``frame_bgr`` (``(H, W, 3) uint8``) starts a new scene."""
        if self.threshold <= 0:
            return False
        thumb = cv2.resize(frame_bgr, _THUMB, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(thumb, cv2.COLOR_BGR2HSV).astype(np.int16)
        prev, self._prev = self._prev, hsv
        if prev is None:
            return False
        self.last_score = float(np.abs(hsv - prev).mean())
        return self.last_score > self.threshold

    def reset(self) -> None:
        """Forget the previous frame (a new source)."""
        self._prev = None
