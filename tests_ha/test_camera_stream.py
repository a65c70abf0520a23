"""The camera entity's stream: H.264 over RTSP when the app's RTSP server is configured, else none.

HA's stream component plays ``stream_source`` as HLS/WebRTC. The engine's state carries
``stream_url`` = ``<rtsp.base_url>/<camera>`` with an RTSP server, else the MJPEG URL (which HA
would wrap as MJPEG-in-MP4 that browsers do not play): the entity advertises ``STREAM`` only for
the former; without it the frontend shows HA's MJPEG proxy built from snapshots.

The end-to-end test plays the whole RTSP path on loopback: the real engine (rtsp.base_url set) ->
real Mosquitto -> HA's MQTT client -> the camera entity's ``stream_source``; then the command the
app's MediaMTX runs on demand for that URL (``addon/rootfs/etc/mediamtx.yml``) publishes the
engine's annotated stream as H.264 to that very URL, where ``ffprobe`` listens (ffmpeg's RTSP
listen mode; MediaMTX cannot be installed here) and decodes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from custom_components.facetrack.const import CONF_TOPIC_PREFIX, DOMAIN
from homeassistant.components import mqtt
from homeassistant.components.camera import CameraEntityFeature, async_get_image, async_get_stream_source
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker, AiohttpClientMockResponse
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, WebSocketGenerator
from yarl import URL

from .engine_helpers import free_port, log_tail, mosquitto, mosquitto_path
from .helpers import PREFIX, fire, state

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PYTHON = ROOT / ".venv" / "bin" / "python"
MEDIAMTX_YML = ROOT / "addon" / "rootfs" / "etc" / "mediamtx.yml"
SNAPSHOT = "http://engine.local:8099/cameras/garden/snapshot.jpg"
MJPEG = "http://engine.local:8099/cameras/garden/stream.mjpeg?token=t"
DEADLINE = 120.0  # s; generous: the engine loads its models on a shared, loaded machine


def _camera_id(hass: HomeAssistant, camera: str, prefix: str = PREFIX) -> str:
    """The camera entity's id, found by its unique id (ids are named by HA's helpers)."""
    entity_id = er.async_get(hass).async_get_entity_id("camera", DOMAIN, f"{prefix}_{camera}_camera")
    assert entity_id is not None
    return entity_id


async def _capabilities(hass_ws_client: WebSocketGenerator, entity_id: str) -> list[str]:
    """The stream types the frontend may use (``camera/capabilities``)."""
    client = await hass_ws_client()
    await client.send_json_auto_id({"type": "camera/capabilities", "entity_id": entity_id})
    msg = await client.receive_json()
    assert msg["success"], msg
    return sorted(msg["result"]["frontend_stream_types"])


async def test_rtsp_stream_url_is_the_stream_source(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """With the app's RTSP server the state's rtsp:// URL is the stream source: HA plays it (HLS)."""
    rtsp = "rtsp://homeassistant.local:8554/garden"
    fire(hass, f"{PREFIX}/garden/state", state("garden", stream_url=rtsp, mjpeg_url=MJPEG), "state")
    await hass.async_block_till_done()
    entity_id = _camera_id(hass, "garden")
    assert await async_get_stream_source(hass, entity_id) == rtsp
    camera = hass.states.get(entity_id)
    assert camera is not None and camera.state == "streaming"
    assert camera.attributes["supported_features"] == CameraEntityFeature.STREAM
    assert camera.attributes["frontend_stream_type"] == "hls"
    assert await _capabilities(hass_ws_client, entity_id) == ["hls"]


async def test_mjpeg_only_is_no_stream(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
    hass_client: ClientSessionGenerator,
    aioclient_mock: AiohttpClientMocker,
) -> None:
    """Without an RTSP server (stream_url = the MJPEG URL): no STREAM, no stream source; the
    frontend's live view is HA's MJPEG proxy of the snapshots, the still image is the snapshot."""
    fire(hass, f"{PREFIX}/garden/state", state("garden", stream_url=MJPEG, mjpeg_url=MJPEG), "state")
    await hass.async_block_till_done()
    entity_id = _camera_id(hass, "garden")
    assert await async_get_stream_source(hass, entity_id) is None
    camera = hass.states.get(entity_id)
    assert camera is not None and camera.state == "streaming"
    assert camera.attributes["supported_features"] == 0
    assert "frontend_stream_type" not in camera.attributes
    assert await _capabilities(hass_ws_client, entity_id) == []

    calls = 0

    async def snapshot_once(method: str, url: URL, data: Any) -> AiohttpClientMockResponse:
        # One snapshot, then the engine stops answering: HA's still stream ends by itself.
        nonlocal calls
        calls += 1
        if calls == 1:
            return AiohttpClientMockResponse(method, url, response=b"\xff\xd8first")
        return AiohttpClientMockResponse(method, url, status=503)

    aioclient_mock.get(SNAPSHOT, side_effect=snapshot_once)
    client = await hass_client()
    response = await client.get(f"/api/camera_proxy_stream/{entity_id}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    body = await response.read()
    assert b"Content-Type: image/jpeg" in body and b"\xff\xd8first" in body
    assert calls >= 2

    aioclient_mock.clear_requests()
    aioclient_mock.get(SNAPSHOT, content=b"\xff\xd8still")
    assert (await async_get_image(hass, entity_id)).content == b"\xff\xd8still"


async def test_stream_follows_the_state(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """The RTSP server configured later (or removed): STREAM and the source follow the state."""
    entity_id = _camera_id(hass, "garden")
    fire(hass, f"{PREFIX}/garden/state", state("garden", stream_url=MJPEG, mjpeg_url=MJPEG), "state")
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).attributes["supported_features"] == 0
    rtsp = "RTSPS://nvr.local:8322/garden"  # any case, TLS too: HA's stream component plays both
    fire(hass, f"{PREFIX}/garden/state", state("garden", stream_url=rtsp, mjpeg_url=MJPEG), "state")
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).attributes["supported_features"] == CameraEntityFeature.STREAM
    assert await async_get_stream_source(hass, entity_id) == rtsp
    fire(hass, f"{PREFIX}/garden/state", state("garden", stream_url=MJPEG, mjpeg_url=MJPEG), "state")
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).attributes["supported_features"] == 0
    assert await async_get_stream_source(hass, entity_id) is None


# ---- end to end: engine -> MQTT -> entity's stream_source <- H.264 published over RTSP -----------


@pytest.fixture
def broker(socket_enabled: None, tmp_path: Path) -> Generator[int]:
    """Mosquitto on a free 127.0.0.1 port; yields the port."""
    if not ENGINE_PYTHON.exists():
        pytest.skip(f"engine venv missing ({ENGINE_PYTHON})")
    if mosquitto_path() is None or not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("mosquitto, ffmpeg or ffprobe is not installed")
    with mosquitto(tmp_path) as port:
        yield port


def _on_demand_command(config: Path, rtsp_port: int, path: str) -> list[str]:
    """The app's MediaMTX ``runOnDemand`` command for a reader of ``path``, with this test's engine."""
    paths = yaml.safe_load(MEDIAMTX_YML.read_text(encoding="utf-8"))["paths"]
    (settings,) = paths.values()
    argv = shlex.split(settings["runOnDemand"].replace("$RTSP_PORT", str(rtsp_port)).replace("$MTX_PATH", path))
    assert argv[1:3] == ["-m", "facetrack.record.rtsp"], argv
    argv[0] = str(ENGINE_PYTHON)  # the app's venv -> the engine venv
    argv[argv.index("--config") + 1] = str(config)
    return argv


async def _until(what: str, check: Callable[[], bool], hass: HomeAssistant, log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        await hass.async_block_till_done()
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; engine log:\n{log_tail(log)}")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(400)
async def test_stream_source_is_rtsp_and_carries_h264(
    hass: HomeAssistant, mock_hass_config: None, broker: int, tmp_path: Path
) -> None:
    """The entity's stream source is the engine's rtsp:// URL, and ffprobe reads H.264 from it."""
    clip = tmp_path / "source.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=10",
         "-t", "20", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)],
        check=True, timeout=120,
    )  # fmt: skip
    rtsp_port = free_port()
    config = tmp_path / "facetrack.yaml"
    config.write_text(
        yaml.safe_dump({
            "db_path": str(tmp_path / "faces.lance"),
            "media_dir": str(tmp_path),
            "reconnect_max_seconds": 2,
            "mqtt": {"host": "127.0.0.1", "port": broker, "client_id": f"facetrack-rtsp-{broker}"},
            "cameras": [{"name": "door", "source": str(clip)}],
            "http": {"host": "127.0.0.1", "port": free_port()},
            "clips": {"storage": {"path": str(tmp_path / "clips")}},
            "rtsp": {"base_url": f"rtsp://127.0.0.1:{rtsp_port}"},  # the app's RTSP server
        })
    )  # fmt: skip
    # The engine of this checkout, whatever the engine venv's editable install points at.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT / "addon")}
    engine_log = tmp_path / "engine.log"
    mqtt_entry = MockConfigEntry(
        domain=mqtt.DOMAIN,
        title="MQTT",
        version=1,
        minor_version=2,
        data={mqtt.CONF_BROKER: "127.0.0.1", CONF_PORT: broker},
        options={mqtt.CONF_BIRTH_MESSAGE: {}},
    )
    entry = MockConfigEntry(domain=DOMAIN, title="FaceTrack", unique_id=PREFIX, data={CONF_TOPIC_PREFIX: PREFIX})
    engine: subprocess.Popen[bytes] | None = None
    probe: subprocess.Popen[bytes] | None = None
    publisher: subprocess.Popen[bytes] | None = None
    try:
        mqtt_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(mqtt_entry.entry_id)
        await hass.async_block_till_done()
        assert await mqtt.async_wait_for_mqtt_client(hass)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        with engine_log.open("ab") as out:
            engine = subprocess.Popen(
                [str(ENGINE_PYTHON), "-m", "facetrack", "-v", "serve", "--config", str(config)],
                cwd=tmp_path, stdout=out, stderr=out, env=env,
            )  # fmt: skip
        ent_reg = er.async_get(hass)

        def streaming() -> bool:
            assert engine is not None and engine.poll() is None, f"engine exited with {engine.returncode}"
            entity_id = ent_reg.async_get_entity_id("camera", DOMAIN, f"{PREFIX}_door_camera")
            camera = hass.states.get(entity_id) if entity_id else None
            return camera is not None and camera.state == "streaming"

        await _until("the door camera streaming", streaming, hass, engine_log)
        entity_id = _camera_id(hass, "door")
        camera = hass.states.get(entity_id)
        assert camera is not None and camera.attributes["supported_features"] == CameraEntityFeature.STREAM
        source = await async_get_stream_source(hass, entity_id)
        assert source == f"rtsp://127.0.0.1:{rtsp_port}/door"

        # The reader: ffprobe on the stream source, decoding the first packets it receives.
        probe_out, probe_err = tmp_path / "ffprobe.json", tmp_path / "ffprobe.err"
        with probe_out.open("wb") as out, probe_err.open("wb") as err:
            probe = subprocess.Popen(
                ["ffprobe", "-v", "error", "-rtsp_flags", "listen", "-listen_timeout", str(int(DEADLINE)),
                 "-i", source, "-select_streams", "v:0", "-count_frames", "-read_intervals", "%+#30",
                 "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json"],
                stdout=out, stderr=err,
            )  # fmt: skip
        # The publisher MediaMTX would start for this reader: same path, the server's port. Until
        # ffprobe listens it cannot connect and exits; started again then (runOnDemandRestart).
        url = urlsplit(source)
        assert url.port is not None
        command = _on_demand_command(config, url.port, url.path.lstrip("/"))
        assert command[-1] == source  # it publishes exactly where the entity's stream source points
        deadline = time.monotonic() + DEADLINE
        while probe.poll() is None:
            if publisher is None or publisher.poll() is not None:
                assert time.monotonic() < deadline, f"ffprobe read nothing: {log_tail(probe_err)}"
                publisher = subprocess.Popen(command, env=env, cwd=tmp_path)
            await asyncio.sleep(0.5)
        assert probe.returncode == 0, log_tail(probe_err)
        (stream,) = json.loads(probe_out.read_text())["streams"]
        assert stream["codec_name"] == "h264", stream
        assert (stream["width"], stream["height"]) == (640, 360), stream
        assert int(stream["nb_read_frames"]) >= 1, stream  # decoded pictures, not only the SDP

        engine.send_signal(signal.SIGTERM)
        assert await hass.async_add_executor_job(engine.wait, 30) == 0, log_tail(engine_log)
    finally:
        for proc in (publisher, probe, engine):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for config_entry in (entry, mqtt_entry):
            if config_entry.state is ConfigEntryState.LOADED:
                await hass.config_entries.async_unload(config_entry.entry_id)
        await hass.async_block_till_done()
