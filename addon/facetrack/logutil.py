"""Rate-limited logging: one noisy source (a flooding client, a failing loop) cannot flood the log.

:class:`RateLimitFilter` is a :class:`logging.Filter` that lets ``burst`` records per key through in
each ``interval_s`` window and counts the rest; when a window with suppressed records ends, one
summary record says how many similar messages were dropped. The default key is the logger name,
level and message *template* (``record.msg`` before ``%`` formatting), so messages that differ
only in their arguments (client addresses, counts) share one budget.

Attach it with :func:`rate_limit_loggers` (idempotent). Summaries are written when the next record
with that key arrives, or by :meth:`RateLimitFilter.flush`, which a periodic task may call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Set on summary records so that the filter lets them through.
SUMMARY_ATTR = "facetrack_ratelimit_summary"
#: At most this many keys are tracked; beyond it, expired windows are dropped and then new keys
#: share one overflow budget (bounds memory when messages are built from untrusted text).
MAX_KEYS = 1000
_OVERFLOW_KEY = ("<overflow>",)


def default_key(record: logging.LogRecord) -> Hashable:
    """``(logger name, level, message template)``: the same call site with any arguments."""
    msg = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    return (record.name, record.levelno, msg)


@dataclass(slots=True)
class _Window:
    start: float
    logger: str
    level: int
    template: str
    passed: int = 0
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    """Pass at most ``burst`` records per key per ``interval_s`` seconds; summarise the rest.

    Args:
        burst: records let through per key and window (>= 1).
        interval_s: window length in seconds (> 0).
        key: record -> hashable key; default :func:`default_key`.
        clock: monotonic seconds (tests may pass a fake clock).

    Raises:
        ValueError: ``burst`` < 1 or ``interval_s`` <= 0.
    """

    def __init__(
        self,
        burst: int = 10,
        interval_s: float = 60.0,
        *,
        key: Callable[[logging.LogRecord], Hashable] = default_key,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if burst < 1 or not interval_s > 0:
            raise ValueError("burst must be >= 1 and interval_s > 0")
        self.burst = burst
        self.interval_s = float(interval_s)
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[Hashable, _Window] = {}
        #: Records dropped since creation (all keys).
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is emitted; may first emit the summary of the key's previous window."""
        if getattr(record, SUMMARY_ATTR, False):
            return True
        now = self._clock()
        key = self._key(record)
        summary: _Window | None = None
        with self._lock:
            window = self._windows.get(key)
            if window is None and len(self._windows) >= MAX_KEYS:
                self._expire(now)
                if len(self._windows) >= MAX_KEYS:
                    key = _OVERFLOW_KEY
                    window = self._windows.get(key)
            if window is not None and now - window.start >= self.interval_s:
                summary = window if window.suppressed else None
                window = None
            if window is None:
                template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
                window = self._windows[key] = _Window(now, record.name, record.levelno, template)
            if window.passed < self.burst:
                window.passed += 1
                allowed = True
            else:
                window.suppressed += 1
                self.suppressed_total += 1
                allowed = False
        if summary is not None:
            self._emit(summary)
        return allowed

    def flush(self) -> int:
        """Emit the summaries of every ended window and forget it; returns how many were emitted."""
        with self._lock:
            ended = self._expire(self._clock())
        for window in ended:
            self._emit(window)
        return len(ended)

    def _expire(self, now: float) -> list[_Window]:
        """Drop ended windows (under the lock); returns those with suppressed records."""
        ended = [k for k, w in self._windows.items() if now - w.start >= self.interval_s]
        return [w for w in (self._windows.pop(k) for k in ended) if w.suppressed]

    def _emit(self, window: _Window) -> None:
        logging.getLogger(window.logger).log(
            window.level,
            "%d similar messages suppressed in %.0f s: %.200s",
            window.suppressed,
            self.interval_s,
            window.template,
            extra={SUMMARY_ATTR: True},
        )


def rate_limit_loggers(names: tuple[str, ...], burst: int = 10, interval_s: float = 60.0) -> RateLimitFilter:
    """Attach one shared :class:`RateLimitFilter` to each named logger; idempotent.

    A logger filter sees only records logged on that logger itself (not its children), so list
    every logger concerned. If one of them already has a :class:`RateLimitFilter`, that filter is
    reused for all (``burst``/``interval_s`` of the first call win).
    """
    loggers = [logging.getLogger(n) for n in names]
    existing = next((f for lg in loggers for f in lg.filters if isinstance(f, RateLimitFilter)), None)
    shared = existing if existing is not None else RateLimitFilter(burst, interval_s)
    for lg in loggers:
        if shared not in lg.filters:
            lg.addFilter(shared)
    return shared
