"""Keeping a shared face library current: periodic refresh, and refresh at once on notice.

Several ``facetrack serve`` instances (one per camera group) may share one library on S3/MinIO
(``docs/scale-out.md``). Each matches against its own in-memory index, so each must learn of the
enrolments the others make. :class:`LibraryWatcher` does that on its own thread (never a camera
loop's, never the MQTT network thread): every ``interval`` seconds, and at once when
:meth:`LibraryWatcher.notify` is called (the service calls it when another instance announces a
change on the library topic). A refresh when nothing changed costs one listing of the table's
version manifests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from facetrack.errors import LibraryError
from facetrack.library.store import FaceLibrary

_LOG = logging.getLogger(__name__)
#: Longest wait between two refresh attempts while the object store fails (s).
MAX_RETRY_SECONDS = 60.0
#: Extra refreshes, 0.2 s apart, when an announced version is not visible yet.
ANNOUNCED_RETRIES = 5


class LibraryWatcher(threading.Thread):
    """Refreshes ``library`` periodically and on notice.

    Args:
        library: the face library to keep current.
        interval: seconds between periodic refreshes; ``0`` refreshes only on notice.
        on_refreshed: called (on this thread) after a refresh that changed the index.

    A failing refresh (the object store unreachable) is logged once per outage and retried with a
    backoff of ``interval`` up to :data:`MAX_RETRY_SECONDS`; the index in use stays as it was.
    """

    def __init__(self, library: FaceLibrary, interval: float, on_refreshed: Callable[[], None] | None = None) -> None:
        super().__init__(name="library-watcher", daemon=True)
        self.library = library
        self.interval = float(interval)
        self.on_refreshed = on_refreshed
        self.refreshes = 0  # refreshes that changed the index
        self.failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._wanted = -1  # highest version announced by another instance

    def notify(self, version: int | None = None) -> None:
        """Another instance changed the library (to ``version``, if known): refresh now.

        Cheap and non-blocking (safe on the MQTT network thread). A notice for a version the
        index already reflects is ignored.
        """
        if version is not None:
            if version <= self.library.version:
                return
            self._wanted = max(self._wanted, version)
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread (returns at once)."""
        self._stop.set()
        self._wake.set()

    def refresh_now(self) -> bool:
        """One refresh on the caller's thread; True if the index changed. Never raises."""
        try:
            changed = self.library.refresh()
        except LibraryError as err:
            if self.failures == 0:
                _LOG.warning("%s; retrying", err)
            self.failures += 1
            return False
        if self.failures:
            _LOG.info("face library reachable again after %d failed refreshes", self.failures)
            self.failures = 0
        if changed:
            self.refreshes += 1
            _LOG.info("face library refreshed: version %d, %d embeddings", self.library.version, len(self.library))
            if self.on_refreshed is not None:
                try:
                    self.on_refreshed()
                except Exception:
                    _LOG.exception("after-refresh callback failed")
        return changed

    def run(self) -> None:
        while not self._stop.is_set():
            if self.failures:
                wait: float | None = min(max(self.interval, 1.0) * 2 ** min(self.failures, 6), MAX_RETRY_SECONDS)
            else:
                wait = self.interval if self.interval > 0 else None
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.refresh_now()
            # S3 and MinIO list new objects at once (strong consistency); a store that lags gets
            # a few more looks before the periodic refresh takes over.
            for _ in range(ANNOUNCED_RETRIES):
                if self._wanted <= self.library.version or self.failures or self._stop.wait(0.2):
                    break
                self.refresh_now()
            self._wanted = -1
