"""Recording: video writers (annotated output, later clips)."""

from facetrack.record.video import VideoWriter

__all__ = ["VideoWriter"]
