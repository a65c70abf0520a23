"""FaceTrackerConfig: the engine's configuration, in DeGirum FaceTrackerConfig vocabulary.

Defaults and where they come from are written down in ``docs/configuration.md`` and
``docs/thresholds.md`` (the measured ROC of SFace on ``shared/data``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol

from facetrack.errors import ConfigError

#: Cosine similarity at or above which a probe is accepted as the nearest enrolled person.
#: Measured on shared/data (docs/thresholds.md): the lowest threshold that turns every stranger
#: away (including an Angelina Jolie look-alike at 0.487) is 0.49; 0.52 adds a margin while genuine
#: rank-1 stays at 98.8 %. SFace's published threshold (OpenCV Zoo, LFW) is 0.363.
DEFAULT_COSINE_THRESHOLD = 0.52


@dataclass(frozen=True, slots=True)
class FaceFilters:
    """Thresholds a face must pass to be used for identity decisions and enrolment.

    Attributes:
        min_face_size: shorter box side, pixels of the original frame.
        min_score: detector confidence.
        min_sharpness: variance of the Laplacian of the 112x112 aligned grey crop.
        max_yaw: |nose offset from the eye midpoint along the eye axis| / inter-eye distance
            (0 frontal, about 0.2 at 20-25 degrees, 0.35-0.5 towards profile). Faces up to it are
            embedded; whether a turned face's match counts is decided by
            :mod:`facetrack.matching` (grey zone, second opinion). Beyond about 0.75 YuNet's
            landmarks of the hidden eye and mouth corner are guesses and alignment fails.
        pitch_range: (min, max) of distance(eye line, nose) / distance(eye line, mouth centre);
            about 0.55 for a frontal face, lower looking up, higher looking down.
        landmark_sanity: reject detections whose landmarks are geometrically impossible
            (outside the box, eyes below the mouth, collapsed eye distance).
    """

    min_face_size: float = 32.0
    min_score: float = 0.6
    min_sharpness: float = 12.0
    max_yaw: float = 0.75
    pitch_range: tuple[float, float] = (0.25, 0.95)
    landmark_sanity: bool = True


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """ByteTrack association (Zhang et al., ECCV 2022) parameters.

    Attributes:
        lost_track_seconds: how long a track that lost its face is kept for re-association, s.
        track_activation_threshold: detector score needed to start a track.
        high_conf_det_threshold: detections at or above it take part in ByteTrack's first
            association stage, those below only in the second (recovery) stage.
        minimum_iou_threshold: IoU below which a detection cannot continue a track.
        revive_threshold: cosine similarity between a new track's first face and a lost track's
            mean embedding at which the new detections continue the lost track (same id).
        appearance_split_threshold: a track whose new embedding falls below this cosine
            similarity to the track's mean embedding holds another face now: it is ended and a new
            track starts (catches ByteTrack id swaps, even with an empty face library).
    """

    lost_track_seconds: float = 1.0
    track_activation_threshold: float = 0.7
    high_conf_det_threshold: float = 0.7
    minimum_iou_threshold: float = 0.1
    revive_threshold: float = 0.45
    appearance_split_threshold: float = 0.25


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """How matches of a track's embeddings are voted into its identity.

    Attributes:
        window: the last ``window`` usable matches of a track vote.
        min_votes: votes a person needs (and a strict majority of the window) to name a track.
        unknown_votes: votes below the threshold needed to declare a track unknown.
        instant_margin: a first match at ``threshold + instant_margin`` or more names the track
            at once (clear matches need no second vote).
    """

    window: int = 9
    min_votes: int = 2
    unknown_votes: int = 3
    instant_margin: float = 0.15


@dataclass(frozen=True, slots=True)
class FaceTrackerConfig:
    """Everything one camera pipeline needs. Units: pixels, frames or seconds as named."""

    db_path: str = "faces.lance"
    backend: str = "opencv"
    detector_input_size: int = 640
    detection_score_threshold: float = 0.5
    nms_threshold: float = 0.3
    cosine_similarity_threshold: float = DEFAULT_COSINE_THRESHOLD
    credence_count: int = 3
    reid_expiration_frames: int = 64
    recent_gallery_seconds: float = 10.0
    recent_gallery_threshold: float | None = None
    scene_cut_threshold: float = 30.0
    #: Run the face detector only on frames where something moved, while tracks exist, or
    #: ``detect_fps`` times a second (:mod:`facetrack.track.motion`); off, on every frame.
    motion_gate: bool = True
    #: Detections per second when nothing moves and nothing is tracked (the gate's periodic
    #: look, so a person who stopped is found), while something moved since the last whole-frame
    #: detection (else every 10 s); 0: only on motion or tracks.
    detect_fps: float = 1.0
    #: Detections per second while something moves and nothing is tracked; 0: every moving frame
    #: (:data:`facetrack.track.motion.MOTION_DETECT_FPS`, which gives the trade-off).
    motion_detect_fps: float = 0.0
    video_source: str | int | None = None
    face_filters: FaceFilters = field(default_factory=FaceFilters)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    #: Ask dlib's ResNet descriptor about grey-zone matches (:mod:`facetrack.matching`); off, a
    #: match below ``cosine_similarity_threshold`` never names anyone.
    second_opinion: bool = True
    #: The ``degirum`` backend's options (:class:`facetrack.inference.degirum.DeGirumOptions` keys).
    degirum: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-serialisable)."""
        d = asdict(self)
        d["face_filters"]["pitch_range"] = list(self.face_filters.pitch_range)
        if d["degirum"].get("token"):
            d["degirum"]["token"] = "***"  # noqa: S105 - a secret: never in dumps or logs
        return d


def _unit(v: Any) -> float:
    f = float(v)
    if not 0.0 <= f <= 1.0:
        raise vol.Invalid("must be between 0 and 1")
    return f


def _pair(v: Any) -> tuple[float, float]:
    if not isinstance(v, list | tuple) or len(v) != 2:
        raise vol.Invalid("must be a list of two numbers [min, max]")
    lo, hi = float(v[0]), float(v[1])
    if lo > hi:
        raise vol.Invalid("min must not exceed max")
    return lo, hi


_POS_INT = vol.All(vol.Coerce(int), vol.Range(min=1))
_NONNEG = vol.All(vol.Coerce(float), vol.Range(min=0.0))
_UNIT = _unit

FACE_FILTERS_SCHEMA = vol.Schema(
    {
        vol.Optional("min_face_size"): _NONNEG,
        vol.Optional("min_score"): _UNIT,
        vol.Optional("min_sharpness"): _NONNEG,
        vol.Optional("max_yaw"): _NONNEG,
        vol.Optional("pitch_range"): _pair,
        vol.Optional("landmark_sanity"): bool,
    }
)
TRACKER_SCHEMA = vol.Schema(
    {
        vol.Optional("lost_track_seconds"): _NONNEG,
        vol.Optional("track_activation_threshold"): _UNIT,
        vol.Optional("high_conf_det_threshold"): _UNIT,
        vol.Optional("minimum_iou_threshold"): _UNIT,
        vol.Optional("revive_threshold"): vol.All(vol.Coerce(float), vol.Range(min=-1.0, max=1.0)),
        vol.Optional("appearance_split_threshold"): vol.All(vol.Coerce(float), vol.Range(min=-1.0, max=1.0)),
    }
)
IDENTITY_SCHEMA = vol.Schema(
    {
        vol.Optional("window"): _POS_INT,
        vol.Optional("min_votes"): _POS_INT,
        vol.Optional("unknown_votes"): _POS_INT,
        vol.Optional("instant_margin"): _NONNEG,
    }
)
_DEVICE_TYPE = vol.All(str, vol.Match(r"^[A-Z0-9_]+/[A-Z0-9_]+$", msg="must be RUNTIME/DEVICE, e.g. HAILORT/HAILO8L"))
_NONEMPTY = vol.All(str, vol.Length(min=1))
DEGIRUM_MODEL_SCHEMA = vol.Schema(
    {
        vol.Optional("model"): _NONEMPTY,
        vol.Optional("zoo"): _NONEMPTY,
        vol.Optional("host"): _NONEMPTY,
        vol.Optional("device"): _DEVICE_TYPE,
        vol.Optional("family"): vol.In(["yunet", "yolov8_kpts", "sface", "arcface"]),
    }
)
#: ``degirum`` backend options (docs/configuration.md "DeGirum backend").
DEGIRUM_SCHEMA = vol.Schema(
    {
        vol.Optional("device"): _DEVICE_TYPE,
        vol.Optional("host"): vol.Any(None, _NONEMPTY),
        vol.Optional("zoo"): vol.Any(None, _NONEMPTY),
        vol.Optional("token"): vol.Any(None, str),
        vol.Optional("detector"): DEGIRUM_MODEL_SCHEMA,
        vol.Optional("embedder"): DEGIRUM_MODEL_SCHEMA,
        vol.Optional("embedding_dim"): vol.Any(None, _POS_INT),
    }
)
CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("db_path"): vol.All(str, vol.Length(min=1)),
        vol.Optional("backend"): vol.In(["opencv", "degirum"]),
        vol.Optional("detector_input_size"): vol.All(vol.Coerce(int), vol.Range(min=32, max=4096)),
        vol.Optional("detection_score_threshold"): _UNIT,
        vol.Optional("nms_threshold"): _UNIT,
        vol.Optional("cosine_similarity_threshold"): vol.All(vol.Coerce(float), vol.Range(min=-1.0, max=1.0)),
        # ByteTrack confirms a new track on its second frame at the earliest.
        vol.Optional("credence_count"): vol.All(vol.Coerce(int), vol.Range(min=2)),
        vol.Optional("reid_expiration_frames"): _POS_INT,
        vol.Optional("recent_gallery_seconds"): _NONNEG,
        vol.Optional("recent_gallery_threshold"): vol.Any(None, vol.All(vol.Coerce(float), vol.Range(-1, 1))),
        vol.Optional("scene_cut_threshold"): _NONNEG,
        vol.Optional("motion_gate"): bool,
        vol.Optional("detect_fps"): vol.All(vol.Coerce(float), vol.Range(min=0.0, max=120.0)),
        vol.Optional("motion_detect_fps"): vol.All(vol.Coerce(float), vol.Range(min=0.0, max=120.0)),
        vol.Optional("video_source"): vol.Any(None, str, int),
        vol.Optional("face_filters"): FACE_FILTERS_SCHEMA,
        vol.Optional("tracker"): TRACKER_SCHEMA,
        vol.Optional("identity"): IDENTITY_SCHEMA,
        vol.Optional("second_opinion"): bool,
        vol.Optional("degirum"): DEGIRUM_SCHEMA,
    }
)


def _path(err: vol.Invalid) -> str:
    return ".".join(str(p) for p in err.path) or "<root>"


def parse_config(raw: Any, **overrides: Any) -> FaceTrackerConfig:
    """Validate a raw mapping and build a :class:`FaceTrackerConfig`.

    ``overrides`` (top-level keys) are applied after validation of ``raw`` and validated too.

    Raises:
        ConfigError: unknown key or bad value; the message names the key (``face_filters.min_score``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration must be a mapping of keys to values, got {type(raw).__name__}")
    merged = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        data = CONFIG_SCHEMA(merged)
    except vol.MultipleInvalid as err:
        problems = []
        for e in err.errors:
            if isinstance(e, vol.Invalid) and e.error_message == "extra keys not allowed":
                problems.append(f"unknown key '{_path(e)}'")
            else:
                problems.append(f"'{_path(e)}': {e.error_message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    ff = FaceFilters(**data.pop("face_filters", {}))
    tr = TrackerConfig(**data.pop("tracker", {}))
    ident = IdentityConfig(**data.pop("identity", {}))
    return FaceTrackerConfig(face_filters=ff, tracker=tr, identity=ident, **data)


def load_config(path: str | Path | None, **overrides: Any) -> FaceTrackerConfig:
    """Load a YAML (``.yaml``/``.yml``) or JSON file and validate it; ``None`` gives the defaults.

    Raises:
        ConfigError: missing or unparsable file, or invalid content (see :func:`parse_config`).
    """
    if path is None:
        return parse_config({}, **overrides)
    return parse_config(read_config_file(path), **overrides)


def read_config_file(path: str | Path) -> Any:
    """The parsed content of a YAML (``.yaml``/``.yml``) or JSON (``.json``) file.

    Raises:
        ConfigError: missing, unreadable or unparsable file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {p}: {err.strerror}") from None
    import yaml  # here, not at the top: the CLI's commands without --config do not pay its import

    try:
        return json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse configuration file {p}: {err}") from None
