"""Face tracking: ByteTrack association, credence, identity voting and re-identification backoff.

The package's names are loaded on first use (PEP 562): importing a light submodule such as
:mod:`facetrack.track.second_opinion` (which the CLI's ``verify`` reaches through the recogniser)
must not pull in ``supervision`` and ``trackers``, which only :class:`FaceTracker` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facetrack.track.face_tracker import FaceTracker, FrameResult, TrackedFace

__all__ = ["FaceTracker", "FrameResult", "TrackedFace"]


def __getattr__(name: str) -> Any:
    """``from facetrack.track import FaceTracker``: imports :mod:`facetrack.track.face_tracker` then."""
    if name in __all__:
        from facetrack.track import face_tracker

        return getattr(face_tracker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
