"""The engine's HTTP server: live snapshots and MJPEG streams, signed clip URLs."""

from facetrack.web.common import CLIP_KEY_RE
from facetrack.web.frames import EncodedFrame, FrameHub
from facetrack.web.server import WebServer
from facetrack.web.signing import UrlSigner, load_or_create_secret

__all__ = ["CLIP_KEY_RE", "EncodedFrame", "FrameHub", "UrlSigner", "WebServer", "load_or_create_secret"]
