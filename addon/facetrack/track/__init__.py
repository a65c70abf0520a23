"""Face tracking: ByteTrack association, credence, identity voting and re-identification backoff."""

from facetrack.track.face_tracker import FaceTracker, FrameResult, TrackedFace

__all__ = ["FaceTracker", "FrameResult", "TrackedFace"]
