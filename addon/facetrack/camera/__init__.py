"""Video sources: files, RTSP/HTTP streams and webcams."""

from facetrack.camera.source import VideoSource, open_source

__all__ = ["VideoSource", "open_source"]
