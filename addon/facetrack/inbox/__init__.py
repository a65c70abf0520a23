"""The unknown-face inbox: faces of tracks that stayed unknown, grouped by person, to be named.

- :mod:`facetrack.inbox.store`: the clustering store (:class:`UnknownInbox`), persisted in one file.
- :mod:`facetrack.inbox.feature`: the inbox in the running engine (tracks in, MQTT summary and
  events out, signed crop URLs, age-out, saving).
- :mod:`facetrack.inbox.commands`: its command verbs (``inbox_*``).
- :mod:`facetrack.inbox.web`: its routes on the engine's HTTP server and page.

Only the store's names are re-exported here: the other modules depend on the engine's layers
above the store (MQTT payloads, commands, aiohttp), which import this package.
"""

from facetrack.inbox.store import (
    AddResult,
    FaceCrop,
    InboxConfig,
    InboxError,
    InboxGroup,
    NameMode,
    NameResult,
    Rematched,
    UnknownInbox,
)

__all__ = [
    "AddResult",
    "FaceCrop",
    "InboxConfig",
    "InboxError",
    "InboxGroup",
    "NameMode",
    "NameResult",
    "Rematched",
    "UnknownInbox",
]
