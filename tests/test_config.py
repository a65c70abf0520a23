"""Configuration schema: defaults, YAML/JSON loading, clear errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facetrack import notify
from facetrack.config import load_config, parse_config
from facetrack.config.notify import DEFAULT_MESSAGE, NotificationConfig, NotificationSettings
from facetrack.config.service import inbox_path, local_state_dir, parse_service_config
from facetrack.errors import ConfigError


def test_defaults_and_overrides() -> None:
    cfg = parse_config({})
    assert 0.3 <= cfg.cosine_similarity_threshold <= 0.6
    assert cfg.credence_count >= 1 and cfg.reid_expiration_frames >= 2
    cfg = parse_config({"credence_count": 5, "face_filters": {"min_face_size": 40}}, db_path="x.lance")
    assert cfg.credence_count == 5 and cfg.face_filters.min_face_size == 40 and cfg.db_path == "x.lance"
    # Untouched nested defaults survive a partial section.
    assert cfg.face_filters.landmark_sanity is True


def test_yaml_and_json_files(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("cosine_similarity_threshold: 0.45\ntracker:\n  lost_track_seconds: 2\n")
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"reid_expiration_frames": 16, "face_filters": {"pitch_range": [0.2, 0.9]}}))
    a, b = load_config(y), load_config(j)
    assert a.cosine_similarity_threshold == 0.45 and a.tracker.lost_track_seconds == 2.0
    assert b.reid_expiration_frames == 16 and b.face_filters.pitch_range == (0.2, 0.9)
    assert parse_config(a.to_dict()) == a  # round trip


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"credence_cout": 3}, "unknown key 'credence_cout'"),
        ({"face_filters": {"min_scor": 0.5}}, "unknown key 'face_filters.min_scor'"),
        ({"cosine_similarity_threshold": 3}, "'cosine_similarity_threshold'"),
        ({"face_filters": {"min_score": 1.5}}, "'face_filters.min_score': must be between 0 and 1"),
        ({"credence_count": 1}, "'credence_count'"),
        ({"credence_count": "many"}, "'credence_count'"),
        ({"face_filters": {"pitch_range": [0.9, 0.1]}}, "'face_filters.pitch_range'"),
        ({"backend": "tpu"}, "'backend'"),
        (["not", "a", "mapping"], "mapping"),
    ],
)
def test_bad_values_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert message in str(err.value)


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)


# --- the service file's sections: validated once, where they are declared --------------------------

CAMERA = {"name": "cam", "source": "rtsp://h/s"}


@pytest.mark.parametrize(
    ("clips", "key"),
    [
        ({"storage": {"max_total_mb": 0}}, "clips.storage.max_total_mb"),
        ({"storage": {"max_age_days": 0}}, "clips.storage.max_age_days"),
        ({"storage": {"url_expiry_seconds": 8 * 24 * 3600}}, "clips.storage.url_expiry_seconds"),
    ],
)
def test_clip_storage_limits_are_refused_by_the_schema(clips: dict[str, object], key: str) -> None:
    """What clip storage cannot work with is refused while parsing, naming the full key."""
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        parse_service_config({"cameras": [CAMERA], "clips": clips})
    ok = parse_service_config({"cameras": [CAMERA], "clips": {"storage": {"max_total_mb": None, "max_age_days": 0.5}}})
    assert ok.clips.storage.max_total_mb is None and ok.clips.storage.max_age_days == 0.5


def test_one_notification_model() -> None:
    svc = parse_service_config({"cameras": [CAMERA]})
    assert isinstance(svc.notifications, NotificationSettings)
    assert svc.notifications.urls == () and svc.notifications.message == DEFAULT_MESSAGE == notify.DEFAULT_MESSAGE
    assert notify.NotificationConfig is NotificationConfig
    with pytest.raises(ValueError, match="at least one"):
        NotificationConfig.of(svc.notifications)
    svc = parse_service_config({"cameras": [CAMERA], "notifications": {"urls": ["json://h/"], "title": "t"}})
    config = NotificationConfig.of(svc.notifications)
    assert (config.urls, config.title, config.message) == (("json://h/",), "t", DEFAULT_MESSAGE)
    assert "json://h/" not in repr(config)  # URLs hold tokens


def test_local_state_and_inbox_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "lib" / "faces.lance")
    svc = parse_service_config({"db_path": db, "cameras": [CAMERA]})
    assert local_state_dir(db) == tmp_path / "lib"
    assert inbox_path(svc) == tmp_path / "lib" / "inbox.npz"
    svc = parse_service_config({"db_path": db, "cameras": [CAMERA], "inbox": {"path": str(tmp_path / "x.npz")}})
    assert inbox_path(svc) == tmp_path / "x.npz"
    monkeypatch.chdir(tmp_path)
    svc = parse_service_config({"db_path": "s3://bucket/faces", "cameras": [CAMERA]})
    assert inbox_path(svc) == tmp_path / "inbox.npz"
