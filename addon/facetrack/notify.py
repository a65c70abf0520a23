"""Face-alert notifications through Apprise, off the camera loop.

The vocabulary follows DeGirum's FaceTracker: ``notification_config`` is one or more Apprise URLs
(``mailto://…``, ``ntfy://…``, ``json://host:port/path``, …) and ``notification_message`` a
``string.Template`` filled from the alert.

:class:`Notifier` never blocks its caller: :meth:`Notifier.send` puts the alert on a bounded queue
and returns; one daemon worker thread renders and delivers it. A full queue drops the alert.

Time limit. Every delivery is bounded by ``timeout_seconds`` twice over: each Apprise service's
socket connect and read timeouts (``cto`` / ``rto``) are capped at ``timeout_seconds``, and each
service is called in its own daemon thread which the worker waits for at most ``timeout_seconds``
(one deadline shared by all services of an alert). A service still running at the deadline is
counted as failed and abandoned; its socket timeouts end it soon after.

Secrets. Apprise URLs carry tokens and passwords. This module names a service in its logs and
exceptions only by ``scheme://host[:port]``, taken from Apprise's privacy-masked URL (which masks
tokens that sit in the host position, e.g. Telegram's bot token); user, password, path and query
never appear. Apprise's own DEBUG logs print custom headers and query values in clear, and urllib3
logs request paths: a logging filter on the ``apprise`` and ``urllib3.connectionpool`` loggers masks
the password, query values and long path segments of every configured URL in their records.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import queue
import re
import string
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import apprise

from facetrack.config.notify import DEFAULT_MESSAGE, DEFAULT_TITLE, NotificationConfig
from facetrack.errors import ConfigError

__all__ = [
    "DEFAULT_MESSAGE",
    "DEFAULT_TITLE",
    "TEMPLATE_KEYS",
    "InvalidNotificationURLError",
    "NotificationConfig",
    "Notifier",
    "render_template",
]

log = logging.getLogger(__name__)

#: Context keys the templates are meant to use (others given in the context are substituted too).
TEMPLATE_KEYS: Final = (
    "time",
    "camera",
    "person",
    "similarity",
    "clip_url",
    "snapshot_url",
    "alert_mode",
    "alert_id",
)

UNKNOWN_PERSON: Final = "unknown person"

_SCHEME_RE: Final = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]{0,31})://")


class InvalidNotificationURLError(ConfigError, ValueError):
    """An Apprise URL is not understood; the message names its scheme only, never the secret."""


def _format_value(key: str, value: object) -> str:
    """Render one context value for a template."""
    if key == "person" and value is None:
        return UNKNOWN_PERSON
    if value is None:
        return ""
    if key == "similarity" and isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.2f}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def render_template(template: str, context: Mapping[str, object]) -> str:
    """Fill ``template`` from ``context`` with ``string.Template.safe_substitute``.

    ``person`` ``None`` renders as ``"unknown person"``, a float ``similarity`` with two decimals,
    a ``datetime`` as ISO 8601 (seconds), any other ``None`` as an empty string. Placeholders
    whose key is missing from ``context`` are left as they are; a stray ``$`` never raises.

    Args:
        template: ``string.Template`` text, e.g. :data:`DEFAULT_MESSAGE`.
        context: alert fields, e.g. ``{"person": "Anna", "camera": "door", "similarity": 0.71}``.

    Returns:
        The rendered text.
    """
    values = {str(k): _format_value(str(k), v) for k, v in context.items()}
    return string.Template(template).safe_substitute(values)


def _scheme_of(url: str) -> str:
    """The scheme of ``url`` for messages (``"json"``), or a placeholder if there is none."""
    match = _SCHEME_RE.match(url)
    return match.group(1).lower() if match else "<no scheme>"


class _SecretFilter(logging.Filter):
    """Masks registered secrets in records of third-party loggers (Apprise, urllib3).

    Apprise masks passwords in its own logs, but at DEBUG level it prints the loaded URL with
    custom headers (``+Authorization=…``) and query values in clear, and urllib3 logs request
    paths with their query. This filter rewrites such records before any handler sees them.
    """

    #: Loggers whose records are filtered (a logger filter applies to that exact logger only).
    LOGGERS: Final = ("apprise", "urllib3.connectionpool")

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def register(self, secrets: set[str]) -> None:
        with self._lock:
            self._secrets = self._secrets | secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        redacted = message
        for secret in sorted(secrets, key=len, reverse=True):
            if secret in redacted:
                redacted = redacted.replace(secret, "****")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_SECRET_FILTER: Final = _SecretFilter()
for _name in _SecretFilter.LOGGERS:
    logging.getLogger(_name).addFilter(_SECRET_FILTER)

# Shortest URL part treated as a secret: masking shorter strings would garble the logs.
_MIN_SECRET_LEN: Final = 4


def _url_secrets(url: str) -> set[str]:
    """Parts of an Apprise URL that may be secret: password, query values, long path segments.

    Both the raw and the percent-decoded forms are returned, since logs may show either.
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        candidates = [parts.password or ""]
        candidates += [v for _, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
        candidates += [seg for seg in parts.path.split("/") if len(seg) >= 2 * _MIN_SECRET_LEN]
    except ValueError:
        return set()
    found: set[str] = set()
    for item in candidates:
        for form in (item, urllib.parse.unquote(item), urllib.parse.quote(item, safe="")):
            if len(form) >= _MIN_SECRET_LEN:
                found.add(form)
    return found


def _service_label(plugin: apprise.NotifyBase, url: str) -> str:
    """``scheme://host[:port]`` of an Apprise service, safe to log.

    Built from Apprise's privacy URL (tokens in the host position are masked there), then stripped
    of user, password, path and query, which may hold secrets that the privacy URL keeps.
    """
    try:
        privacy_url = str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
        parts = urllib.parse.urlsplit(privacy_url)
        host = parts.hostname or ""
        port = parts.port
    except Exception:
        return f"{_scheme_of(url)}://"
    scheme = parts.scheme or _scheme_of(url)
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


@dataclass
class _Service:
    """One Apprise URL: its safe label and a one-service Apprise object."""

    label: str
    apobj: apprise.Apprise


@dataclass
class _Job:
    """One queued alert."""

    body: str
    title: str
    attachment: bytes | None
    queued_at: float = field(default_factory=time.monotonic)


class _SharedFile:
    """A temp file removed when the last of ``users`` service threads releases it."""

    def __init__(self, path: str, users: int) -> None:
        self.path = path
        self._users = users
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove notification attachment %s: %s", self.path, exc)


_STOP: Final = object()


class Notifier:
    """Delivers face alerts to Apprise services from one background thread.

    Counters (read-only, for diagnostics; an alert counts once however many services it goes to):

    * ``sent``: alerts every service accepted;
    * ``failed``: alerts at least one service rejected, could not be reached for or did not
      finish within ``timeout_seconds``;
    * ``dropped``: alerts :meth:`send` refused because the queue was full or the notifier closed.

    Args:
        config: the services, templates and limits.

    Raises:
        InvalidNotificationURLError: (a ``ValueError``) a URL Apprise does not accept; the message
            gives its position and scheme only.
    """

    def __init__(self, config: NotificationConfig) -> None:
        self.config = config
        self._services = [self._load_service(i, url) for i, url in enumerate(config.urls)]
        self._queue: queue.Queue[_Job | object] = queue.Queue(maxsize=int(config.max_queue))
        self._lock = threading.Lock()
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._closed = False
        self._abort = threading.Event()
        self._worker = threading.Thread(target=self._run, name="facetrack-notify", daemon=True)
        self._worker.start()

    def _load_service(self, index: int, url: str) -> _Service:
        """Parse one URL into a one-service Apprise object with socket timeouts capped."""
        _SECRET_FILTER.register(_url_secrets(url))  # before Apprise logs the loaded URL
        # instantiate() takes exactly one URL (Apprise.add(str) would split on spaces and commas).
        plugin = apprise.Apprise.instantiate(url) if _SCHEME_RE.match(url) else None
        if plugin is None:
            raise InvalidNotificationURLError(
                f"notification URL #{index + 1} ({_scheme_of(url)}://…) is not a valid Apprise URL"
            )
        limit = float(self.config.timeout_seconds)
        plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), limit)
        plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), limit)
        apobj = apprise.Apprise()
        if not apobj.add(plugin):
            raise InvalidNotificationURLError(
                f"notification URL #{index + 1} ({_scheme_of(url)}://…) was refused by Apprise"
            )
        return _Service(label=_service_label(plugin, url), apobj=apobj)

    # -- counters ---------------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        """Alerts delivered to every service."""
        with self._lock:
            return self._sent

    @property
    def failed(self) -> int:
        """Alerts that failed or timed out on at least one service."""
        with self._lock:
            return self._failed

    @property
    def dropped(self) -> int:
        """Alerts refused by :meth:`send` (queue full, or notifier closed)."""
        with self._lock:
            return self._dropped

    @property
    def pending(self) -> int:
        """Alerts waiting in the queue (approximate)."""
        return self._queue.qsize()

    @property
    def services(self) -> tuple[str, ...]:
        """The services as ``scheme://host[:port]`` labels (no secrets)."""
        return tuple(s.label for s in self._services)

    def _count(self, *, sent: int = 0, failed: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self._sent += sent
            self._failed += failed
            self._dropped += dropped

    # -- API --------------------------------------------------------------------------------------

    def send(self, context: Mapping[str, object], attachment_jpeg: bytes | None = None) -> bool:
        """Queue one alert; never blocks.

        Args:
            context: template values: ``time``, ``camera``, ``person`` (``None``: unknown person),
                ``similarity`` (float, shown with 2 decimals), ``clip_url``, ``snapshot_url``,
                ``alert_mode``, ``alert_id``; missing keys leave their placeholders as they are.
            attachment_jpeg: JPEG bytes (e.g. the face snapshot) to attach where the service
                supports attachments, or ``None``.

        Returns:
            ``True`` if queued, ``False`` if dropped (queue full — a warning is logged — or the
            notifier is closed). Delivery happens later; its outcome shows in ``sent``/``failed``.
        """
        try:
            job = _Job(
                body=render_template(self.config.message, context),
                title=render_template(self.config.title, context),
                attachment=bytes(attachment_jpeg) if attachment_jpeg else None,
            )
        except Exception as exc:
            self._count(dropped=1)
            log.warning("notification dropped: could not render the message: %s", exc)
            return False
        with self._lock:  # no job may slip in behind close()'s stop marker
            if self._closed:
                self._dropped += 1
                log.debug("notification dropped: notifier closed")
                return False
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self._dropped += 1
                log.warning("notification dropped: queue full (%d alerts waiting)", self.config.max_queue)
                return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting alerts, deliver the queued ones, stop the worker.

        Waits at most ``timeout`` seconds in all. Alerts still queued after that are discarded
        (counted as ``dropped``) and the worker stops after its current delivery. Idempotent.

        Args:
            timeout: seconds to wait for the queue to drain (>= 0).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        self._worker.join(max(0.0, deadline - time.monotonic()))
        if self._worker.is_alive():
            self._abort.set()
            # Wake the worker if it waits on an empty queue; if the queue is full it is busy and
            # sees _abort after the current alert.
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
            log.warning("notifier closed before its queue drained; the alerts still queued are discarded")

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker -----------------------------------------------------------------------------------

    def _run(self) -> None:
        """Worker loop: deliver queued alerts until ``_STOP`` or abort."""
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if not isinstance(item, _Job):  # pragma: no cover - only _Job and _STOP are queued
                continue
            try:
                ok = self._deliver(item)
            except Exception:  # never let one alert kill the worker
                log.exception("notification delivery crashed")
                ok = False
            self._count(sent=int(ok), failed=int(not ok))
            if self._abort.is_set():
                self._discard_pending()
                return

    def _discard_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job):
                self._count(dropped=1)

    def _deliver(self, job: _Job) -> bool:
        """Send one alert to every service in parallel, waiting at most ``timeout_seconds``.

        Returns:
            ``True`` if every service reported success before the deadline.
        """
        shared: _SharedFile | None = None
        if job.attachment is not None:
            fd, path = tempfile.mkstemp(prefix="facetrack-snapshot-", suffix=".jpg")
            with os.fdopen(fd, "wb") as fh:
                fh.write(job.attachment)
            shared = _SharedFile(path, users=len(self._services))

        results: dict[int, bool] = {}
        threads: list[threading.Thread] = []
        for index, service in enumerate(self._services):
            thread = threading.Thread(
                target=self._call_service,
                args=(service, job, shared, results, index),
                name=f"facetrack-notify-{index}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)

        deadline = time.monotonic() + float(self.config.timeout_seconds)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

        all_ok = True
        for index, (service, thread) in enumerate(zip(self._services, threads, strict=True)):
            if thread.is_alive():
                all_ok = False
                log.warning(
                    "notification via %s timed out after %.1f s (abandoned)",
                    service.label,
                    self.config.timeout_seconds,
                )
            elif not results.get(index, False):
                all_ok = False
                log.warning("notification via %s failed", service.label)
        return all_ok

    @staticmethod
    def _call_service(
        service: _Service, job: _Job, shared: _SharedFile | None, results: dict[int, bool], index: int
    ) -> None:
        """Thread body: one Apprise notify call; records the outcome, releases the attachment."""
        ok = False
        try:
            attach = apprise.AppriseAttachment(shared.path) if shared is not None else None
            ok = bool(
                service.apobj.notify(
                    body=job.body,
                    title=job.title,
                    body_format=apprise.NotifyFormat.TEXT,
                    attach=attach,
                )
            )
        except Exception as exc:
            # The exception text could quote the URL; log its type only.
            log.warning("notification via %s raised %s", service.label, type(exc).__name__)
        finally:
            results[index] = ok
            if shared is not None:
                shared.release()
