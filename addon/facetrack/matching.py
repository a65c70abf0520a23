"""How one probe's nearest match becomes evidence: accept, ask the second opinion, or reject.

SFace's cosine similarity alone has a ceiling: on the project's data a genuine frontal pair sits at
0.448-0.459 (a held-out pair, and Jennifer Aniston in insightface's ``t1.jpg`` vs her dev stills)
while a look-alike stranger sits at 0.487 (kate_siegel vs angelina_jolie); no threshold separates
them. dlib's ResNet descriptor (:mod:`facetrack.inference.dlib_resnet`) fails differently: the
Aniston pair is at distance 0.47, the look-alike at 0.61. So a match is decided in two stages
(a sequential, "serial" fusion of two matchers, Ross, Nandakumar & Jain, *Handbook of
Multibiometrics*, 2006, ch. 6):

1. ``similarity >= threshold`` (``cosine_similarity_threshold``, 0.52): SFace alone decides, as
   before (docs/thresholds.md).
2. ``grey_floor(pose) <= similarity < threshold``: the grey zone. The match counts only if dlib's
   distance from the probe to the same person's enrolled descriptors is at most
   :func:`confirm_distance` (0.50 frontal, 0.55 turned); otherwise it is no evidence either way.
3. Below the grey floor: the face matches nobody.

Pose and size change the evidence (measured with ``benchmarks/bench_pose.py`` on shared/data):
impostor SFace similarities *drop* for turned faces (video faces vs the dev gallery: max 0.46
frontal, 0.33 at |yaw| >= 0.15, n = 106 / 48) and so do genuine ones, so a turned face's grey zone
starts lower (0.30 vs SFace's published 0.363 for frontal pairs); dlib's impostor distances for
turned faces start at 0.59 (0.53 frontal, the nearest leave-persons-out impostor on the stills),
each confirm distance keeps a margin of at least 0.03 below them. A turned, tilted or small face
whose match is below the threshold is never a vote for "nobody": a profile of an enrolled person
scores low against a frontal gallery, so only a frontal face of fair size can say "not enrolled".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from facetrack.pose import FRONTAL_MAX_YAW

#: Grey-zone floors: SFace's published threshold for frontal pairs (0.363, OpenCV Zoo model card)
#: and a lower one for turned faces (see the module docstring).
GREY_FLOOR_FRONTAL = 0.36
GREY_FLOOR_TURNED = 0.30
#: dlib distances that confirm a grey-zone match (dlib's own rule is < 0.6 for LFW pairs).
CONFIRM_DISTANCE_FRONTAL = 0.50
CONFIRM_DISTANCE_TURNED = 0.55
#: Pitch ratios (:func:`facetrack.quality.landmark_geometry`) of a face looking straight ahead.
FRONTAL_PITCH = (0.3, 0.85)
#: Faces smaller than this (shorter box side, pixels) never reach the grey zone and never vote
#: "nobody": SFace embeddings of 32-48 px faces are upscaled guesses.
MIN_GREY_SIZE = 48.0


class Evidence(StrEnum):
    """What one match says about a track's identity."""

    PERSON = "person"  # the nearest person, accepted (alone or confirmed)
    GREY = "grey"  # the nearest person, pending the second opinion
    NOBODY = "nobody"  # a frontal face of fair size matching nobody
    NONE = "none"  # no evidence either way (turned / small face below the threshold)


@dataclass(frozen=True, slots=True)
class FacePose:
    """The pose and size of a probe face: ``yaw`` and ``pitch`` ratios, ``size`` in pixels."""

    yaw: float
    pitch: float
    size: float

    @property
    def frontal(self) -> bool:
        """Looking at the camera: |yaw| below :data:`facetrack.pose.FRONTAL_MAX_YAW`, pitch level."""
        return abs(self.yaw) < FRONTAL_MAX_YAW and FRONTAL_PITCH[0] <= self.pitch <= FRONTAL_PITCH[1]


def grey_floor(pose: FacePose) -> float:
    """The lowest SFace similarity that the second opinion may still confirm."""
    return GREY_FLOOR_FRONTAL if pose.frontal else GREY_FLOOR_TURNED


def confirm_distance(pose: FacePose) -> float:
    """The largest dlib distance that confirms a grey-zone match."""
    return CONFIRM_DISTANCE_FRONTAL if pose.frontal else CONFIRM_DISTANCE_TURNED


def classify(similarity: float, pose: FacePose, threshold: float) -> Evidence:
    """The evidence of a nearest match at cosine ``similarity`` for a face of ``pose``.

    Args:
        similarity: cosine similarity to the nearest enrolled embedding, ``[-1, 1]``.
        pose: the probe face's pose and size.
        threshold: ``cosine_similarity_threshold`` (SFace alone accepts at or above it).
    """
    if similarity >= threshold:
        return Evidence.PERSON
    if pose.size >= MIN_GREY_SIZE and similarity >= grey_floor(pose):
        return Evidence.GREY
    if pose.frontal and pose.size >= MIN_GREY_SIZE:
        return Evidence.NOBODY
    return Evidence.NONE


def lowest_floor() -> float:
    """The lowest similarity any pose may need (the threshold to search the library with)."""
    return min(GREY_FLOOR_FRONTAL, GREY_FLOOR_TURNED)
