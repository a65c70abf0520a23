"""Configuration: one voluptuous schema, loadable from YAML or JSON."""

from facetrack.config.schema import (
    FaceTrackerConfig,
    IdentityConfig,
    TrackerConfig,
    load_config,
    parse_config,
)

__all__ = ["FaceTrackerConfig", "IdentityConfig", "TrackerConfig", "load_config", "parse_config"]
