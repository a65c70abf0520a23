"""Gallery coverage: which crops of a track to enrol, and how far automatic additions may go.

A person's gallery should hold embeddings of several head poses (frontal, three-quarter,
profile: :mod:`facetrack.pose`), since SFace's similarity between a frontal and a turned view of
one person falls towards the look-alike-stranger range. :func:`select_diverse` therefore takes the
crops of a track round-robin over the pose bins (the best-ranked crop of each bin first, frontal
bin first) instead of the best ``k`` (which are nearly always all frontal: frontalness is part of
the rank).

Enrolments whose faces the engine picked (``enroll_track``, naming an inbox group, the optional
auto-enrichment; :func:`is_automatic` by their source) are bounded per person and pose bin:
:data:`MAX_AUTO_PER_POSE` such embeddings per bin at most (photos the user chose are not bounded).
So a person seen on camera every day never grows a gallery of hundreds of near-identical frontal
embeddings (every one a chance for a false accept of a look-alike), while each pose can still be
covered. Embeddings without a recorded yaw (enrolled before schema version 2) are counted in no
bin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from facetrack.library.store import FaceLibrary
from facetrack.pose import POSE_BINS, PoseBin, pose_bin

#: Automatic embeddings a person keeps per pose bin at most. Five covers the spread within a bin
#: (light, expression, glasses) that `enroll_track`'s 3 crops of one track cannot, while keeping
#: the gallery small (a bounded false-accept surface).
MAX_AUTO_PER_POSE = 5
#: Source prefixes of enrolments whose faces the engine picked: inbox groups and auto-enrichment
#: (``enroll_track`` sources are ``<camera>/track/<id>``: :data:`_TRACK_SOURCE`).
AUTO_PREFIXES = ("inbox:", "auto:")
#: ``enroll_track``'s source: ``<camera>/track/<track id>`` (camera names as the configuration allows).
_TRACK_SOURCE = re.compile(r"^[a-z0-9_]{1,32}/track/\d+$")


class RankedFace(Protocol):
    """A face crop with a quality rank (higher is better) and a yaw ratio (0 frontal)."""

    @property
    def rank(self) -> float: ...

    @property
    def yaw(self) -> float: ...


def select_diverse[F: RankedFace](crops: Sequence[F], k: int, room: dict[PoseBin, int] | None = None) -> list[F]:
    """Up to ``k`` crops, round-robin over the pose bins (best rank first within a bin).

    Args:
        crops: candidate crops, any order.
        k: most crops returned (``<= 0``: none).
        room: most crops taken per bin (e.g. :func:`automatic_room`); ``None``: no bound.

    Returns:
        The chosen crops in the order taken: the best frontal, the best three-quarter, the best
        profile, the second best frontal... (bins without crops or room are skipped).
    """
    by_bin: dict[PoseBin, list[F]] = {b: [] for b in POSE_BINS}
    for c in sorted(crops, key=lambda c: -c.rank):
        by_bin[pose_bin(c.yaw)].append(c)
    left = {b: len(by_bin[b]) if room is None else min(len(by_bin[b]), max(0, room.get(b, 0))) for b in POSE_BINS}
    out: list[F] = []
    depth = 0
    while len(out) < k and any(left[b] > depth for b in POSE_BINS):
        for b in POSE_BINS:
            if len(out) < k and left[b] > depth:
                out.append(by_bin[b][depth])
        depth += 1
    return out


def is_automatic(source: str) -> bool:
    """Whether an embedding's source is an enrolment whose face the engine picked."""
    return source.startswith(AUTO_PREFIXES) or _TRACK_SOURCE.match(source) is not None


def automatic_room(library: FaceLibrary, person_id: str | None, cap: int = MAX_AUTO_PER_POSE) -> dict[PoseBin, int]:
    """How many more automatic embeddings each pose bin of a person may take (``cap`` minus
    those there; ``cap`` each for a new person, ``person_id`` ``None``)."""
    room: dict[PoseBin, int] = dict.fromkeys(POSE_BINS, cap)
    if person_id is None:
        return room
    for info in library.embedding_infos(person_id):
        if info.yaw is not None and is_automatic(info.source):
            b = pose_bin(info.yaw)
            room[b] = max(0, room[b] - 1)
    return room
