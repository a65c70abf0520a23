"""Face quality: size, sharpness and pose from the 5 landmarks.

Only faces that pass these filters may decide or change a track's identity: a small, blurred or
turned-away face gives embeddings whose cosine similarity to the right person drops towards the
impostor range (the pose/quality sensitivity documented for ArcFace-family models, e.g. the
"quality-aware" discussion in Meng et al., MagFace, CVPR 2021), so it is better not to vote at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetrack.config.schema import FaceFilters as FaceFilters  # noqa: PLC0414 - re-export
from facetrack.inference.base import Detection, Frame


@dataclass(frozen=True, slots=True)
class FaceQuality:
    """Measured quality of one face; ``reason`` is ``None`` when it passes the filters."""

    size: float
    score: float
    sharpness: float
    yaw: float
    pitch: float
    landmarks_ok: bool
    reason: str | None

    @property
    def usable(self) -> bool:
        """True when the face passes every filter."""
        return self.reason is None

    @property
    def rank(self) -> float:
        """Higher is better: used to pick the best crop of a track (size x frontalness x sharpness)."""
        frontal = max(0.0, 1.0 - 2.0 * abs(self.yaw))
        return self.size * frontal * min(1.0, self.sharpness / 100.0) * self.score


def landmark_geometry(det: Detection) -> tuple[float, float, bool]:
    """``(yaw, pitch, sane)`` from the 5 landmarks of ``det`` (see :class:`FaceFilters`)."""
    lm = det.landmarks.astype(np.float64)
    r_eye, l_eye, nose, r_mouth, l_mouth = lm
    eye_vec = l_eye - r_eye
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return 0.0, 0.0, False
    ux = eye_vec / eye_dist  # unit vector along the eye axis
    uy = np.array([-ux[1], ux[0]])  # perpendicular, pointing down the face
    eye_mid = (r_eye + l_eye) / 2
    mouth_mid = (r_mouth + l_mouth) / 2
    yaw = float((nose - eye_mid) @ ux) / eye_dist
    mouth_down = float((mouth_mid - eye_mid) @ uy)
    nose_down = float((nose - eye_mid) @ uy)
    pitch = nose_down / mouth_down if mouth_down > 1e-6 else 0.0
    x1, y1, x2, y2 = det.box.astype(np.float64)
    mx, my = 0.2 * (x2 - x1), 0.2 * (y2 - y1)
    inside = bool(np.all((lm[:, 0] >= x1 - mx) & (lm[:, 0] <= x2 + mx) & (lm[:, 1] >= y1 - my) & (lm[:, 1] <= y2 + my)))
    sane = inside and mouth_down > 0.15 * eye_dist and eye_dist > 0.15 * max(x2 - x1, 1.0)
    return yaw, pitch, sane


def sharpness(crop_bgr: Frame) -> float:
    """Variance of the Laplacian (Pech-Pacheco et al., ICPR 2000) of a grey crop: higher is sharper."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess(det: Detection, aligned_crop: Frame | None, filters: FaceFilters) -> FaceQuality:
    """Measure ``det`` (and its aligned crop, when given, for sharpness) against ``filters``."""
    yaw, pitch, sane = landmark_geometry(det)
    sharp = sharpness(aligned_crop) if aligned_crop is not None else float("inf")
    reason: str | None = None
    if det.size < filters.min_face_size:
        reason = f"face too small ({det.size:.0f} px < {filters.min_face_size:.0f} px)"
    elif det.score < filters.min_score:
        reason = f"detector score {det.score:.2f} < {filters.min_score:.2f}"
    elif filters.landmark_sanity and not sane:
        reason = "implausible landmarks"
    elif abs(yaw) > filters.max_yaw:
        reason = f"face turned away (yaw ratio {yaw:+.2f})"
    elif not filters.pitch_range[0] <= pitch <= filters.pitch_range[1]:
        reason = f"face tilted up or down (pitch ratio {pitch:.2f})"
    elif sharp < filters.min_sharpness:
        reason = f"face blurred (sharpness {sharp:.1f} < {filters.min_sharpness:.1f})"
    return FaceQuality(
        size=det.size, score=det.score, sharpness=sharp, yaw=yaw, pitch=pitch, landmarks_ok=sane, reason=reason
    )
