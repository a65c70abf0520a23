"""The Home Assistant app package in ``addon/``: manifest, schema, translations, image, run script,
and the options -> ``facetrack serve`` configuration mapping (``facetrack.config.addon``)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

import facetrack
from facetrack.config.addon import build_parser, main, options_to_service_config
from facetrack.config.schema import DEFAULT_COSINE_THRESHOLD
from facetrack.config.service import AlertMode, load_service_config, parse_service_config
from facetrack.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "addon"
RUN = ADDON / "rootfs" / "etc" / "services.d" / "facetrack" / "run"
FINISH = ADDON / "rootfs" / "etc" / "services.d" / "facetrack" / "finish"
MTX_RUN = ADDON / "rootfs" / "etc" / "services.d" / "mediamtx" / "run"
MTX_FINISH = ADDON / "rootfs" / "etc" / "services.d" / "mediamtx" / "finish"

# App configuration keys documented at
# https://developers.home-assistant.io/docs/apps/configuration#required-configuration-options
# and #optional-configuration-options.
REQUIRED_KEYS = {"name", "version", "slug", "description", "arch"}
OPTIONAL_KEYS = {
    "machine", "url", "startup", "webui", "boot", "ports", "ports_description", "host_network",
    "host_ipc", "host_dbus", "host_pid", "host_uts", "devices", "homeassistant", "hassio_role",
    "hassio_api", "homeassistant_api", "docker_api", "privileged", "full_access", "apparmor", "map",
    "environment", "audio", "video", "gpio", "usb", "uart", "udev", "devicetree", "kernel_modules",
    "stdin", "legacy", "options", "schema", "image", "codenotary", "timeout", "tmpfs", "discovery",
    "services", "auth_api", "ingress", "ingress_port", "ingress_entry", "ingress_stream",
    "panel_icon", "panel_title", "panel_admin", "backup", "backup_pre", "backup_post",
    "backup_exclude", "advanced", "stage", "init", "watchdog", "realtime", "journald",
    "breaking_versions", "ulimits",
}  # fmt: skip
ARCHES = {"armhf", "armv7", "aarch64", "amd64", "i386"}
MAP_TYPES = {
    "homeassistant_config", "addon_config", "ssl", "addons", "backup", "share", "media",
    "all_addon_configs", "data",
}  # fmt: skip
# Option types of the same page's "Options / Schema" section, each optionally followed by "?".
SCHEMA_TYPE = re.compile(
    r"^(?:bool|email|url|port|password"
    r"|str(?:\(\d*,\d*\))?"
    r"|password\(\d*,\d*\)"
    r"|int(?:\(\d*,\d*\))?"
    r"|float(?:\([\d.]*,[\d.]*\))?"
    r"|match\((?P<match>.+)\)"
    r"|list\((?P<list>[^|()]+(?:\|[^|()]+)*)\)"
    r"|device(?:\(subsystem=[a-z0-9_]+\))?"
    r")\??$"
)
# Keys of repository.yaml: https://developers.home-assistant.io/docs/apps/repository
REPOSITORY_KEYS = {"name", "url", "maintainer"}

SECRET = "pa55-w0rd_that-must-not-leak"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data = _yaml(ADDON / "config.yaml")
    assert isinstance(data, dict)
    return data


def _sample_options(config: dict[str, Any]) -> dict[str, Any]:
    options = json.loads(json.dumps(config["options"]))  # deep copy of the defaults
    options["cameras"] = [
        {"name": "front_door", "source": "rtsp://viewer:cam@192.168.1.20:554/stream1", "alert_mode": "ON_ALL",
         "detector_input_size": 960, "motion_detect_fps": 5},
        {"name": "garden", "source": "/media/garden.mp4", "enabled": False},
    ]  # fmt: skip
    options["notification_urls"] = ["tgram://123456:ABC/987", "ntfy://ntfy.sh/facetrack"]
    options["cosine_similarity_threshold"] = 0.45
    options["discovery"] = True  # off by default; mapped through when turned on
    return options


MQTT = {"host": "core-mosquitto", "port": 1883, "username": "addons", "password": SECRET, "ssl": False}


# --- config.yaml against the documented keys ---------------------------------------------------


def test_config_keys_are_documented(config: dict[str, Any]) -> None:
    assert set(config) >= REQUIRED_KEYS, REQUIRED_KEYS - set(config)
    unknown = set(config) - REQUIRED_KEYS - OPTIONAL_KEYS
    assert not unknown, f"keys not in the app configuration docs: {unknown}"
    assert config["slug"] == "facetrack"
    assert config["name"] == "FaceTrack"
    assert set(config["arch"]) == {"aarch64", "amd64"} and set(config["arch"]) <= ARCHES
    assert config["init"] is False  # s6-overlay v3 base image
    assert config["url"].startswith("https://")


def test_version_matches_package(config: dict[str, Any]) -> None:
    assert isinstance(config["version"], str)
    assert config["version"] == facetrack.__version__


def test_services_devices_map_ports(config: dict[str, Any]) -> None:
    assert "mqtt:need" in config["services"]
    assert "/dev/hailo0" in config["devices"]
    maps = {m["type"]: m for m in config["map"]}
    assert set(maps) <= MAP_TYPES
    for m in config["map"]:
        assert set(m) <= {"type", "read_only", "path"}
    assert maps["media"]["read_only"] is False
    assert maps["addon_config"]["read_only"] is False
    assert config["ports"] == {"8099/tcp": 8099, "8554/tcp": 8554}


def _walk_schema(schema: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(schema, str):
        return [(path, schema)]
    if isinstance(schema, list):
        assert len(schema) == 1, f"{path}: a list schema holds one element type"
        return _walk_schema(schema[0], f"{path}[]")
    assert isinstance(schema, dict), f"{path}: unexpected schema {schema!r}"
    out = []
    for k, v in schema.items():
        out += _walk_schema(v, f"{path}.{k}" if path else k)
    return out


def test_schema_types_are_valid(config: dict[str, Any]) -> None:
    for path, typ in _walk_schema(config["schema"]):
        m = SCHEMA_TYPE.match(typ)
        assert m, f"{path}: {typ!r} is not an app option type"
        if m.group("match"):
            re.compile(m.group("match"))
    # depth: options may nest lists and dicts two levels deep at most
    for path, _ in _walk_schema(config["schema"]):
        assert path.count(".") + path.count("[]") <= 2, path


def test_every_option_has_a_schema_and_back(config: dict[str, Any]) -> None:
    options, schema = config["options"], config["schema"]
    assert set(options) <= set(schema), set(options) - set(schema)
    for key in set(schema) - set(options):
        # a schema key without a default must be optional ("?"), or the app cannot start
        assert isinstance(schema[key], str) and schema[key].endswith("?"), key
    for key, typ in schema.items():
        if isinstance(typ, str) and typ.endswith("?"):
            assert key not in options, f"{key}: an optional option must have no default (docs: Options / Schema)"


def _check_value(typ: str, value: Any, path: str) -> None:
    m = SCHEMA_TYPE.match(typ)
    assert m, typ
    base = typ.rstrip("?")
    bounds = re.search(r"\(([\d.]*),([\d.]*)\)$", base)
    lo = float(bounds.group(1)) if bounds and bounds.group(1) else None
    hi = float(bounds.group(2)) if bounds and bounds.group(2) else None
    if base.startswith(("str", "password")):
        assert isinstance(value, str), path
        n = len(value)
    elif base.startswith("int"):
        assert isinstance(value, int) and not isinstance(value, bool), path
        n = value
    elif base.startswith("float"):
        assert isinstance(value, int | float) and not isinstance(value, bool), path
        n = value
    elif base == "bool":
        assert isinstance(value, bool), path
        return
    elif base.startswith("list("):
        assert value in m.group("list").split("|"), f"{path}: {value!r} not in {typ}"
        return
    elif base.startswith("match("):
        assert re.match(m.group("match"), str(value)), f"{path}: {value!r} does not match {typ}"
        return
    else:
        return
    assert lo is None or n >= lo, f"{path}: {value!r} below {typ}"
    assert hi is None or n <= hi, f"{path}: {value!r} above {typ}"


def _check_options(schema: Any, value: Any, path: str) -> None:
    if isinstance(schema, str):
        _check_value(schema, value, path)
    elif isinstance(schema, list):
        assert isinstance(value, list), path
        for i, v in enumerate(value):
            _check_options(schema[0], v, f"{path}.{i}")
    else:
        assert isinstance(value, dict), path
        assert set(value) <= set(schema), f"{path}: {set(value) - set(schema)}"
        for k, typ in schema.items():
            if k in value:
                _check_options(typ, value[k], f"{path}.{k}")
            else:
                assert isinstance(typ, str) and typ.endswith("?"), f"{path}.{k} is required"


def test_defaults_and_sample_satisfy_the_schema(config: dict[str, Any]) -> None:
    _check_options(config["schema"], config["options"], "options")
    _check_options(config["schema"], _sample_options(config), "sample")


def test_schema_rejects_what_the_engine_rejects(config: dict[str, Any]) -> None:
    """The UI-side patterns agree with the engine's validation of names and topic prefixes."""
    name_re = SCHEMA_TYPE.match(config["schema"]["cameras"][0]["name"]).group("match")  # type: ignore[union-attr]
    topic_re = SCHEMA_TYPE.match(config["schema"]["topic_prefix"]).group("match")  # type: ignore[union-attr]
    for name in ("front_door", "cam1", "a" * 32):
        assert re.match(name_re, name)
    for name in ("Front Door", "front-door", "", "a" * 33, "seen", "inbox", "command"):
        assert not re.match(name_re, name)
    assert re.match(name_re, "seen_cam") and re.match(name_re, "inbox2")
    assert re.match(topic_re, "home/facetrack") and not re.match(topic_re, "face#track")


@pytest.mark.parametrize("name", ["inbox", "seen", "command", "response", "status", "persons"])
def test_camera_names_that_are_engine_topics_are_refused(name: str) -> None:
    """A camera called `seen` would publish `<prefix>/seen/state`, read by clients as a sighting."""
    with pytest.raises(ConfigError, match="MQTT topic of the engine itself"):
        parse_service_config({"cameras": [{"name": name, "source": "rtsp://cam/1"}]})
    assert parse_service_config({"cameras": [{"name": f"{name}_cam", "source": "rtsp://cam/1"}]}).cameras


# --- translations, docs, images, repository ----------------------------------------------------


def test_translations_cover_every_option(config: dict[str, Any]) -> None:
    tr = _yaml(ADDON / "translations" / "en.yaml")
    assert set(tr) <= {"configuration", "network"}
    conf = tr["configuration"]
    for key, typ in config["schema"].items():
        assert key in conf, f"translations/en.yaml: no entry for option {key}"
        assert conf[key].get("name") and conf[key].get("description"), key
        if isinstance(typ, list) and isinstance(typ[0], dict):
            fields = conf[key].get("fields", {})
            assert set(fields) == set(typ[0]), f"{key}: fields {set(typ[0]) ^ set(fields)}"
            for f in fields.values():
                assert f.get("name") and f.get("description")
    assert set(conf) <= set(config["schema"]), set(conf) - set(config["schema"])
    assert {k.lower() for k in tr["network"]} == {k.lower() for k in config["ports"]}


def test_docs_describe_every_option(config: dict[str, Any]) -> None:
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    for key in config["schema"]:
        assert f"`{key}`" in docs, key
    for key in config["schema"]["cameras"][0]:
        assert f"`{key}`" in docs, key
    for heading in ("## Installation", "## Configuration", "### Cameras", "### MQTT", "### Notifications",
                    "## Enrolling people", "## Hailo accelerator", "## Building"):  # fmt: skip
        assert heading in docs, heading
    for required in ("README.md", "CHANGELOG.md"):
        assert (ADDON / required).read_text(encoding="utf-8").strip()
    assert f"## {config['version']}" in (ADDON / "CHANGELOG.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "size"), [("icon.png", (128, 128)), ("logo.png", (250, 100))])
def test_images(name: str, size: tuple[int, int]) -> None:
    path = ADDON / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None
    assert (img.shape[1], img.shape[0]) == size
    assert img.shape[2] == 4 and img[:, :, 3].max() == 255  # transparent background, opaque glyph


def test_repository_manifest() -> None:
    repo = _yaml(ROOT / "repository.yaml")
    assert repo["name"]
    assert set(repo) <= REPOSITORY_KEYS


# --- image: Dockerfile, requirements -----------------------------------------------


def _dockerfile_lines() -> list[str]:
    text = (ADDON / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_dockerfile_builds_from_build_from(config: dict[str, Any]) -> None:
    lines = _dockerfile_lines()
    first_from = next(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    assert re.fullmatch(r"FROM \$\{?BUILD_FROM\}?", lines[first_from]), lines[first_from]
    args = [ln for ln in lines[:first_from] if ln.startswith("ARG BUILD_FROM")]
    assert args, "ARG BUILD_FROM must come before the first FROM"
    default = args[-1].partition("=")[2].strip().strip('"')
    assert default.startswith("ghcr.io/home-assistant/") and "debian" in default, default
    version_arg = next(ln for ln in lines if ln.startswith("ARG BUILD_VERSION"))
    assert version_arg.partition("=")[2] == config["version"]
    for ln in lines:
        if ln.startswith("COPY "):
            sources = ln.split()[1:-1]
            for src in sources:
                assert not src.startswith(("..", "/")), f"{ln}: outside the build context"
                assert (ADDON / src).exists(), f"{ln}: {src} is not in addon/"


def test_no_build_yaml_and_labels_in_the_dockerfile(config: dict[str, Any]) -> None:
    # The current app builder and the Supervisor read the base image from the Dockerfile's
    # BUILD_FROM default and the labels from LABEL; build.yaml is deprecated.
    assert not (ADDON / "build.yaml").exists()
    text = " ".join(_dockerfile_lines())
    assert 'io.hass.type="app"' in text
    assert 'io.hass.name="FaceTrack"' in text
    assert "TARGETARCH" in text and "BUILD_ARCH" in text


def test_dockerfile_keeps_what_bashio_needs() -> None:
    # bashio makes every Supervisor call through curl and parses with jq: removing them from the
    # base image makes `bashio::services.available mqtt` fail ("No MQTT broker").
    for ln in _dockerfile_lines():
        for m in re.finditer(r"apt-get (?:purge|remove)(?: -[a-z-]+)* ((?:[a-z0-9.+-]+ ?)+)", ln):
            removed = set(m.group(1).split())
            assert not removed & {"curl", "jq", "bash", "ca-certificates", "tzdata"}, ln
    assert "command -v curl jq bashio" in " ".join(_dockerfile_lines())


def test_dockerfile_downloads_are_pinned_and_skippable() -> None:
    text = " ".join(_dockerfile_lines())
    # HailoRT: the cloned tag is checked against its commit; MediaMTX: against a checksum.
    assert re.search(r"ARG HAILORT_COMMIT=[0-9a-f]{40}\b", text)
    assert 'rev-parse HEAD)" = "${HAILORT_COMMIT}"' in text
    assert "sha256sum -c" in text
    # Empty versions skip the two GitHub downloads (scripts/check_app_image.sh builds offline).
    assert 'if [ -z "${HAILORT_VERSION}" ]' in text and 'if [ -z "${MEDIAMTX_VERSION}" ]' in text


def _requirements(text: str) -> list[str]:
    return [re.sub(r"\s+", "", ln) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_requirements_in_sync_with_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    expected = [re.sub(r"\s+", "", d) for d in pyproject["project"]["dependencies"]]
    actual = _requirements((ADDON / "requirements.txt").read_text(encoding="utf-8"))
    assert sorted(actual) == sorted(expected), (
        "addon/requirements.txt differs from pyproject.toml [project] dependencies; copy them over:\n"
        + "\n".join(pyproject["project"]["dependencies"])
    )


# --- run script ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script", [RUN, FINISH, MTX_RUN, MTX_FINISH], ids=["run", "finish", "mediamtx-run", "mediamtx-finish"]
)
def test_service_scripts_executable(script: Path) -> None:
    mode = script.stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXGRP and mode & stat.S_IXOTH
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/with-contenv bashio\n")
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_run_script_reads_mqtt_from_bashio_and_hides_the_password() -> None:
    text = RUN.read_text(encoding="utf-8")
    for key in ("host", "port", "username", "password"):
        assert re.search(rf"bashio::services mqtt '{key}'", text), key
    assert "--mqtt-password-env FACETRACK_MQTT_PASSWORD" in text
    assert not re.search(r"--mqtt-password(?!-env)", text), "the password must not be an argument"
    assert re.search(r"^exec python3 -m facetrack .*serve --config \"\$\{CONFIG\}\"$", text, re.M)
    assert "bashio::config 'log_level'" in text
    # every flag passed to the config writer exists
    call = text[text.index("python3 -m facetrack.config.addon") : text.index("--out")]
    known = {opt for action in build_parser()._actions for opt in action.option_strings}
    for flag in re.findall(r"(--[a-z][a-z-]*)", call):
        assert flag in known, flag


# --- options -> service configuration -------------------------------------------------------------


def test_mapping_is_accepted_by_the_service_parser(config: dict[str, Any]) -> None:
    raw = options_to_service_config(_sample_options(config), MQTT)
    svc = parse_service_config(raw)

    assert svc.db_path == "/config/faces.lance"
    assert svc.media_dir == "/media/facetrack"
    # MQTT from the Supervisor service, topics from the options
    assert (svc.mqtt.host, svc.mqtt.port) == ("core-mosquitto", 1883)
    assert (svc.mqtt.username, svc.mqtt.password) == ("addons", SECRET)
    assert svc.mqtt.tls.enabled is False
    assert svc.mqtt.topic_prefix == "facetrack"
    assert svc.mqtt.discovery is True
    # cameras, with per-camera overrides
    front, garden = svc.cameras
    assert (front.name, front.enabled) == ("front_door", True)
    assert front.source == "rtsp://viewer:cam@192.168.1.20:554/stream1"
    assert (garden.name, garden.source, garden.enabled) == ("garden", "/media/garden.mp4", False)
    assert front.tracking.detector_input_size == 960
    assert garden.tracking.detector_input_size == 640
    assert (front.tracking.motion_detect_fps, garden.tracking.motion_detect_fps) == (5.0, 0.0)
    assert front.tracking.cosine_similarity_threshold == garden.tracking.cosine_similarity_threshold == 0.45
    assert front.tracking.credence_count == svc.defaults.credence_count == 3
    assert front.tracking.db_path == "/config/faces.lance"
    # alerts: app-wide defaults, camera override
    assert svc.alerts.alert_mode is AlertMode.ON_UNKNOWNS
    assert svc.alerts.alert_once is True and svc.alerts.cooldown_seconds == 60.0
    assert front.alerts.alert_mode is AlertMode.ON_ALL
    assert garden.alerts.alert_mode is AlertMode.ON_UNKNOWNS
    # notifications
    assert svc.notifications.urls == ("tgram://123456:ABC/987", "ntfy://ntfy.sh/facetrack")
    assert svc.notifications.message == config["options"]["notification_message"]


def test_mapping_defaults_and_alert_mode_none(config: dict[str, Any]) -> None:
    options = {**config["options"], "alert_mode": "NONE", "cameras": [{"name": "cam", "source": "rtsp://h/s"}]}
    svc = parse_service_config(options_to_service_config(options, MQTT))
    assert svc.defaults.cosine_similarity_threshold == DEFAULT_COSINE_THRESHOLD  # unset -> engine default
    assert svc.alerts.alert_mode is AlertMode.NONE
    assert svc.cameras[0].alerts.alert_mode is AlertMode.NONE
    assert svc.notifications.urls == ()


def test_mapping_bashio_strings_and_no_broker(config: dict[str, Any]) -> None:
    options = {**config["options"], "cameras": [{"name": "cam", "source": "rtsp://h/s"}], "topic_prefix": "home/ft"}
    bashio_mqtt = {"host": "broker", "port": "8883", "username": "", "password": "", "ssl": "true"}
    svc = parse_service_config(options_to_service_config(options, bashio_mqtt))
    assert (svc.mqtt.host, svc.mqtt.port) == ("broker", 8883)
    assert svc.mqtt.username is None and svc.mqtt.password is None
    assert svc.mqtt.tls.enabled is True
    assert svc.mqtt.topic_prefix == "home/ft"

    svc = parse_service_config(options_to_service_config(options, None, config_dir="/data", media_dir="/share/ft"))
    assert svc.mqtt.topic_prefix == "home/ft" and svc.mqtt.password is None
    assert svc.db_path == "/data/faces.lance" and svc.media_dir == "/share/ft"


# --- the CLI ---------------------------------------------------------------------------------------


def _write_options(tmp_path: Path, options: dict[str, Any]) -> Path:
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options), encoding="utf-8")
    return path


def _argv(options: Path, out: Path) -> list[str]:
    return [
        "--options", str(options), "--mqtt-host", "core-mosquitto", "--mqtt-port", "1883",
        "--mqtt-username", "addons", "--mqtt-password-env", "FT_TEST_MQTT_PASSWORD", "--mqtt-ssl", "false",
        "--out", str(out),
    ]  # fmt: skip


def test_cli_writes_a_private_file_without_the_password_in_argv(config: dict[str, Any], tmp_path: Path) -> None:
    options = _write_options(tmp_path, _sample_options(config))
    out = tmp_path / "run" / "facetrack.yaml"
    cmd = [sys.executable, "-m", "facetrack.config.addon", *_argv(options, out)]
    assert not any(SECRET in a for a in cmd)
    env = {**os.environ, "FT_TEST_MQTT_PASSWORD": SECRET}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr
    assert "tgram://" not in res.stdout + res.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["facetrack.yaml"]  # no temporary file left
    svc = load_service_config(out)
    assert svc.mqtt.password == SECRET and svc.mqtt.username == "addons"
    assert [c.name for c in svc.cameras] == ["front_door", "garden"]


def test_cli_replaces_a_readable_file_with_a_private_one(
    config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _write_options(tmp_path, _sample_options(config))
    out = tmp_path / "facetrack.yaml"
    out.write_text("old: true\n", encoding="utf-8")
    out.chmod(0o644)
    monkeypatch.setenv("FT_TEST_MQTT_PASSWORD", SECRET)
    assert main(_argv(options, out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert _yaml(out)["mqtt"]["password"] == SECRET


def test_cli_without_cameras_fails_with_a_message(
    config: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = _write_options(tmp_path, config["options"])
    out = tmp_path / "facetrack.yaml"
    assert main(_argv(options, out)) == 1
    assert "no camera configured" in caplog.text
    assert not out.exists()


def test_cli_names_the_bad_option(config: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = {**config["options"], "cameras": [{"name": "ok_cam", "source": "rtsp://h/s"},
                                                {"name": "Bad Name", "source": "rtsp://h/t"}]}  # fmt: skip
    out = tmp_path / "facetrack.yaml"
    assert main(_argv(_write_options(tmp_path, options), out)) == 1
    assert "cameras.1.name" in caplog.text
    assert not out.exists()


def test_cli_unreadable_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--options", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o.yaml")]) == 1
    assert "cannot read the app options" in caplog.text


def test_cli_treats_bashio_nulls_as_missing(
    config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``bashio::services mqtt 'username'`` prints ``null`` when the broker has no user."""
    options = _write_options(tmp_path, _sample_options(config))
    out = tmp_path / "facetrack.yaml"
    argv = _argv(options, out)
    argv[argv.index("--mqtt-username") + 1] = "null"
    argv[argv.index("--mqtt-ssl") + 1] = "null"
    monkeypatch.setenv("FT_TEST_MQTT_PASSWORD", "null")
    assert main(argv) == 0
    svc = load_service_config(out)
    assert svc.mqtt.username is None and svc.mqtt.password is None and svc.mqtt.tls.enabled is False

    argv[argv.index("--mqtt-port") + 1] = "not-a-port"
    assert main(argv) == 1
    assert "invalid MQTT port" in caplog.text
