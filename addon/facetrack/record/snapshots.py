"""Every alert's own face snapshot, kept on disk so its signed URL answers from the moment the
alert is published, after a restart too, until the URL expires.

One JPEG per alert, ``<root>/<alert_id>.jpg`` (``alert_id``: 32 hex digits, checked before any
file access), written atomically before the alert goes out. Files older than ``max_age_s`` (the
lifetime of the URLs that name them) are removed, and the oldest beyond ``max_files``, at most
once a minute, when a snapshot is added. Independent of clips: an alert has its snapshot whether
clips are recorded or not, and whichever clip it joins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path

_LOG = logging.getLogger(__name__)

_ALERT_ID_RE = re.compile(r"[0-9a-f]{32}")
#: Snapshots kept at most (about 20 kB each).
MAX_FILES = 5000
#: Seconds between two retention passes.
PURGE_INTERVAL_S = 60.0


def valid_alert_id(alert_id: str) -> bool:
    """Whether ``alert_id`` is an alert id (32 lowercase hex digits)."""
    return isinstance(alert_id, str) and _ALERT_ID_RE.fullmatch(alert_id) is not None


class AlertSnapshots:
    """The per-alert snapshot files of one engine (thread-safe).

    Args:
        root: their folder (created when the first snapshot is added).
        max_age_s: seconds a snapshot is kept (the lifetime of its URL).
        max_files: snapshots kept at most; the oldest go first.
    """

    def __init__(self, root: str | Path, max_age_s: float, max_files: int = MAX_FILES) -> None:
        self.root = Path(root)
        self.max_age_s = max_age_s
        self.max_files = max_files
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def _path(self, alert_id: str) -> Path:
        if not valid_alert_id(alert_id):
            raise ValueError(f"invalid alert id {str(alert_id)[:100]!r}: expected 32 hex digits")
        return self.root / f"{alert_id}.jpg"

    def put(self, alert_id: str, jpeg: bytes) -> bool:
        """Store ``jpeg`` as the snapshot of ``alert_id``, atomically; returns False (logged) if the
        folder cannot be written. Raises ValueError for an invalid alert id."""
        path = self._path(alert_id)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{alert_id}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(jpeg)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            _LOG.error("cannot keep the snapshot of alert %s: %s", alert_id, exc)
            return False
        self._maybe_purge()
        return True

    def get(self, alert_id: str) -> bytes | None:
        """The snapshot of ``alert_id``, or None (unknown, expired or an invalid id)."""
        if not valid_alert_id(alert_id):
            return None
        try:
            return self._path(alert_id).read_bytes()
        except OSError:
            return None

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_INTERVAL_S
        self.purge()

    def purge(self, now: float | None = None) -> int:
        """Remove the snapshots older than ``max_age_s`` at ``now`` (epoch seconds, default: the
        current time), then the oldest beyond ``max_files``, and temporary files left by a crash
        (older than a minute). Returns how many files were removed. Never raises."""
        now = time.time() if now is None else now
        try:
            entries = [(e.stat().st_mtime, e) for e in self.root.iterdir() if e.is_file()]
        except OSError:
            return 0
        snapshots = sorted((m, e) for m, e in entries if e.suffix == ".jpg" and valid_alert_id(e.stem))
        doomed = [e for m, e in snapshots if now - m > self.max_age_s]
        kept = [e for m, e in snapshots if now - m <= self.max_age_s]
        doomed += kept[: max(0, len(kept) - self.max_files)]
        doomed += [e for m, e in entries if e.name.endswith(".tmp") and now - m > 60.0]
        removed = 0
        for entry in doomed:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
        return removed
