"""The inbox in the running engine: ended unknown tracks in, the retained ``<prefix>/inbox``
summary and the ``<prefix>/inbox/event`` announcements out, signed crop URLs, age-out, saving,
and the re-match against the face library after it changes.

:class:`InboxFeature` is built from narrow callables (publish the summary, publish an event, the
HTTP origin and URL signer while the server runs); it never sees the service. Threads: camera
threads call :meth:`InboxFeature.on_unknown_ended`, the command thread :meth:`InboxFeature.publish`,
any thread :meth:`InboxFeature.library_changed`, the service's main loop
:meth:`InboxFeature.tick` (once a second), which runs the re-match it asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from facetrack.camera.runner import FrameSink
from facetrack.comms.payloads import InboxEventPayload, InboxPayload, inbox_event_payload, inbox_payload
from facetrack.inbox.cover import Detect, single_face
from facetrack.inbox.store import FaceCrop, UnknownInbox
from facetrack.inference.base import Frame
from facetrack.track.face_tracker import Track
from facetrack.track.identity import IdentityState

_LOG = logging.getLogger(__name__)
#: Lifetime of the signed inbox crop URLs (s); the retained inbox is republished at half of it.
INBOX_URL_SECONDS = 86400
#: Seconds between writes of the inbox file while camera tracks keep changing it.
INBOX_SAVE_INTERVAL = 10.0
#: Seconds between age-out passes (groups not seen for ``max_age_days``).
PURGE_INTERVAL = 600.0


class UrlSigning(Protocol):
    """Signs a URL path (:class:`facetrack.web.signing.UrlSigner`)."""

    def sign(self, path: str, expires_at: int) -> str:
        """The query string that makes ``path`` valid until ``expires_at`` (epoch s)."""
        ...


#: ``(origin, signer)`` of the HTTP server while it runs (``origin`` like ``http://host:8099``), else None.
CropLinks = Callable[[], tuple[str, UrlSigning] | None]


class InboxFeature:
    """The unknown-face inbox wired into the engine.

    Args:
        inbox: the clustering store.
        publish_summary: publishes ``<prefix>/inbox`` (QoS 1, retained).
        publish_event: publishes ``<prefix>/inbox/event`` (QoS 1, not retained).
        links: the HTTP server's origin and signer while it runs (None: crop URLs are None).
        match_threshold: the tracker's ``cosine_similarity_threshold``: after a library change
            (:meth:`library_changed`, and once at start), pending groups whose faces match an
            enrolled person at it leave the inbox (:meth:`UnknownInbox.rematch`). None: never.
    """

    def __init__(
        self,
        inbox: UnknownInbox,
        publish_summary: Callable[[InboxPayload], None],
        publish_event: Callable[[InboxEventPayload], None],
        links: CropLinks,
        match_threshold: float | None = None,
    ) -> None:
        self.inbox = inbox
        self._publish_summary = publish_summary
        self._publish_event = publish_event
        self._links = links
        self._match_threshold = match_threshold
        self._dirty = threading.Event()  # changed since the summary was last published
        self._rematch = threading.Event()  # the library changed since the last re-match
        if match_threshold is not None:
            self._rematch.set()  # persons enrolled while the engine was stopped (CLI, another instance)
        self._published = self._saved = self._aged = time.monotonic()

    def library_changed(self) -> None:
        """The face library changed (any thread; cheap): the next :meth:`tick` re-matches the
        pending groups against it."""
        self._rematch.set()

    def on_unknown_ended(self, camera: str, track: Track, cover_check: Callable[[Frame], bool] | None = None) -> None:
        """A camera thread: an ended unknown track joins (or starts) an inbox group. A new group
        publishes the summary, then its event; a grown one is republished by :meth:`tick`.

        ``cover_check(crop)`` tells whether a crop shows a single usable face (see
        :func:`facetrack.inbox.cover.single_face`); None takes every crop as good. A track with
        no good crop never starts a group."""
        mean = track.mean_embedding
        if mean is None:
            return
        now = time.time()
        faces = [
            FaceCrop(c.rank, c.crop, c.embedding, _check(cover_check, c.crop), c.yaw)
            for c in sorted(track.best, key=lambda c: -c.rank)
        ]
        first = now - max(0.0, track.last_ts - track.first_ts)
        added = self.inbox.add_track(camera, mean, faces, track.embeddings, first, now)
        if added is None:
            _LOG.debug(
                "camera %s: track %d has no crop with a single usable face: not in the inbox", camera, track.track_id
            )
            return
        if not added.new_group:
            self._dirty.set()  # republished by the main loop (at most once a second)
            return
        # A new group: the retained summary first, so a client reacting to the event finds it there.
        self.publish()
        url = self.crop_url(added.group_id, 0)
        self._publish_event(inbox_event_payload(added.group_id, camera, track.track_id, url, now))

    def crop_url(self, group_id: str, index: int) -> str | None:
        """Signed URL of an inbox crop on the HTTP server, valid :data:`INBOX_URL_SECONDS`
        (None while the server is not running)."""
        links = self._links()
        if links is None:
            return None
        origin, signer = links
        path = f"/inbox/{group_id}/{index}.jpg"
        return f"{origin}{path}?{signer.sign(path, int(time.time()) + INBOX_URL_SECONDS)}"

    def payload(self) -> InboxPayload:
        """``<prefix>/inbox`` (retained): the unknown-face groups (``docs/schemas/inbox.json``)."""
        return inbox_payload(self.inbox.groups(), self.crop_url)

    def publish(self) -> None:
        """Republish the retained summary (never raises: callers are camera and command threads)."""
        self._dirty.clear()
        self._published = time.monotonic()
        try:
            self._publish_summary(self.payload())
        except Exception:  # a summary can wait for the next change
            _LOG.exception("publishing the inbox failed")

    def tick(self, stop: bool = False) -> None:
        """The main loop, once a second: re-match after a library change, age out every
        :data:`PURGE_INTERVAL` s, republish when changed (or the crop URLs are half-expired), save
        at most every :data:`INBOX_SAVE_INTERVAL` s, or at once when ``stop`` (the engine is stopping)."""
        if self._match_threshold is not None and self._rematch.is_set():
            self._rematch.clear()
            try:
                if self.inbox.rematch(self._match_threshold):
                    self._dirty.set()
            except Exception:  # a library being swapped or unreadable: tried again at its next change
                _LOG.exception("re-matching the inbox against the face library failed")
        now = time.monotonic()
        if now - self._aged >= PURGE_INTERVAL:
            self._aged = now
            if self.inbox.age_out():
                self._dirty.set()
        if self._dirty.is_set() or now - self._published >= INBOX_URL_SECONDS / 2:
            self.publish()
        if self.inbox.dirty and (now - self._saved >= INBOX_SAVE_INTERVAL or stop):
            self._saved = now
            try:
                self.inbox.save()
            except OSError as err:
                _LOG.error("saving the unknown-face inbox failed: %s", err)


def _check(check: Callable[[Frame], bool] | None, crop: Frame) -> bool:
    if check is None:
        return True
    try:
        return check(crop)
    except Exception:  # a failing detector must not keep faces out: the crop counts as good
        _LOG.warning("checking an inbox crop failed", exc_info=True)
        return True


class InboxSink(FrameSink):
    """A camera's ended tracks decided unknown, with usable faces, go to the inbox (a sink of its
    :class:`~facetrack.camera.runner.CameraRunner`); a failure is logged, never the camera's end.

    ``detect``: the camera's own detector (its backend's ``detect``, called on the camera thread
    only), to check each crop for a single usable face (:mod:`facetrack.inbox.cover`); None: no check.
    """

    def __init__(self, feature: InboxFeature, camera: str, detect: Detect | None = None) -> None:
        self.feature = feature
        self.camera = camera
        self._check: Callable[[Frame], bool] | None = None
        if detect is not None:
            self._check = lambda crop: single_face(detect, crop)

    def tracks_ended(self, tracks: Sequence[Track]) -> None:
        for track in tracks:
            if track.voter.state is not IdentityState.UNKNOWN or not track.best:
                continue
            try:
                self.feature.on_unknown_ended(self.camera, track, self._check)
            except Exception:  # the inbox must never stop a camera
                _LOG.exception("camera %s: track %d could not enter the inbox", self.camera, track.track_id)
