"""FaceTrack: face tracking and recognition engine for Home Assistant."""

__version__ = "0.1.0"
