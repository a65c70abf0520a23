"""Home Assistant MQTT device discovery (optional, off by default: ``mqtt.discovery``).

For people who do not install the FaceTrack integration. One device per camera and one per
person, published with HA's device-based discovery (``<discovery_prefix>/device/<id>/config``, a
``cmps`` map of components, ``default_entity_id`` for the entity ids). Discovery configs are
retained (so HA finds them after a restart); entity states never are: presence comes from the
non-retained ``<prefix>/seen/<person_id>`` messages with ``off_delay``, alerts from the
non-retained alert topic.
"""

from __future__ import annotations

import re
from typing import Any

from facetrack import PROJECT_URL, __version__

ORIGIN = {"name": "FaceTrack", "sw": __version__, "url": PROJECT_URL}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"


def _node(prefix: str) -> str:
    return _slug(prefix)


def config_topic(discovery_prefix: str, prefix: str, kind: str, key: str) -> str:
    """``<discovery_prefix>/device/<node>_<kind>_<key>/config``."""
    return f"{discovery_prefix}/device/{_node(prefix)}_{kind}_{_slug(key)}/config"


def camera_discovery(prefix: str, camera: str) -> dict[str, Any]:
    """Device payload for a camera: faces in view, frames/s, connectivity, and an alert event."""
    node = _node(prefix)
    uid = f"{node}_{camera}"
    state = f"{prefix}/{camera}/state"
    return {
        "dev": {
            "ids": [uid],
            "name": f"FaceTrack {camera}",
            "mf": "FaceTrack",
            "mdl": "Face tracking camera",
            "sw": __version__,
        },
        "o": ORIGIN,
        "avty_t": f"{prefix}/status",
        "cmps": {
            f"{uid}_faces": {
                "p": "sensor",
                "unique_id": f"{uid}_faces",
                "default_entity_id": f"sensor.facetrack_{camera}_faces",
                "name": "Faces in view",
                "stat_t": state,
                "val_tpl": "{{ value_json.faces }}",
                "stat_cla": "measurement",
                "icon": "mdi:face-recognition",
            },
            f"{uid}_fps": {
                "p": "sensor",
                "unique_id": f"{uid}_fps",
                "default_entity_id": f"sensor.facetrack_{camera}_fps",
                "name": "Frames per second",
                "stat_t": state,
                "val_tpl": "{{ value_json.fps }}",
                "unit_of_meas": "fps",
                "stat_cla": "measurement",
                "ent_cat": "diagnostic",
            },
            f"{uid}_online": {
                "p": "binary_sensor",
                "unique_id": f"{uid}_online",
                "default_entity_id": f"binary_sensor.facetrack_{camera}_online",
                "name": "Camera",
                "dev_cla": "connectivity",
                "stat_t": state,
                "val_tpl": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
                "ent_cat": "diagnostic",
            },
            f"{uid}_alert": {
                "p": "event",
                "unique_id": f"{uid}_alert",
                "default_entity_id": f"event.facetrack_{camera}_alert",
                "name": "Face alert",
                "stat_t": f"{prefix}/{camera}/alert",
                "evt_typ": ["known_face", "unknown_face"],
                "val_tpl": (
                    '{ "event_type": "{{ value_json.kind }}", "person": {{ value_json.person | tojson }},'
                    ' "similarity": {{ value_json.similarity | tojson }}, "camera": "{{ value_json.camera }}" }'
                ),
            },
        },
        "qos": 1,
    }


def person_discovery(prefix: str, person_id: str, name: str, presence_timeout: float = 120.0) -> dict[str, Any]:
    """Device payload for a person: presence (on while seen within ``presence_timeout`` s) and
    last seen. A misrecognised stranger can only keep someone "present" for the timeout."""
    node = _node(prefix)
    uid = f"{node}_person_{person_id}"
    seen = f"{prefix}/seen/{person_id}"
    return {
        "dev": {"ids": [uid], "name": name, "mf": "FaceTrack", "mdl": "Enrolled person", "sw": __version__},
        "o": ORIGIN,
        "avty_t": f"{prefix}/status",
        "cmps": {
            f"{uid}_presence": {
                "p": "binary_sensor",
                "unique_id": f"{uid}_presence",
                "default_entity_id": f"binary_sensor.facetrack_{_slug(name)}_presence",
                "name": "Presence",
                "dev_cla": "occupancy",
                "stat_t": seen,
                "val_tpl": "ON",
                "off_dly": int(presence_timeout),
            },
            f"{uid}_last_seen": {
                "p": "sensor",
                "unique_id": f"{uid}_last_seen",
                "default_entity_id": f"sensor.facetrack_{_slug(name)}_last_seen",
                "name": "Last seen",
                "dev_cla": "timestamp",
                "stat_t": seen,
                "val_tpl": "{{ value_json.time }}",
                "json_attr_t": seen,
                "json_attr_tpl": "{{ {'camera': value_json.camera, 'similarity': value_json.similarity} | tojson }}",
            },
        },
        "qos": 1,
    }
