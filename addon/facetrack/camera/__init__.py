"""Video sources: files, RTSP/HTTP streams and webcams."""

from facetrack.camera.source import FrameSource, VideoSource, open_source
from facetrack.camera.stream import StreamSource

__all__ = ["FrameSource", "StreamSource", "VideoSource", "open_source"]
