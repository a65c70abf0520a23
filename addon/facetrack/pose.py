"""Head pose bins from the 5-landmark yaw ratio (:func:`facetrack.quality.landmark_geometry`).

The yaw ratio is the nose tip's offset from the eye midpoint along the eye axis, divided by the
inter-eye distance: 0 for a frontal face, about 0.2 at 20-25 degrees, 0.35-0.5 as the face
approaches profile (where the far eye and mouth corner are hidden and YuNet's landmarks of them
become guesses). The bins are side-agnostic: a face library that holds a left three-quarter view
matches a right one nearly as well (faces are close to mirror-symmetric), so coverage advice
("add a profile photo") is about how far the head is turned, not to which side.

Measured on ``shared/data`` (``benchmarks/bench_pose.py``): the posed stills span |yaw| 0-0.19;
faces walking in ``facenet_pytorch/examples/video.mp4`` reach 0.45+ in 10 % of detections.
"""

from __future__ import annotations

from typing import Literal

#: |yaw ratio| below which a face counts as frontal (about 15 degrees).
FRONTAL_MAX_YAW = 0.15
#: |yaw ratio| from which a face counts as (near) profile (about 35-40 degrees and beyond).
PROFILE_MIN_YAW = 0.35

PoseBin = Literal["frontal", "three_quarter", "profile"]
#: Every bin, from frontal to profile (the order coverage reports use).
POSE_BINS: tuple[PoseBin, ...] = ("frontal", "three_quarter", "profile")


def pose_bin(yaw: float) -> PoseBin:
    """The pose bin of a yaw ratio (sign ignored)."""
    a = abs(yaw)
    if a < FRONTAL_MAX_YAW:
        return "frontal"
    if a < PROFILE_MIN_YAW:
        return "three_quarter"
    return "profile"
