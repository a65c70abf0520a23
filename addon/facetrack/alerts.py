"""Alert policy: which identity decisions raise an alert (DeGirum ``AlertMode`` semantics).

An alert is raised only for a confirmed track (``credence_count`` frames) whose identity has been
decided by the vote (:mod:`facetrack.track.identity`): known when a person won the vote, unknown
only after several embeddings of the track stayed below the threshold (``identity.unknown_votes``).
``alert_once`` allows one alert per track; ``cooldown_seconds`` one per person (or, for unknown
faces, per camera) across tracks.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

from facetrack.config.service import AlertConfig, AlertMode
from facetrack.events import TrackEvent

#: Tracks remembered for ``alert_once`` (oldest forgotten beyond; ended tracks are dropped).
_MAX_TRACKS = 1024


@dataclass(frozen=True, slots=True)
class Alert:
    """A raised alert: ``alert_id`` (32 hex), the mode that matched, the identity event behind it."""

    alert_id: str
    camera: str
    mode: AlertMode
    event: TrackEvent


class AlertPolicy:
    """Decides alerts for one camera.

    Args:
        camera: camera name (used in the unknown-face cooldown key).
        config: alert mode, alert-once and cooldown.
    """

    def __init__(self, camera: str, config: AlertConfig) -> None:
        self.camera = camera
        self.config = config
        self._alerted: OrderedDict[int, None] = OrderedDict()
        self._last: dict[str, float] = {}

    def consider(self, event: TrackEvent, now: float) -> Alert | None:
        """An :class:`Alert` for ``event`` if the policy raises one, else ``None``.

        Args:
            event: a track event; only ``identity`` events can alert.
            now: monotonic or epoch seconds (the same clock on every call), for the cooldown.
        """
        if event.type == "track_ended":
            self._alerted.pop(event.track_id, None)
            return None
        if event.type != "identity":
            return None
        known = event.person_id is not None
        mode = self.config.alert_mode
        if (
            mode is AlertMode.NONE
            or (mode is AlertMode.ON_UNKNOWNS and known)
            or (mode is AlertMode.ON_KNOWNS and not known)
        ):
            return None
        if self.config.alert_once and event.track_id in self._alerted:
            return None
        key = f"person:{event.person_id}" if known else f"unknown:{self.camera}"
        last = self._last.get(key)
        if last is not None and now - last < self.config.cooldown_seconds:
            return None
        self._last[key] = now
        self._alerted[event.track_id] = None
        while len(self._alerted) > _MAX_TRACKS:
            self._alerted.popitem(last=False)
        return Alert(uuid.uuid4().hex, self.camera, mode, event)
