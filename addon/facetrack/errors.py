"""Exceptions raised by the engine; each carries a message meant for the user."""


class FaceTrackError(Exception):
    """Base class of every error FaceTrack reports to the user.

    ``code`` is the machine-readable code a command answer carries (``docs/mqtt.md``):
    ``bad_request`` unless a subclass or the raise site says otherwise.
    """

    code: str = "bad_request"


class ImageReadError(FaceTrackError):
    """An image file is missing, unreadable or not an image."""


class VideoSourceError(FaceTrackError):
    """A video source (file, RTSP URL, webcam) cannot be opened or read."""


class ModelMismatchError(FaceTrackError):
    """The face library was built with another embedding model than the backend's."""


class LibraryError(FaceTrackError):
    """A face library operation failed (unknown person, bad argument, corrupt table).

    ``code``: ``not_found`` (no such person, embedding or backup) or ``bad_request`` (anything else).
    """

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class ConfigError(FaceTrackError):
    """The configuration is invalid; the message names the key."""
