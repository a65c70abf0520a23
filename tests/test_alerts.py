"""Alert policy: modes, alert once per track, per-person cooldown."""

from __future__ import annotations

import pytest

from facetrack.alerts import AlertPolicy
from facetrack.config.service import AlertConfig, AlertMode
from facetrack.events import TrackEvent


def ev(kind: str, track: int, person_id: str | None = None) -> TrackEvent:
    name = None if person_id is None else person_id.upper()
    return TrackEvent(kind, 0, 0.0, track, name, person_id, 0.7, [0, 0, 10, 10])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "known", "unknown"),
    [
        (AlertMode.NONE, False, False),
        (AlertMode.ON_UNKNOWNS, False, True),
        (AlertMode.ON_KNOWNS, True, False),
        (AlertMode.ON_ALL, True, True),
    ],
)
def test_modes(mode: AlertMode, known: bool, unknown: bool) -> None:
    p = AlertPolicy("door", AlertConfig(alert_mode=mode, cooldown_seconds=0))
    assert (p.consider(ev("identity", 1, "a"), 0.0) is not None) is known
    assert (p.consider(ev("identity", 2, None), 0.0) is not None) is unknown
    # Only decided identities alert: a track merely starting never does.
    assert p.consider(ev("track_started", 3), 0.0) is None


def test_alert_once_per_track_and_cooldown_per_person() -> None:
    p = AlertPolicy("door", AlertConfig(alert_mode=AlertMode.ON_ALL, alert_once=True, cooldown_seconds=30))
    first = p.consider(ev("identity", 1, "a"), 0.0)
    assert first is not None and first.mode is AlertMode.ON_ALL and len(first.alert_id) == 32
    assert p.consider(ev("identity", 1, "b"), 100.0) is None  # same track renamed: alert once
    assert p.consider(ev("identity", 2, "a"), 10.0) is None  # same person, new track, in cooldown
    assert p.consider(ev("identity", 3, "b"), 10.0) is not None  # another person
    assert p.consider(ev("identity", 4, "a"), 31.0) is not None  # cooldown over
    # Unknown faces share a per-camera cooldown.
    assert p.consider(ev("identity", 5, None), 40.0) is not None
    assert p.consider(ev("identity", 6, None), 50.0) is None


def test_without_alert_once_a_renamed_track_alerts_again() -> None:
    p = AlertPolicy("door", AlertConfig(alert_mode=AlertMode.ON_ALL, alert_once=False, cooldown_seconds=0))
    assert p.consider(ev("identity", 1, "a"), 0.0) is not None
    assert p.consider(ev("identity", 1, "b"), 1.0) is not None
    p.consider(ev("track_ended", 1), 2.0)
    assert p.consider(ev("identity", 1, "a"), 3.0) is not None
