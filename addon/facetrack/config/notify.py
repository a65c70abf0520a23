"""Notification settings (``notifications.*``): Apprise URLs, message templates, time limit.

One model for the service configuration (:class:`NotificationSettings`, which may hold no URL:
notifications off) and for :class:`facetrack.notify.Notifier` (:class:`NotificationConfig`, the
same fields, with at least one URL). The vocabulary is DeGirum's: ``notification_config`` is the
URLs, ``notification_message`` the message template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import voluptuous as vol

#: The message template, ``string.Template`` syntax (the app's ``notification_message`` default).
DEFAULT_MESSAGE: Final = "${person} seen on ${camera} at ${time} (similarity ${similarity})"
DEFAULT_TITLE: Final = "FaceTrack: ${camera}"


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """Where and what to notify.

    Attributes:
        urls: Apprise URLs, one per service (``notification_config``), e.g.
            ``mailto://user:pass@example.com``, ``ntfy://ntfy.sh/topic``, ``json://host:port/path``.
            A bare string is accepted and treated as one URL; none: notifications are off. They
            carry tokens: never in ``repr``.
        message: body template (``notification_message``), ``string.Template`` syntax
            (``${person}``); see :data:`facetrack.notify.TEMPLATE_KEYS` for the keys.
        title: title template, same syntax.
        timeout_seconds: upper bound, in seconds, on delivering one alert to all services (> 0).
        max_queue: alerts waiting for delivery before the notifier starts dropping (>= 1).

    Raises:
        ValueError: a URL that is not a string, ``timeout_seconds`` <= 0 or ``max_queue`` < 1.
            URL syntax is checked by :class:`facetrack.notify.Notifier`.
    """

    urls: tuple[str, ...] = field(default=(), repr=False)
    message: str = DEFAULT_MESSAGE
    title: str = DEFAULT_TITLE
    timeout_seconds: float = 10.0
    max_queue: int = 100

    def __post_init__(self) -> None:
        urls: object = self.urls
        if isinstance(urls, str):
            urls = (urls,)
        if not isinstance(urls, tuple | list):
            raise ValueError("notification urls must be a sequence of Apprise URL strings")
        if not all(isinstance(u, str) for u in urls):
            raise ValueError("notification urls must be strings")
        object.__setattr__(self, "urls", tuple(urls))
        if not self.timeout_seconds > 0:
            raise ValueError(f"notification timeout_seconds must be > 0, got {self.timeout_seconds!r}")
        if int(self.max_queue) < 1:
            raise ValueError(f"notification max_queue must be >= 1, got {self.max_queue!r}")


@dataclass(frozen=True, slots=True)
class NotificationConfig(NotificationSettings):
    """:class:`NotificationSettings` a :class:`facetrack.notify.Notifier` delivers to: at least one URL.

    Raises:
        ValueError: as :class:`NotificationSettings`, or no URL.
    """

    def __post_init__(self) -> None:
        NotificationSettings.__post_init__(self)  # zero-argument super() fails in slotted dataclasses
        if not self.urls:
            raise ValueError("notification urls: at least one Apprise URL is required")

    @classmethod
    def of(cls, settings: NotificationSettings) -> NotificationConfig:
        """The same settings, for a notifier.

        Raises:
            ValueError: ``settings`` holds no URL.
        """
        return cls(settings.urls, settings.message, settings.title, settings.timeout_seconds, settings.max_queue)


#: ``notifications`` section of a configuration file.
NOTIFICATIONS_SCHEMA = vol.Schema(
    {
        vol.Optional("urls"): vol.Any(None, [vol.All(str, vol.Length(min=3))]),
        vol.Optional("message"): vol.All(str, vol.Length(min=1, max=1000)),
        vol.Optional("title"): vol.All(str, vol.Length(max=200)),
        vol.Optional("timeout_seconds"): vol.All(vol.Coerce(float), vol.Range(min=0.5, max=120)),
    }
)
