"""The app's MediaMTX configuration against the reference configuration of the release the image
installs (``../shared/vendor/mediamtx-<version>/mediamtx.yml``, MediaMTX's own file, MIT).

MediaMTX refuses unknown keys and renames keys between releases (1.9's ``protocols`` became
``rtspTransports`` in 1.11): a version bump in the Dockerfile that breaks our file fails here, not
on a user's Pi with an RTSP server that restarts forever."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "addon" / "rootfs" / "etc" / "mediamtx.yml"


def _mediamtx_version() -> str:
    m = re.search(r"^ARG MEDIAMTX_VERSION=(\S+)$", (ROOT / "addon" / "Dockerfile").read_text(), re.MULTILINE)
    assert m, "addon/Dockerfile has no ARG MEDIAMTX_VERSION"
    return m.group(1)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    path = SHARED / "vendor" / f"mediamtx-{_mediamtx_version()}" / "mediamtx.yml"
    if not path.exists():
        pytest.fail(f"no reference configuration for MediaMTX {_mediamtx_version()} at {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and "pathDefaults" in data
    return data


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    data = yaml.safe_load(OURS.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _same_kind(value: Any, default: Any) -> bool:
    """YAML type of our value agrees with the reference default's (None: any value)."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    return isinstance(value, type(default)) or (isinstance(default, str) and isinstance(value, str | int))


def test_version_is_a_current_release() -> None:
    major, minor, _ = (int(p) for p in _mediamtx_version().split("."))
    assert (major, minor) >= (1, 20)


def test_every_global_key_exists_in_the_reference(ours: dict[str, Any], reference: dict[str, Any]) -> None:
    unknown = sorted(set(ours) - set(reference))
    assert not unknown, f"keys MediaMTX {_mediamtx_version()} does not know: {unknown}"
    for key, value in ours.items():
        if key != "paths":
            assert _same_kind(value, reference[key]), f"{key}: {value!r} vs reference {reference[key]!r}"


def test_every_path_key_exists_in_path_defaults(ours: dict[str, Any], reference: dict[str, Any]) -> None:
    defaults = reference["pathDefaults"]
    assert ours["paths"], "no path served"
    for name, settings in ours["paths"].items():
        unknown = sorted(set(settings) - set(defaults))
        assert not unknown, f"path {name}: keys MediaMTX {_mediamtx_version()} does not know: {unknown}"
        for key, value in settings.items():
            assert _same_kind(value, defaults[key]), f"{name}.{key}: {value!r} vs {defaults[key]!r}"


def test_rtsp_only_over_tcp_on_the_app_port(ours: dict[str, Any], reference: dict[str, Any]) -> None:
    assert ours["rtsp"] is True and ours["rtspAddress"] == ":8554"
    assert set(ours["rtspTransports"]) <= set(reference["rtspTransports"])
    for other in ("rtmp", "hls", "webrtc", "srt", "api", "metrics", "pprof", "playback"):
        assert ours.get(other) is False, f"{other} should be off"


def test_on_demand_command_uses_variables_of_the_release(ours: dict[str, Any]) -> None:
    reference_text = (SHARED / "vendor" / f"mediamtx-{_mediamtx_version()}" / "mediamtx.yml").read_text()
    for settings in ours["paths"].values():
        for var in re.findall(r"\$([A-Z_]+)", settings["runOnDemand"]):
            assert f"* {var}:" in reference_text, f"${var} is not an environment variable of runOnDemand"
