"""Constants of the FaceTrack integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "facetrack"
LOGGER = logging.getLogger(__package__)

CONF_TOPIC_PREFIX: Final = "topic_prefix"
CONF_PRESENCE_TIMEOUT: Final = "presence_timeout"
# Options: the cameras / persons (ids) that get no entities (everything else, new ones included, does).
CONF_EXCLUDED_CAMERAS: Final = "excluded_cameras"
CONF_EXCLUDED_PERSONS: Final = "excluded_persons"
CONF_CAMERAS: Final = "cameras"
CONF_PERSONS: Final = "persons"

DEFAULT_TOPIC_PREFIX: Final = "facetrack"
DEFAULT_PRESENCE_TIMEOUT: Final = 120  # seconds, as the engine's own discovery entities
MIN_PRESENCE_TIMEOUT: Final = 10
MAX_PRESENCE_TIMEOUT: Final = 3600

CONTRACT_VERSION: Final = "1"
# How long the user step waits for the retained `<prefix>/info`, and a command for its response.
DISCOVERY_TIMEOUT: Final = 10.0
COMMAND_TIMEOUT: Final = 30.0
# Download of a photo to enroll (`image_url`).
DOWNLOAD_TIMEOUT: Final = 10.0

STATUS_ONLINE: Final = "online"
# Camera states (`<prefix>/<camera>/state`) in which its entities are unavailable.
CAMERA_OFFLINE: Final = "offline"
CAMERA_DISABLED: Final = "disabled"
EVENT_KNOWN_FACE: Final = "known_face"
EVENT_UNKNOWN_FACE: Final = "unknown_face"
EVENT_NEW_GROUP: Final = "new_group"
GROUP_PENDING: Final = "pending"

# Head-pose bins of a person's gallery, frontal to profile (the engine's `facetrack.pose.POSE_BINS`; the
# `poses` / `missing_poses` of `<prefix>/persons`).
POSE_BINS: Final = ("frontal", "three_quarter", "profile")

ATTR_CAMERA: Final = "camera"
ATTR_CAMERA_ENTITY_ID: Final = "camera_entity_id"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_IMAGE_PATH: Final = "image_path"
ATTR_IMAGE_URL: Final = "image_url"
ATTR_NAME: Final = "name"
ATTR_NEW_NAME: Final = "new_name"
ATTR_TRACK_ID: Final = "track_id"
ATTR_MAX_EMBEDDINGS: Final = "max_embeddings"
ATTR_GROUP_ID: Final = "group_id"
ATTR_INTO_GROUP_ID: Final = "into_group_id"
ATTR_MODE: Final = "mode"
ATTR_EMBEDDING_ID: Final = "embedding_id"
ATTR_INCLUDE_CROPS: Final = "include_crops"
