"""Drawing tracks on frames: box, track id, name and similarity."""

from __future__ import annotations

from collections.abc import Iterable

import cv2

from facetrack.inference.base import Frame
from facetrack.track.face_tracker import TrackedFace
from facetrack.track.identity import IdentityState

# BGR: known green, unknown red, undecided amber.
COLOURS = {
    IdentityState.KNOWN: (60, 200, 60),
    IdentityState.UNKNOWN: (50, 50, 230),
    IdentityState.PENDING: (0, 190, 255),
}


def label(face: TrackedFace) -> str:
    """``#3 Anna 0.62``, ``#4 unknown`` or ``#5 ...``."""
    if face.state is IdentityState.KNOWN:
        sim = f" {face.similarity:.2f}" if face.similarity is not None else ""
        return f"#{face.track_id} {face.person}{sim}"
    if face.state is IdentityState.UNKNOWN:
        return f"#{face.track_id} unknown"
    return f"#{face.track_id} ..."


def draw_faces(frame: Frame, faces: Iterable[TrackedFace]) -> Frame:
    """Draw in place on ``frame`` (``(H, W, 3) uint8`` BGR) and return it."""
    h = frame.shape[0]
    thick = max(1, round(h / 400))
    scale = max(0.4, h / 1400)
    for face in faces:
        colour = COLOURS[face.state]
        x1, y1, x2, y2 = (round(float(v)) for v in face.detection.box)
        cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thick)
        text = label(face)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = max(th + base, y1)
        cv2.rectangle(frame, (x1, ty - th - base - 2), (x1 + tw + 4, ty), colour, cv2.FILLED)
        cv2.putText(frame, text, (x1 + 2, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return frame
