"""One place to add an option: the app's option schema (``addon/config.yaml``) against the models.

:data:`facetrack.config.addon.APP_OPTIONS` lists every app option and where it lands in
:class:`~facetrack.config.service.ServiceConfig`. These tests check that config.yaml declares
exactly those options, that its defaults are the models' (or the app's own, listed in
:data:`~facetrack.config.addon.APP_DEFAULTS`), that every value its schema accepts is accepted by
the engine too (so a value the app's form takes never fails later, at the engine's start), and
that :func:`~facetrack.config.addon.options_to_service_config` puts each option at its path.
(``tests/test_addon.py`` checks the schema's syntax, translations and docs.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from facetrack.config.addon import APP_DEFAULTS, APP_OPTIONS, KNOWN_OPTIONS, options_to_service_config
from facetrack.config.notify import DEFAULT_MESSAGE
from facetrack.config.service import ServiceConfig, parse_service_config
from facetrack.errors import ConfigError

ADDON = Path(__file__).resolve().parents[1] / "addon"
MQTT = {"host": "core-mosquitto", "port": 1883, "username": "addons", "password": "pw", "ssl": False}
CAMERA = {"name": "cam", "source": "rtsp://h/s"}
#: Options that only take effect with others set.
NEEDS: dict[str, dict[str, Any]] = {
    **{k: {"backend": "degirum"} for k in ("degirum_host", "degirum_zoo", "degirum_token")},
    **{
        k: {"library_uri": "s3://bucket/faces", "library_allow_http": True}
        for k in ("library_endpoint", "library_region", "library_access_key", "library_secret_key")
    },
    "library_allow_http": {"library_uri": "s3://bucket/faces"},
}
#: A value of each option other than its default, and what the engine's configuration then
#: holds at the option's path (when it differs from the value as given).
SAMPLES: dict[str, Any] = {
    "detector_input_size": 960,
    "credence_count": 5,
    "cosine_similarity_threshold": 0.45,
    "backend": "degirum",
    "degirum_device": "ONNX/CPU",
    "degirum_host": "ai.lan",
    "degirum_zoo": "https://hub.example/zoo",
    "degirum_token": "tok-123",
    "alert_mode": "ON_ALL",
    "alert_once": False,
    "cooldown_seconds": 5,
    "notification_urls": ["ntfy://ntfy.sh/facetrack"],
    "notification_message": "${person} at the door",
    "http_base_url": "http://ha.lan:8099/",
    "rtsp_base_url": "rtsp://ha.lan:8554/",
    "clip_duration_seconds": 20,
    "clip_pre_roll_seconds": 1.5,
    "clip_max_age_days": 7,
    "clip_max_total_mb": 100,
    "topic_prefix": "home/ft",
    "discovery": True,
    "auto_enrich_gallery": True,
    "library_uri": "s3://bucket/faces",
    "library_endpoint": "http://minio.lan:9000",
    "library_region": "eu-west-1",
    "library_access_key": "AK",
    "library_secret_key": "SK",
    "library_allow_http": True,
    "library_topic": "shared/library",
    "ui_token": "t" * 20,
}
EXPECTED: dict[str, Any] = {
    "notification_urls": ("ntfy://ntfy.sh/facetrack",),
    "http_base_url": "http://ha.lan:8099",
    "rtsp_base_url": "rtsp://ha.lan:8554",
}
_NUMBER = re.compile(r"(int|float|str|password)(?:\(([\d.]*),([\d.]*)\))?")


@pytest.fixture(scope="module")
def app() -> dict[str, Any]:
    data = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def defaults() -> ServiceConfig:
    """The engine's configuration with nothing but one camera set: the models' defaults."""
    return parse_service_config({"cameras": [CAMERA]})


def _at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, Mapping) else getattr(obj, part)
    return obj


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _service(app: dict[str, Any], **options: Any) -> ServiceConfig:
    """The app's defaults with ``options`` on top, through the mapping and the engine's parser."""
    merged = {**app["options"], "cameras": [CAMERA], **options}
    return parse_service_config(options_to_service_config(merged, MQTT))


def test_every_app_option_is_in_the_table_and_back(app: dict[str, Any]) -> None:
    declared = set(app["options"]) | set(app["schema"])
    assert declared == set(APP_OPTIONS), f"config.yaml only: {declared - set(APP_OPTIONS)}, table only: " + str(
        set(APP_OPTIONS) - declared
    )
    assert set(APP_OPTIONS) == KNOWN_OPTIONS
    assert set(APP_DEFAULTS) <= set(app["options"])


def test_app_defaults_are_the_models(app: dict[str, Any], defaults: ServiceConfig) -> None:
    for key, value in app["options"].items():
        path = APP_OPTIONS[key]
        expected = APP_DEFAULTS[key] if key in APP_DEFAULTS else _at(defaults, str(path))
        assert value == _plain(expected), f"{key}: config.yaml says {value!r}, the engine {expected!r} ({path})"


def test_default_message_is_written_once() -> None:
    app = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
    assert app["options"]["notification_message"] == DEFAULT_MESSAGE
    assert DEFAULT_MESSAGE in (ADDON / "DOCS.md").read_text(encoding="utf-8")


def _probes(typ: str | list[str]) -> list[Any]:
    """Values at the edges of what an app option type accepts (far out where it sets no bound)."""
    if isinstance(typ, list):  # a list of values: one-element lists of each probe
        return [[v] for v in _probes(typ[0])]
    base = typ.removesuffix("?")
    if m := _NUMBER.fullmatch(base):
        kind, lo, hi = m.groups()
        if kind in ("int", "float"):
            number = int if kind == "int" else float
            return [number(lo) if lo else -(10**6), number(hi) if hi else 10**6]
        return ["x" * int(lo or 1), "x" * int(hi or 1000)]  # an empty string is no value (left out)
    if base == "bool":
        return [True, False]
    if base.startswith("list("):
        return base[len("list(") : -1].split("|")
    if base == "url":
        return ["http://host.lan:8099", "https://host.lan/path"]
    return []  # match(...): tests/test_addon.py checks the patterns against the engine's rules


def _schema_probes(app: dict[str, Any]) -> list[tuple[str, str, Any]]:
    out = []
    for key, typ in app["schema"].items():
        if key == "cameras":
            out += [(f"cameras.{k}", k, v) for k, t in typ[0].items() for v in _probes(t)]
        elif APP_OPTIONS[key] is not None:
            out += [(key, key, v) for v in _probes(typ)]
    return out


def test_the_engine_accepts_whatever_the_app_schema_accepts(app: dict[str, Any]) -> None:
    probes = _schema_probes(app)
    assert len(probes) > 40
    refused = []
    for where, key, value in probes:
        try:
            if where.startswith("cameras."):
                raw = options_to_service_config({**app["options"], "cameras": [{**CAMERA, key: value}]}, MQTT)
                parse_service_config(raw)
            else:
                _service(app, **{**NEEDS.get(key, {}), key: value})
        except ConfigError as err:
            refused.append(f"{where}={str(value)[:40]!r}: {err}")
    assert not refused, "config.yaml's schema accepts what the engine refuses:\n" + "\n".join(refused)


def test_each_option_lands_at_its_path(app: dict[str, Any], defaults: ServiceConfig) -> None:
    mapped = {k for k, path in APP_OPTIONS.items() if path is not None and k != "cameras"}
    assert set(SAMPLES) == mapped, set(SAMPLES) ^ mapped
    svc = _service(app, **SAMPLES)
    for key, value in SAMPLES.items():
        path = str(APP_OPTIONS[key])
        expected = EXPECTED.get(key, value)
        assert _at(svc, path) == expected, f"{key} -> {path}: {_at(svc, path)!r}"
        try:
            default = _at(defaults, path)
        except KeyError:  # a key of the degirum section: absent until given
            continue
        assert default != expected, f"{key}: the sample is the default, it proves nothing"
