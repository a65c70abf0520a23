"""Home Assistant app options -> ``facetrack serve`` configuration.

The Supervisor stores the options the user set in the app's Configuration tab in
``/data/options.json`` (schema in ``addon/config.yaml``) and hands out the MQTT broker's
connection details through its services API (``bashio::services mqtt``). The app's run script
passes both to :func:`main`, which writes the YAML file :func:`~facetrack.config.service.load_service_config`
reads::

    FACETRACK_MQTT_PASSWORD=... python -m facetrack.config.addon --options /data/options.json \\
        --mqtt-host core-mosquitto --mqtt-port 1883 --mqtt-username addons \\
        --mqtt-password-env FACETRACK_MQTT_PASSWORD --out /tmp/facetrack.yaml

The broker password is read from the environment variable *named* by ``--mqtt-password-env``,
never from the command line, so it does not show in ``ps``. The output file holds the password
and the Apprise URLs (which embed tokens), so it is written with mode 0600.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from facetrack.config.service import parse_service_config
from facetrack.errors import ConfigError, FaceTrackError

_LOG = logging.getLogger("facetrack.config.addon")

#: Where the ``addon_config`` map is mounted in the app container (face library lives here).
DEFAULT_CONFIG_DIR = "/config"
#: Clips and enrolment photos, inside the ``media`` map.
DEFAULT_MEDIA_DIR = "/media/facetrack"
#: The ingress listener (``ingress_port`` in ``addon/config.yaml``) and the only peer it serves:
#: the Supervisor, which proxies every ingress request after Home Assistant's login.
INGRESS_PORT = 8100
SUPERVISOR_ADDRESS = "172.30.32.2"
#: File name of the face library inside the app config folder.
LIBRARY_NAME = "faces.lance"

#: Every option ``addon/config.yaml`` declares (``options:`` and ``schema:``) -> where it lands in
#: :class:`~facetrack.config.service.ServiceConfig`, as a dotted attribute path (``None``: not the
#: engine's; ``log_level`` is read by the run script only). The one list of app options:
#: ``tests/test_config_addon.py`` checks config.yaml's keys, defaults and ranges against it and the
#: models, and that :func:`options_to_service_config` puts each option at its path.
APP_OPTIONS: Mapping[str, str | None] = {
    "cameras": "cameras",
    "detector_input_size": "defaults.detector_input_size",
    "credence_count": "defaults.credence_count",
    "cosine_similarity_threshold": "defaults.cosine_similarity_threshold",
    "backend": "defaults.backend",
    "degirum_device": "defaults.degirum.device",
    "degirum_host": "defaults.degirum.host",
    "degirum_zoo": "defaults.degirum.zoo",
    "degirum_token": "defaults.degirum.token",
    "alert_mode": "alerts.alert_mode",
    "alert_once": "alerts.alert_once",
    "cooldown_seconds": "alerts.cooldown_seconds",
    "notification_urls": "notifications.urls",
    "notification_message": "notifications.message",
    "http_base_url": "http.base_url",
    "rtsp_base_url": "rtsp.base_url",
    "clip_duration_seconds": "clips.duration_seconds",
    "clip_pre_roll_seconds": "clips.pre_roll_seconds",
    "clip_max_age_days": "clips.storage.max_age_days",
    "clip_max_total_mb": "clips.storage.max_total_mb",
    "topic_prefix": "mqtt.topic_prefix",
    "discovery": "mqtt.discovery",
    "library_uri": "db_path",
    "library_endpoint": "library_storage.endpoint",
    "library_region": "library_storage.region",
    "library_access_key": "library_storage.access_key",
    "library_secret_key": "library_storage.secret_key",
    "library_allow_http": "library_storage.allow_http",
    "library_topic": "mqtt.library_topic",
    "ui_token": "http.ui_token",
    "auto_enrich_gallery": "gallery.auto_enrich",
    "log_level": None,
}
#: The app's defaults (``options:``) that differ from the engine's on purpose; every other
#: option's default in ``addon/config.yaml`` is the model's default at its path.
APP_DEFAULTS: Mapping[str, object] = {
    "cameras": [],  # the engine needs one; the app starts empty and says so (main)
    "degirum_device": "HAILORT/HAILO8L",  # the app targets a Hailo-8L; the engine's is ONNX/CPU
    "log_level": "info",
}
#: Top-level app options that map onto :class:`~facetrack.config.schema.FaceTrackerConfig` keys.
TRACKING_OPTIONS = ("detector_input_size", "credence_count", "cosine_similarity_threshold")
#: App options of the inference backend: ``backend`` and the ``degirum`` section (``degirum_<key>``).
BACKEND_OPTIONS = ("backend", "degirum_device", "degirum_host", "degirum_zoo", "degirum_token")
#: Top-level app options that form the ``alerts`` section.
ALERT_OPTIONS = ("alert_mode", "alert_once", "cooldown_seconds")
#: Every option ``addon/config.yaml`` declares.
KNOWN_OPTIONS = frozenset(APP_OPTIONS)


def _as_bool(value: Any) -> bool:
    """``True``/``False`` from a JSON bool or from bashio's ``"true"``/``"false"`` strings."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "on"}
    return bool(value)


def _optional_str(value: Any) -> str | None:
    """``None`` for a missing or empty value."""
    if value is None:
        return None
    s = str(value)
    return s if s else None


def _from_bashio(value: str | None) -> str | None:
    """A command-line value taken from ``bashio::services``: it prints ``null`` for a null field."""
    return None if value in (None, "", "null") else value


def _mqtt_section(options: Mapping[str, Any], mqtt: Mapping[str, Any] | None) -> dict[str, Any]:
    section: dict[str, Any] = {}
    if mqtt:
        if _optional_str(mqtt.get("host")):
            section["host"] = str(mqtt["host"])
        if mqtt.get("port") not in (None, ""):
            try:
                section["port"] = int(mqtt["port"])
            except (TypeError, ValueError):
                raise ConfigError(f"invalid MQTT port from the Supervisor: {mqtt['port']!r}") from None
        section["username"] = _optional_str(mqtt.get("username"))
        section["password"] = _optional_str(mqtt.get("password"))
        if _as_bool(mqtt.get("ssl", False)):
            section["tls"] = {"enabled": True}
    if options.get("topic_prefix") is not None:
        section["topic_prefix"] = options["topic_prefix"]
    if options.get("discovery") is not None:
        section["discovery"] = _as_bool(options["discovery"])
    if _optional_str(options.get("library_topic")):
        section["library_topic"] = str(options["library_topic"])
    return section


def _library_storage(options: Mapping[str, Any]) -> dict[str, Any]:
    """``library_storage`` of a shared library (``library_uri``; docs/scale-out.md)."""
    storage: dict[str, Any] = {}
    for option, key in (
        ("library_endpoint", "endpoint"),
        ("library_region", "region"),
        ("library_access_key", "access_key"),
        ("library_secret_key", "secret_key"),
    ):
        if _optional_str(options.get(option)):
            storage[key] = str(options[option]).strip()
    if options.get("library_allow_http") is not None:
        storage["allow_http"] = _as_bool(options["library_allow_http"])
    return storage


def _backend(options: Mapping[str, Any], raw: dict[str, Any]) -> None:
    """``backend`` and, for ``degirum``, its section: device, host, zoo and token (secret)."""
    backend = _optional_str(options.get("backend"))
    if backend is None:
        return
    raw["backend"] = backend
    if backend != "degirum":
        return
    section: dict[str, Any] = {}
    for key in ("device", "host", "zoo", "token"):
        value = _optional_str(options.get(f"degirum_{key}"))
        if value is not None and value.strip():
            section[key] = value.strip()
    raw["degirum"] = section


def _camera(entry: Mapping[str, Any]) -> dict[str, Any]:
    # Unknown keys are passed on too: the engine's schema names them in its error message.
    cam = {k: v for k, v in entry.items() if v is not None}
    if isinstance(cam.get("name"), str):
        cam["name"] = cam["name"].strip()
    if isinstance(cam.get("source"), str):
        cam["source"] = cam["source"].strip()
    return cam


def options_to_service_config(
    options: Mapping[str, Any],
    mqtt: Mapping[str, Any] | None,
    config_dir: str = DEFAULT_CONFIG_DIR,
    media_dir: str = DEFAULT_MEDIA_DIR,
) -> dict[str, Any]:
    """Map the app options and the Supervisor's MQTT service info to a ``facetrack serve`` config.

    Args:
        options: the content of ``/data/options.json`` (keys of ``addon/config.yaml``'s schema).
            A missing or ``None`` option is left out, so the engine's default applies.
        mqtt: the Supervisor's MQTT service info (``host``, ``port``, ``username``, ``password``,
            ``ssl``), or ``None`` to keep the engine's broker defaults.
        config_dir: where the ``addon_config`` map is mounted; the face library is
            ``<config_dir>/faces.lance``.
        media_dir: folder for clips and enrolment photos.

    Returns:
        A raw mapping that :func:`facetrack.config.service.parse_service_config` validates. It is
        not validated here (a config without cameras, for example, is returned as is).
    """
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        _LOG.warning("ignoring unknown app option(s): %s", ", ".join(unknown))
    raw: dict[str, Any] = {"db_path": str(PurePosixPath(config_dir) / LIBRARY_NAME)}
    if _optional_str(options.get("library_uri")):  # shared with other instances (scale-out)
        raw["db_path"] = str(options["library_uri"]).strip()
        if library_storage := _library_storage(options):
            raw["library_storage"] = library_storage
    # The unknown-face inbox is this instance's own, in the app config folder (also with a shared
    # library, whose local state would otherwise go to the working directory).
    raw["inbox"] = {"path": str(PurePosixPath(config_dir) / "inbox.npz")}
    if options.get("auto_enrich_gallery") is not None:
        raw["gallery"] = {"auto_enrich": _as_bool(options["auto_enrich_gallery"])}
    for key in TRACKING_OPTIONS:
        if options.get(key) is not None:
            raw[key] = options[key]
    _backend(options, raw)
    raw["cameras"] = [_camera(c) for c in options.get("cameras") or [] if isinstance(c, Mapping)]
    raw["mqtt"] = _mqtt_section(options, mqtt)
    alerts = {k: options[k] for k in ALERT_OPTIONS if options.get(k) is not None}
    if alerts:
        raw["alerts"] = alerts
    notifications: dict[str, Any] = {
        "urls": [str(u).strip() for u in options.get("notification_urls") or [] if str(u).strip()]
    }
    if options.get("notification_message"):
        notifications["message"] = str(options["notification_message"])
    raw["notifications"] = notifications
    raw["media_dir"] = media_dir
    # Evidence: the HTTP server on the app's port, clips in the media folder, the URL secret in
    # /data (kept across updates), the RTSP base the app's MediaMTX serves.
    raw["http"] = {
        "host": "0.0.0.0",  # noqa: S104 - inside the app's container; published as port 8099
        "port": 8099,
        "secret_file": "/data/url_secret",
        # The FaceTrack page: through ingress only, unless a UI token opens it on port 8099 too.
        "ingress_port": INGRESS_PORT,
        "ingress_allow": [SUPERVISOR_ADDRESS],
        **({"ui_token": str(options["ui_token"])} if options.get("ui_token") else {}),
        **({"base_url": str(options["http_base_url"]).rstrip("/")} if options.get("http_base_url") else {}),
    }
    storage: dict[str, Any] = {"path": str(PurePosixPath(media_dir) / "clips")}
    if options.get("clip_max_age_days") is not None:
        storage["max_age_days"] = options["clip_max_age_days"]
    if options.get("clip_max_total_mb") is not None:
        storage["max_total_mb"] = options["clip_max_total_mb"]
    raw["clips"] = {"storage": storage}
    for option, key in (("clip_duration_seconds", "duration_seconds"), ("clip_pre_roll_seconds", "pre_roll_seconds")):
        if options.get(option) is not None:
            raw["clips"][key] = options[option]
    if options.get("rtsp_base_url"):
        raw["rtsp"] = {"base_url": str(options["rtsp_base_url"]).rstrip("/")}
    return raw


def _load_options(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read the app options {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"cannot parse the app options {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the app options {path} must be a JSON object, got {type(data).__name__}")
    return data


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (it holds secrets).

    The file is created 0600 from the start (never briefly world-readable) and replaces any
    previous file in one ``rename``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m facetrack.config.addon``."""
    p = argparse.ArgumentParser(
        prog="python -m facetrack.config.addon",
        description="Write the facetrack serve configuration from the Home Assistant app options.",
    )
    p.add_argument("--options", default="/data/options.json", help="app options (JSON) written by the Supervisor")
    p.add_argument("--mqtt-host", help="broker host from the Supervisor's MQTT service (none: engine default)")
    p.add_argument("--mqtt-port", default="1883", help="broker port")
    p.add_argument("--mqtt-username", default="", help="broker user name")
    p.add_argument(
        "--mqtt-password-env",
        metavar="VAR",
        help="name of the environment variable that holds the broker password (never pass the password itself)",
    )
    p.add_argument("--mqtt-ssl", default="false", help="'true' to connect with TLS")
    p.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, help="app config folder (face library)")
    p.add_argument("--media-dir", default=DEFAULT_MEDIA_DIR, help="clips and enrolment photos")
    p.add_argument("--out", required=True, help="YAML file to write (mode 0600)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write the service configuration; returns the exit code (1 with a message on stderr on error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        options = _load_options(Path(args.options))
        mqtt: dict[str, Any] | None = None
        if _from_bashio(args.mqtt_host):
            password = os.environ.get(args.mqtt_password_env) if args.mqtt_password_env else None
            if args.mqtt_password_env and password is None:
                _LOG.warning("%s is not set: connecting to the broker without a password", args.mqtt_password_env)
            mqtt = {
                "host": args.mqtt_host,
                "port": _from_bashio(args.mqtt_port),
                "username": _from_bashio(args.mqtt_username),
                "password": _from_bashio(password),
                "ssl": _from_bashio(args.mqtt_ssl) or "false",
            }
        raw = options_to_service_config(options, mqtt, config_dir=args.config_dir, media_dir=args.media_dir)
        if not raw["cameras"]:
            raise ConfigError("no camera configured: add one under 'cameras' in the app's Configuration tab")
        service = parse_service_config(raw)
        write_private(Path(args.out), yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    except FaceTrackError as err:
        _LOG.error("%s", err)
        return 1
    except OSError as err:
        _LOG.error("cannot write %s: %s", args.out, err.strerror)
        return 1
    _LOG.info(
        "wrote %s: %d camera(s), broker %s:%d, %d notification URL(s)",
        args.out,
        len(service.cameras),
        service.mqtt.host,
        service.mqtt.port,
        len(service.notifications.urls),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
