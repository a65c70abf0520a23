"""ServiceConfig: ``facetrack serve`` (several cameras, MQTT, alerts, notifications).

The file holds the :class:`~facetrack.config.schema.FaceTrackerConfig` keys at the top level
(defaults for every camera, and the shared ``db_path``), plus ``mqtt``, ``alerts``,
``notifications`` and ``cameras``. Each camera may override the per-camera keys listed in
:data:`CAMERA_OVERRIDES`. See ``docs/configuration.md``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from facetrack.config.gallery import GALLERY_SCHEMA, GalleryConfig
from facetrack.config.inbox import INBOX_SCHEMA, InboxConfig
from facetrack.config.notify import NOTIFICATIONS_SCHEMA, NotificationSettings
from facetrack.config.schema import CONFIG_SCHEMA, FaceTrackerConfig, parse_config, read_config_file
from facetrack.config.storage import STORAGE_SCHEMA, StorageConfig
from facetrack.errors import ConfigError
from facetrack.objectstore import is_uri

_LOG = logging.getLogger(__name__)

__all__ = [
    "CAMERA_OVERRIDES",
    "RESERVED_CAMERA_NAMES",
    "AlertConfig",
    "AlertMode",
    "CameraConfig",
    "ClipsConfig",
    "GalleryConfig",
    "HTTPConfig",
    "InboxConfig",
    "LibraryStorageConfig",
    "MQTTConfig",
    "NotificationSettings",
    "RTSPConfig",
    "ServiceConfig",
    "StorageConfig",
    "TLSConfig",
    "defaults_db_path",
    "inbox_path",
    "load_service_config",
    "local_state_dir",
    "parse_service_config",
]


class AlertMode(StrEnum):
    """When a confirmed track raises an alert (DeGirum ``AlertMode``)."""

    NONE = "NONE"
    ON_UNKNOWNS = "ON_UNKNOWNS"
    ON_KNOWNS = "ON_KNOWNS"
    ON_ALL = "ON_ALL"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """MQTT over TLS: ``ca_file`` (PEM) to verify the broker, optional client certificate,
    ``insecure`` to skip hostname verification (self-signed test brokers only)."""

    enabled: bool = False
    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class MQTTConfig:
    """Broker connection and topic layout (``docs/mqtt.md``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "facetrack"
    topic_prefix: str = "facetrack"
    keepalive: int = 30
    tls: TLSConfig = field(default_factory=TLSConfig)
    discovery: bool = False
    discovery_prefix: str = "homeassistant"
    #: Where library changes are announced (``docs/scale-out.md``); instances sharing a face
    #: library set the same topic. Default ``<topic_prefix>/library``.
    library_topic: str = "facetrack/library"
    #: Bound on the QoS 1 messages kept while the broker is unreachable (bytes of topic + payload);
    #: beyond it the oldest non-alerts are dropped first (``docs/configuration.md``).
    outbox_limit_bytes: int = 16 << 20


@dataclass(frozen=True, slots=True)
class LibraryStorageConfig:
    """Object store of a shared face library (``db_path: s3://bucket/path``; ``docs/scale-out.md``).

    Attributes:
        endpoint: S3 API URL (``http://minio.lan:9000``); ``None`` for AWS S3.
        region: bucket region (``us-east-1`` if not set; MinIO accepts any).
        access_key / secret_key / session_token: credentials; ``None`` uses the ``AWS_*``
            environment variables. Never logged.
        allow_http: required for a plain ``http://`` endpoint (a trusted LAN or loopback only:
            keys and faces travel unencrypted).
        options: further LanceDB ``storage_options`` passed as they are (``timeout``,
            ``client_max_retries``...).
    """

    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    allow_http: bool = False
    options: dict[str, str] = field(default_factory=dict, repr=False)

    def storage_options(self) -> dict[str, str]:
        """LanceDB ``storage_options`` (``object_store`` key names)."""
        out = dict(self.options)
        for key, value in (
            ("aws_endpoint", self.endpoint),
            ("aws_region", self.region),
            ("aws_access_key_id", self.access_key),
            ("aws_secret_access_key", self.secret_key),
            ("aws_session_token", self.session_token),
        ):
            if value:
                out[key] = value
        if self.allow_http:
            out["allow_http"] = "true"
        return out


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Alert policy.

    Attributes:
        alert_mode: which confirmed tracks alert.
        alert_once: at most one alert per track.
        cooldown_seconds: at most one alert per person (or for unknown faces, per camera) within
            this many seconds, across tracks.
    """

    alert_mode: AlertMode = AlertMode.ON_UNKNOWNS
    alert_once: bool = True
    cooldown_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    """The engine's HTTP server: snapshots, MJPEG streams and signed clip URLs.

    Attributes:
        enabled: serve at all.
        host / port: where to listen (``0.0.0.0`` for the LAN, ``127.0.0.1`` for this machine).
        base_url: how clients reach it (``http://homeassistant.local:8099``); default
            ``http://<host>:<port>``. Clip URLs and the URLs in the camera state use it.
        stream_token: token required by the snapshot and MJPEG endpoints; ``"auto"`` derives a
            stable one from the URL-signing secret, ``None`` leaves them open (trusted networks).
        secret_file: the 256-bit URL-signing secret (created 0600 on first start); default next to
            the face library.
        ingress_port: a second listener for Home Assistant ingress (the face library page and
            its API, streams, clips) without tokens, for ``ingress_allow`` peers only; None: none.
        ingress_host: where it listens (default: ``host``).
        ingress_allow: peer addresses the ingress listener accepts (the Supervisor's,
            ``172.30.32.2``, which proxies every ingress request).
        ui_token: the face library page and its API on the main port (``host``/``port``) need
            this token (``?token=`` once, then a cookie; or a Bearer header); None (default):
            the page is served through ingress only.
        header_timeout_seconds / keepalive_timeout_seconds / body_timeout_seconds /
            max_connections: limits of each listener (``facetrack.web.limits.HttpLimits``;
            ``max_connections`` None: derived from the file-handle limit).
    """

    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104 - an app serving cameras to the LAN; see stream_token
    port: int = 8099
    base_url: str | None = None
    stream_token: str | None = "auto"  # noqa: S105 - a mode, not a secret
    secret_file: str | None = None
    ingress_port: int | None = None
    ingress_host: str | None = None
    ingress_allow: tuple[str, ...] = ("172.30.32.2",)
    ui_token: str | None = field(default=None, repr=False)
    header_timeout_seconds: float = 10.0
    keepalive_timeout_seconds: float = 60.0
    body_timeout_seconds: float = 60.0
    max_connections: int | None = None


#: The frame rate the deprecated frame counts ``clips.clip_duration`` / ``clips.pre_roll`` are
#: converted to seconds with (their old defaults, 100 and 25 frames, meant 4 s and 1 s at it).
LEGACY_CLIP_FPS = 25.0
#: Longest clip and pre-roll, seconds.
MAX_CLIP_SECONDS = 300.0
MAX_PRE_ROLL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ClipsConfig:
    """Alert clips and where they are stored.

    Attributes:
        duration_seconds: seconds per clip, pre-roll included (1-300); the recorder turns it into
            frames with the camera's processing rate.
        pre_roll_seconds: seconds before the alert (0-30; at most ``duration_seconds`` minus one
            frame), held in memory as decoded frames.
    """

    enabled: bool = True
    duration_seconds: float = 10.0
    pre_roll_seconds: float = 2.0
    storage: StorageConfig = field(default_factory=StorageConfig)


@dataclass(frozen=True, slots=True)
class RTSPConfig:
    """Where the annotated streams are published: ``base_url`` such as
    ``rtsp://homeassistant.local:8554`` (the HA app's MediaMTX), giving ``<base_url>/<camera>``
    in each camera's state; ``None`` advertises only the MJPEG stream."""

    base_url: str | None = None


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera: a unique ``name`` (``[a-z0-9_]``, used in topics), its ``source`` (file,
    ``rtsp://`` URL or webcam index), its tracking config (defaults + overrides) and alerts.
    ``fps`` caps the processing rate (frames/s; frames in between are decoded and dropped, as
    Frigate's detect fps); ``None`` processes every frame. Frame counts in the tracking config
    (``credence_count``, ``reid_expiration_frames``) then count processed frames. Of the processed
    frames, the motion gate (``tracking.motion_gate``, ``tracking.detect_fps``,
    ``tracking.motion_detect_fps``) runs the face detector only on those where something moved (at
    most ``motion_detect_fps`` a second while nothing is tracked, if set) or a track is alive, plus
    ``detect_fps`` a second."""

    name: str
    source: str | int
    tracking: FaceTrackerConfig
    alerts: AlertConfig
    enabled: bool = True
    fps: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything ``facetrack serve`` needs."""

    defaults: FaceTrackerConfig
    cameras: tuple[CameraConfig, ...]
    mqtt: MQTTConfig = field(default_factory=MQTTConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    media_dir: str | None = None
    reconnect_max_seconds: float = 60.0
    #: Seconds a network camera may stay silent (opening, then between frames) before it is reopened.
    source_timeout_seconds: float = 20.0
    http: HTTPConfig = field(default_factory=HTTPConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    rtsp: RTSPConfig = field(default_factory=RTSPConfig)
    library_storage: LibraryStorageConfig = field(default_factory=LibraryStorageConfig)
    #: Seconds between checks for library changes made by other instances (0: on notice only).
    library_refresh_seconds: float = 10.0
    inbox: InboxConfig = field(default_factory=InboxConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)

    @property
    def db_path(self) -> str:
        """The face library shared by every camera."""
        return self.defaults.db_path


#: Per-camera keys a camera entry may override (besides ``name``, ``source``, ``enabled``).
CAMERA_OVERRIDES = (
    "detector_input_size",
    "detection_score_threshold",
    "cosine_similarity_threshold",
    "credence_count",
    "reid_expiration_frames",
    "scene_cut_threshold",
    "motion_gate",
    "detect_fps",
    "motion_detect_fps",
    "face_filters",
    "tracker",
    "identity",
)
_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
_TOPIC = re.compile(r"^[A-Za-z0-9_\-/]{1,64}$")


def _topic_prefix(v: Any) -> str:
    s = str(v).strip("/")
    if not _TOPIC.match(s) or "//" in s:
        raise vol.Invalid("must be letters, digits, '_', '-' and '/' (no MQTT wildcards)")
    return s


#: Topic levels under ``<prefix>/`` that are not cameras (docs/mqtt.md): a camera of that name
#: would publish its ``<prefix>/<camera>/...`` topics among them (``seen/state`` read as a sighting).
RESERVED_CAMERA_NAMES = frozenset({"status", "info", "persons", "inbox", "seen", "command", "response", "library"})


def _camera_name(v: Any) -> str:
    s = str(v)
    if not _NAME.match(s):
        raise vol.Invalid("must be 1-32 characters of a-z, 0-9 and '_' (it is used in MQTT topics)")
    if s in RESERVED_CAMERA_NAMES:
        reserved = ", ".join(sorted(RESERVED_CAMERA_NAMES))
        raise vol.Invalid(f"{s!r} is an MQTT topic of the engine itself; reserved names: {reserved}")
    return s


_ALERT_MODE = vol.All(vol.Upper, vol.In([m.value for m in AlertMode]))
ALERTS_SCHEMA = vol.Schema(
    {
        vol.Optional("alert_mode"): _ALERT_MODE,
        vol.Optional("alert_once"): bool,
        vol.Optional("cooldown_seconds"): vol.All(vol.Coerce(float), vol.Range(min=0)),
    }
)
_camera_keys: dict[Any, Any] = {
    vol.Required("name"): _camera_name,
    vol.Required("source"): vol.Any(vol.All(str, vol.Length(min=1)), vol.All(int, vol.Range(min=0))),
    vol.Optional("enabled"): bool,
    vol.Optional("fps"): vol.Any(None, vol.All(vol.Coerce(float), vol.Range(min=0.5, max=120))),
    **{k: v for k, v in CONFIG_SCHEMA.schema.items() if str(k) in CAMERA_OVERRIDES},
    **ALERTS_SCHEMA.schema,
}
CAMERA_SCHEMA = vol.Schema(_camera_keys)
SERVICE_SCHEMA = vol.Schema(
    {
        **{k: v for k, v in CONFIG_SCHEMA.schema.items() if str(k) != "video_source"},
        vol.Required("cameras"): vol.All([CAMERA_SCHEMA], vol.Length(min=1)),
        vol.Optional("mqtt"): vol.Schema(
            {
                vol.Optional("host"): vol.All(str, vol.Length(min=1)),
                vol.Optional("port"): vol.All(vol.Coerce(int), vol.Range(min=1, max=65535)),
                vol.Optional("username"): vol.Any(None, str),
                vol.Optional("password"): vol.Any(None, str),
                vol.Optional("client_id"): vol.All(str, vol.Length(min=1, max=64)),
                vol.Optional("topic_prefix"): _topic_prefix,
                vol.Optional("keepalive"): vol.All(vol.Coerce(int), vol.Range(min=5, max=3600)),
                vol.Optional("tls"): vol.Schema(
                    {
                        vol.Optional("enabled"): bool,
                        vol.Optional("ca_file"): vol.Any(None, str),
                        vol.Optional("certfile"): vol.Any(None, str),
                        vol.Optional("keyfile"): vol.Any(None, str),
                        vol.Optional("insecure"): bool,
                    }
                ),
                vol.Optional("discovery"): bool,
                vol.Optional("discovery_prefix"): _topic_prefix,
                vol.Optional("library_topic"): _topic_prefix,
                vol.Optional("outbox_limit_bytes"): vol.All(vol.Coerce(int), vol.Range(min=64 << 10, max=1 << 30)),
            }
        ),
        vol.Optional("alerts"): ALERTS_SCHEMA,
        vol.Optional("notifications"): NOTIFICATIONS_SCHEMA,
        vol.Optional("media_dir"): vol.Any(None, str),
        vol.Optional("http"): vol.Schema(
            {
                vol.Optional("enabled"): bool,
                vol.Optional("host"): vol.All(str, vol.Length(min=1)),
                vol.Optional("port"): vol.All(vol.Coerce(int), vol.Range(min=0, max=65535)),
                vol.Optional("base_url"): vol.Any(None, vol.All(str, vol.Match(r"^https?://[^\s]+$"))),
                vol.Optional("stream_token"): vol.Any(None, vol.All(str, vol.Length(min=4, max=200))),
                vol.Optional("secret_file"): vol.Any(None, str),
                vol.Optional("ingress_port"): vol.Any(None, vol.All(vol.Coerce(int), vol.Range(min=0, max=65535))),
                vol.Optional("ingress_host"): vol.Any(None, vol.All(str, vol.Length(min=1))),
                vol.Optional("ingress_allow"): vol.All([vol.All(str, vol.Length(min=1))], vol.Length(min=1)),
                vol.Optional("ui_token"): vol.Any(None, vol.All(str, vol.Length(min=16, max=200))),
                vol.Optional("header_timeout_seconds"): vol.All(vol.Coerce(float), vol.Range(min=0.5, max=300)),
                vol.Optional("keepalive_timeout_seconds"): vol.All(vol.Coerce(float), vol.Range(min=0.5, max=3600)),
                vol.Optional("body_timeout_seconds"): vol.All(vol.Coerce(float), vol.Range(min=0.5, max=3600)),
                vol.Optional("max_connections"): vol.Any(None, vol.All(vol.Coerce(int), vol.Range(min=1, max=100000))),
            }
        ),
        vol.Optional("clips"): vol.Schema(
            {
                vol.Optional("enabled"): bool,
                vol.Optional("duration_seconds"): vol.All(vol.Coerce(float), vol.Range(min=1.0, max=MAX_CLIP_SECONDS)),
                vol.Optional("pre_roll_seconds"): vol.All(
                    vol.Coerce(float), vol.Range(min=0.0, max=MAX_PRE_ROLL_SECONDS)
                ),
                # Deprecated: frame counts (converted at LEGACY_CLIP_FPS, with a warning).
                vol.Optional("clip_duration"): vol.All(vol.Coerce(int), vol.Range(min=2, max=3000)),
                vol.Optional("pre_roll"): vol.All(vol.Coerce(int), vol.Range(min=0, max=750)),
                vol.Optional("storage"): STORAGE_SCHEMA,
            }
        ),
        vol.Optional("rtsp"): vol.Schema(
            {vol.Optional("base_url"): vol.Any(None, vol.All(str, vol.Match(r"^rtsps?://[^\s]+$")))}
        ),
        vol.Optional("reconnect_max_seconds"): vol.All(vol.Coerce(float), vol.Range(min=1, max=3600)),
        vol.Optional("source_timeout_seconds"): vol.All(vol.Coerce(float), vol.Range(min=1, max=600)),
        vol.Optional("library_storage"): vol.Schema(
            {
                vol.Optional("endpoint"): vol.Any(None, vol.All(str, vol.Match(r"^https?://[^\s/]+(/[^\s]*)?$"))),
                vol.Optional("region"): vol.Any(None, vol.All(str, vol.Length(min=1, max=64))),
                vol.Optional("access_key"): vol.Any(None, str),
                vol.Optional("secret_key"): vol.Any(None, str),
                vol.Optional("session_token"): vol.Any(None, str),
                vol.Optional("allow_http"): bool,
                vol.Optional("options"): {vol.All(str, vol.Length(min=1)): vol.Coerce(str)},
            }
        ),
        vol.Optional("library_refresh_seconds"): vol.All(vol.Coerce(float), vol.Range(min=0, max=3600)),
        vol.Optional("inbox"): INBOX_SCHEMA,
        vol.Optional("gallery"): GALLERY_SCHEMA,
    }
)


def _errors(err: vol.MultipleInvalid) -> str:
    out = []
    for e in err.errors:
        path = ".".join(str(p) for p in e.path) or "<root>"
        if e.error_message == "extra keys not allowed":
            out.append(f"unknown key '{path}'")
        else:
            out.append(f"'{path}': {e.error_message}")
    return "; ".join(out)


def parse_service_config(raw: Any) -> ServiceConfig:
    """Validate a raw mapping into a :class:`ServiceConfig`.

    Raises:
        ConfigError: unknown key or bad value (named, e.g. ``cameras.1.source``), duplicate
            camera names, or a TLS file that does not exist.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration must be a mapping of keys to values, got {type(raw).__name__}")
    try:
        data = SERVICE_SCHEMA(raw)
    except vol.MultipleInvalid as err:
        raise ConfigError("invalid configuration: " + _errors(err)) from None
    cams_raw = data.pop("cameras")
    mqtt_raw = data.pop("mqtt", {})
    alerts_raw = data.pop("alerts", {})
    notif_raw = data.pop("notifications", {}) or {}
    media_dir = data.pop("media_dir", None)
    reconnect = data.pop("reconnect_max_seconds", 60.0)
    source_timeout = data.pop("source_timeout_seconds", 20.0)
    http_raw = dict(data.pop("http", {}))
    if "ingress_allow" in http_raw:
        http_raw["ingress_allow"] = tuple(http_raw["ingress_allow"])
    http = HTTPConfig(**http_raw)
    clips_raw = dict(data.pop("clips", {}))
    storage_raw = dict(clips_raw.pop("storage", {}))
    library_storage, refresh = _library_settings(data)
    # Outside the HA app, clips go next to the face library unless a path is given (next to the
    # working directory for a library on S3, like the URL secret).
    storage_raw.setdefault("path", str(local_state_dir(defaults_db_path(data)) / "clips"))
    if is_uri(defaults_db_path(data)) and not http.secret_file:
        http = replace(http, secret_file=str(local_state_dir(defaults_db_path(data)) / "url_secret"))
    storage = StorageConfig(**storage_raw)  # ConfigError names the bad key
    clips = ClipsConfig(**_clip_seconds(clips_raw), storage=storage)
    rtsp = RTSPConfig(**data.pop("rtsp", {}))
    inbox = InboxConfig(**data.pop("inbox", {}))
    gallery = GalleryConfig(**data.pop("gallery", {}))
    defaults = parse_config(data)
    alerts = AlertConfig(
        **{**alerts_raw, **({"alert_mode": AlertMode(alerts_raw["alert_mode"])} if "alert_mode" in alerts_raw else {})}
    )
    names = [c["name"] for c in cams_raw]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"invalid configuration: duplicate camera name(s) {', '.join(dupes)}")
    cameras = []
    for cam in cams_raw:
        overrides = {k: cam[k] for k in CAMERA_OVERRIDES if k in cam}
        merged = {**data, **overrides}
        for nested in ("face_filters", "tracker", "identity"):
            if nested in data and nested in overrides:
                merged[nested] = {**data[nested], **overrides[nested]}
        cam_alerts = {k: cam[k] for k in ("alert_mode", "alert_once", "cooldown_seconds") if k in cam}
        if "alert_mode" in cam_alerts:
            cam_alerts["alert_mode"] = AlertMode(cam_alerts["alert_mode"])
        cameras.append(
            CameraConfig(
                name=cam["name"],
                source=cam["source"],
                tracking=parse_config(merged),
                alerts=AlertConfig(**{**_alert_dict(alerts), **cam_alerts}),
                enabled=cam.get("enabled", True),
                fps=cam.get("fps"),
            )
        )
    tls = TLSConfig(**mqtt_raw.pop("tls", {}))
    # Two clients with one id on a broker push each other off: derive it from the (unique per
    # instance) topic prefix unless given. The default prefix keeps the client id "facetrack".
    prefix = mqtt_raw.get("topic_prefix", "facetrack")
    mqtt_raw.setdefault("client_id", prefix.replace("/", "-"))
    mqtt_raw.setdefault("library_topic", f"{prefix}/library")
    for label, path in (("ca_file", tls.ca_file), ("certfile", tls.certfile), ("keyfile", tls.keyfile)):
        if path and not Path(path).is_file():
            raise ConfigError(f"invalid configuration: 'mqtt.tls.{label}': file not found: {path}")
    notifications = NotificationSettings(**{**notif_raw, "urls": tuple(notif_raw.get("urls") or ())})
    return ServiceConfig(
        defaults=defaults,
        cameras=tuple(cameras),
        mqtt=MQTTConfig(**mqtt_raw, tls=tls),
        alerts=alerts,
        notifications=notifications,
        media_dir=media_dir,
        reconnect_max_seconds=reconnect,
        source_timeout_seconds=source_timeout,
        http=http,
        clips=clips,
        rtsp=rtsp,
        library_storage=library_storage,
        library_refresh_seconds=refresh,
        inbox=inbox,
        gallery=gallery,
    )


def _clip_seconds(raw: dict[str, Any]) -> dict[str, Any]:
    """``clips`` without the deprecated frame counts: ``clip_duration`` / ``pre_roll`` become
    ``duration_seconds`` / ``pre_roll_seconds`` at :data:`LEGACY_CLIP_FPS` (a warning says so); a
    seconds key given too wins."""
    out = dict(raw)
    for old, new, low, high in (
        ("clip_duration", "duration_seconds", 1.0, MAX_CLIP_SECONDS),
        ("pre_roll", "pre_roll_seconds", 0.0, MAX_PRE_ROLL_SECONDS),
    ):
        if old not in out:
            continue
        frames = out.pop(old)
        if new in out:
            _LOG.warning("clips.%s (frames) is deprecated and ignored: clips.%s is set", old, new)
            continue
        seconds = min(high, max(low, math.floor(frames / LEGACY_CLIP_FPS * 100 + 0.5) / 100))
        out[new] = seconds
        _LOG.warning(
            "clips.%s (frames) is deprecated: use clips.%s; %d frames taken as %g s (at %g frames/s)",
            old, new, frames, seconds, LEGACY_CLIP_FPS,
        )  # fmt: skip
    return out


def _library_settings(data: dict[str, Any]) -> tuple[LibraryStorageConfig, float]:
    """Pop ``library_storage`` and ``library_refresh_seconds`` off validated top-level data."""
    raw = dict(data.pop("library_storage", {}) or {})
    refresh = float(data.pop("library_refresh_seconds", 10.0))
    db_path = defaults_db_path(data)
    scheme = urlsplit(db_path).scheme
    if "://" in db_path and not is_uri(db_path):
        raise ConfigError(
            f"invalid configuration: 'db_path': unsupported scheme {scheme!r} (a folder or s3://bucket/path)"
        )
    if raw and not is_uri(db_path):
        raise ConfigError("invalid configuration: 'library_storage' needs an s3://bucket/path db_path")
    if is_uri(db_path) and not urlsplit(db_path).netloc:
        raise ConfigError("invalid configuration: 'db_path': an s3:// URI needs a bucket (s3://bucket/path)")
    storage = LibraryStorageConfig(**{**raw, "options": dict(raw.get("options") or {})})
    if storage.endpoint and storage.endpoint.startswith("http://") and not storage.allow_http:
        raise ConfigError(
            "invalid configuration: 'library_storage.endpoint' is plain http://: set "
            "'library_storage.allow_http: true' (trusted networks only) or use https://"
        )
    return storage, refresh


def local_state_dir(db_path: str) -> Path:
    """Where local state (clips, URL secret, inbox) goes by default: the library's parent folder,
    or the working directory for a library on an object store."""
    return Path.cwd() if is_uri(db_path) else Path(db_path).resolve().parent


def inbox_path(config: ServiceConfig) -> Path:
    """The unknown-face inbox file: ``inbox.path``, or ``inbox.npz`` in :func:`local_state_dir`."""
    if config.inbox.path:
        return Path(config.inbox.path)
    return local_state_dir(config.db_path) / "inbox.npz"


def defaults_db_path(data: dict[str, Any]) -> str:
    """``db_path`` of validated top-level data (or the default)."""
    return str(data.get("db_path", FaceTrackerConfig().db_path))


def _alert_dict(a: AlertConfig) -> dict[str, Any]:
    return {"alert_mode": a.alert_mode, "alert_once": a.alert_once, "cooldown_seconds": a.cooldown_seconds}


def load_service_config(path: str | Path) -> ServiceConfig:
    """Load a YAML or JSON service configuration file.

    Raises:
        ConfigError: unreadable, unparsable or invalid (see :func:`parse_service_config`).
    """
    return parse_service_config(read_config_file(path))
