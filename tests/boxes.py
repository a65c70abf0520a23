"""Box geometry shared by the tests (supervision's IoU, the library the tracker's ByteTrack uses)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv


def box_iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` pixel boxes (0 for empty boxes)."""
    return float(sv.box_iou_batch(np.asarray([a], np.float64), np.asarray([b], np.float64))[0, 0])
