"""End to end: the real engine, a real Mosquitto and Home Assistant's real MQTT client.

The engine (`facetrack serve` from this checkout's `addon/`, in the engine venv `.venv`) plays the
composed demo clip with John_Salley and John_Savage enrolled, alerting on every face, and
publishes through a Mosquitto on a free loopback port. Home Assistant's MQTT integration connects
to that broker (no `mqtt_mock`), the FaceTrack integration follows the engine: the three alerts of
the clip (John_Salley, John_Savage, the stranger John_Simm) join one clip, each with its own face
as snapshot (its face embedding is compared with the three people's photos'), and the last-alert
image shows the first alert's snapshot before the clip is stored; John_Salley's presence turns on;
the stranger lands in the unknown-face inbox and the `inbox_name` action enrols them; after SIGTERM
the engine's `offline` status makes the entities unavailable.

pytest-socket: the harness allows connections to 127.0.0.1 only (socket_allow_hosts) but blocks
creating sockets at all; the `socket_enabled` fixture lifts the latter and keeps the former.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Generator
from pathlib import Path

import pytest
import yaml
from custom_components.facetrack.const import CONF_TOPIC_PREFIX, DOMAIN
from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_PORT, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .engine_helpers import free_port, log_tail, mosquitto, mosquitto_path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PYTHON = ROOT / ".venv" / "bin" / "python"
#: The engine runs this checkout's code (the venv may point at another one).
ENGINE_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "addon"), "PYTHONUNBUFFERED": "1"}
PERSON = "John_Salley"
ENROLLED = ("John_Salley", "John_Savage")
UNENROLLED = "John_Simm"  # the clip's stranger
STRANGER = "Visitor"
PREFIX = "facetrack"
DEADLINE = 300.0  # per wait: generous for a loaded CI box (the engine starts and plays a clip)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def engine_assets(tmp_path: Path) -> tuple[Path, Path]:
    """The composed demo clip and a face library with the two enrolled people (engine venv)."""
    if not ENGINE_PYTHON.exists():
        pytest.skip(f"engine venv missing ({ENGINE_PYTHON})")
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    clip = tmp_path / "demo.mp4"
    db = tmp_path / "faces.lance"
    subprocess.run(
        [str(ENGINE_PYTHON), str(ROOT / "demo" / "compose.py"), str(clip)],
        cwd=ROOT, check=True, capture_output=True, timeout=120, env=ENGINE_ENV,
    )  # fmt: skip
    for person in ENROLLED:
        photos = sorted((ROOT / "demo" / "faces" / person).glob("*.jpg"))[:3]
        subprocess.run(
            [str(ENGINE_PYTHON), "-m", "facetrack", "enroll", "--db", str(db), "--name", person,
             *map(str, photos)],
            cwd=ROOT, check=True, capture_output=True, timeout=120, env=ENGINE_ENV,
        )  # fmt: skip
    return clip, db


@pytest.fixture
def broker(socket_enabled: None, engine_assets: tuple[Path, Path], tmp_path: Path) -> Generator[int]:
    """Mosquitto on a free 127.0.0.1 port (as tests/mqtt_helpers.Broker); yields the port."""
    with mosquitto(tmp_path) as port:
        yield port


def _engine_config(tmp_path: Path, port: int, clip: Path, db: Path) -> Path:
    cfg = {
        "db_path": str(db),
        "reconnect_max_seconds": 2,
        "media_dir": str(tmp_path),
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": f"facetrack-ha-e2e-{port}"},
        # `attic` is disabled: never opened, its device and entities stay, unavailable.
        "cameras": [{"name": "door", "source": str(clip)}, {"name": "attic", "source": str(clip), "enabled": False}],
        "http": {"host": "127.0.0.1", "port": free_port()},
        "alerts": {"alert_mode": "ON_ALL", "alert_once": True, "cooldown_seconds": 60},
        # Long enough for the clip's three alerts (0.2 s to about 4.5 s into it) to join one clip
        # however slowly the machine processes it (an alert joins a clip that still has half of
        # its 38 s post-roll ahead); stored about 40 s after its first alert.
        "clips": {"duration_seconds": 40, "pre_roll_seconds": 2, "storage": {"path": str(tmp_path / "clips")}},
    }
    path = tmp_path / "facetrack.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def _wait_for(hass: HomeAssistant, what: str, check, log: Path) -> None:
    """Poll `check()` until true, letting HA process the MQTT messages in between."""
    deadline = time.monotonic() + DEADLINE
    while True:
        await hass.async_block_till_done()
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; engine log:\n{log_tail(log)}")
        await asyncio.sleep(0.2)


# Run in the engine venv: the face nearest the centre of each snapshot (where the engine drew the
# alert's box) against the mean face of each demo person's photos (cosine similarity, OpenCV SFace).
_EMBED = """
import json, sys
from pathlib import Path
import cv2, numpy as np
from facetrack.inference.factory import create_backend

faces, snapshots = Path(sys.argv[1]), sys.argv[2:]
backend = create_backend("opencv")

def central_face(img):
    dets = backend.detect(img)
    if not dets:
        return None
    h, w = img.shape[:2]
    det = min(dets, key=lambda d: ((d.box[0] + d.box[2]) / 2 - w / 2) ** 2 + ((d.box[1] + d.box[3]) / 2 - h / 2) ** 2)
    return backend.embed(img, [det])[0]

people = {}
for folder in sorted(p for p in faces.iterdir() if p.is_dir()):
    vecs = []
    for photo in sorted(folder.glob("*.jpg")):
        canvas = np.full((480, 480, 3), 128, np.uint8)  # a chip fills its photo: give it a frame
        canvas[145:335, 145:335] = cv2.resize(cv2.imread(str(photo)), (190, 190))
        if (v := central_face(canvas)) is not None:
            vecs.append(v)
    mean = np.mean(vecs, axis=0)
    people[folder.name] = mean / np.linalg.norm(mean)
out = []
for path in snapshots:
    v = central_face(cv2.imread(path))
    out.append(None if v is None else {name: float(v @ m) for name, m in people.items()})
print(json.dumps(out))
"""


def _similarities(snapshots: list[Path]) -> list[dict[str, float] | None]:
    """Per snapshot, its face's cosine similarity to each demo person (engine venv, OpenCV SFace)."""
    done = subprocess.run(
        [str(ENGINE_PYTHON), "-c", _EMBED, str(ROOT / "demo" / "faces"), *map(str, snapshots)],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120, env=ENGINE_ENV,
    )  # fmt: skip
    result: list[dict[str, float] | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def test_real_engine_turns_presence_on(
    hass: HomeAssistant,
    mock_hass_config: None,
    broker: int,
    engine_assets: tuple[Path, Path],
    tmp_path: Path,
    hass_client: ClientSessionGenerator,
) -> None:
    """Engine -> Mosquitto -> HA's MQTT client -> FaceTrack entities, and back to unavailable."""
    clip, db = engine_assets
    config = _engine_config(tmp_path, broker, clip, db)
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
    proc: subprocess.Popen[bytes] | None = None
    try:
        mqtt_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(mqtt_entry.entry_id)
        await hass.async_block_till_done()
        assert await mqtt.async_wait_for_mqtt_client(hass)

        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED

        # What the engine publishes, as it arrives: alerts and stored clips.
        alerts: list[dict] = []
        clips: list[dict] = []

        def _recorder(into: list[dict]) -> Callable[[mqtt.ReceiveMessage], None]:
            @callback
            def record(msg: mqtt.ReceiveMessage) -> None:
                into.append(json.loads(msg.payload))

            return record

        for topic, into in ((f"{PREFIX}/door/alert", alerts), (f"{PREFIX}/door/clip", clips)):
            entry.async_on_unload(await mqtt.async_subscribe(hass, topic, _recorder(into), qos=1))

        with engine_log.open("ab") as out:
            proc = subprocess.Popen(
                [str(ENGINE_PYTHON), "-m", "facetrack", "-v", "serve", "--config", str(config)],
                cwd=ROOT, stdout=out, stderr=out, env=ENGINE_ENV,
            )  # fmt: skip

        dev_reg = dr.async_get(hass)
        ent_reg = er.async_get(hass)
        session = async_get_clientsession(hass)

        async def download(url: str) -> tuple[int, bytes]:
            async with session.get(url) as response:
                return response.status, await response.read()

        # The first alert's own snapshot shows on the last-alert image at once: long before its
        # clip is stored (about 40 s after the alert).
        await _wait_for(hass, "the first alert", lambda: bool(alerts), engine_log)
        first = alerts[0]
        image_id = ent_reg.async_get_entity_id("image", DOMAIN, f"{PREFIX}_door_last_alert")
        assert image_id is not None

        def image_shows(alert_ids: set[str]) -> bool:
            state = hass.states.get(image_id)
            return state is not None and state.attributes.get("alert_id") in alert_ids

        await _wait_for(hass, "the last-alert image", lambda: image_shows({a["alert_id"] for a in alerts}), engine_log)
        client = await hass_client()
        response = await client.get(f"/api/image_proxy/{image_id}")
        shown = await response.read()
        assert response.status == 200 and response.content_type == "image/jpeg"
        shown_id = hass.states.get(image_id).attributes["alert_id"]
        shown_alert = next(a for a in alerts if a["alert_id"] == shown_id)
        assert (200, shown) == await download(shown_alert["snapshot_url"])
        assert not any(c["alert_id"] == first["alert_id"] for c in clips), "the clip was stored already"

        def person_entity(domain: str, key: str) -> str | None:
            device = next(
                (d for d in dev_reg.devices.get_devices_for_config_entry_id(entry.entry_id)
                 if d.name == PERSON),
                None,
            )  # fmt: skip
            if device is None:
                return None
            return next(
                (e.entity_id for e in er.async_entries_for_device(ent_reg, device.id)
                 if e.domain == domain and e.unique_id.endswith(f"_{key}")),
                None,
            )  # fmt: skip

        def presence_on() -> bool:
            assert proc is not None
            assert proc.poll() is None, f"engine exited with {proc.returncode}"
            entity_id = person_entity("binary_sensor", "presence")
            state = hass.states.get(entity_id) if entity_id else None
            return state is not None and state.state == STATE_ON

        await _wait_for(hass, f"{PERSON}'s presence on", presence_on, engine_log)

        presence_id = person_entity("binary_sensor", "presence")
        assert presence_id is not None
        presence = hass.states.get(presence_id)
        assert presence is not None and presence.attributes["camera"] == "door"

        last_seen_id = person_entity("sensor", "last_seen")
        assert last_seen_id is not None
        last_seen = hass.states.get(last_seen_id)
        assert last_seen is not None and last_seen.attributes["device_class"] == "timestamp"
        assert last_seen.state not in ("unknown", STATE_UNAVAILABLE)
        assert last_seen.attributes["camera"] == "door"
        # Gallery coverage from the engine's persons payload (the photos' head poses, or unknown for
        # embeddings without one).
        coverage_id = person_entity("sensor", "gallery_coverage")
        coverage = hass.states.get(coverage_id) if coverage_id else None
        assert coverage is not None and coverage.state != STATE_UNAVAILABLE
        assert set(coverage.attributes["poses"]) == {"frontal", "three_quarter", "profile", "unknown"}
        assert sum(coverage.attributes["poses"].values()) >= 1

        faces_id = ent_reg.async_get_entity_id("sensor", DOMAIN, f"{PREFIX}_door_faces")
        assert faces_id is not None
        faces = hass.states.get(faces_id)
        assert faces is not None and faces.state != STATE_UNAVAILABLE
        # Entity ids under the integration's name.
        assert (presence_id, last_seen_id, faces_id) == (
            f"binary_sensor.facetrack_{PERSON.lower()}_presence",
            f"sensor.facetrack_{PERSON.lower()}_last_seen",
            "sensor.facetrack_door_faces_in_view",
        )
        assert ent_reg.async_get_entity_id("camera", DOMAIN, f"{PREFIX}_door_camera") == "camera.facetrack_door"

        # The disabled camera: a device and entities, unavailable, the engine's state saying why.
        attic = [
            ent_reg.async_get_entity_id(domain, DOMAIN, f"{PREFIX}_attic_{key}")
            for domain, key in (("camera", "camera"), ("event", "face"), ("image", "last_alert"), ("sensor", "faces"))
        ]
        assert None not in attic, attic
        assert all((s := hass.states.get(e)) is not None and s.state == STATE_UNAVAILABLE for e in attic if e)
        hub = entry.runtime_data.hub
        await _wait_for(hass, "the disabled camera's state", lambda: "attic" in hub.camera_states, engine_log)
        assert hub.camera_states["attic"].state == "disabled"
        assert hub.camera_states["attic"].raw["error"] == "disabled in the configuration"

        # The stranger of the clip lands in the unknown-face inbox; naming the group from Home
        # Assistant enrols them: a person device appears and the group's image entity goes.
        unknown_id = ent_reg.async_get_entity_id("sensor", DOMAIN, f"{PREFIX}_unknown_faces")
        assert unknown_id is not None

        def pending_group() -> str | None:
            state = hass.states.get(unknown_id)
            if state is None or state.state in ("unknown", STATE_UNAVAILABLE) or int(state.state) < 1:
                return None
            return next(g["group_id"] for g in state.attributes["groups"] if g["status"] == "pending")

        await _wait_for(hass, "an unknown group in the inbox", lambda: pending_group() is not None, engine_log)
        group_id = pending_group()
        assert group_id is not None
        image_id = ent_reg.async_get_entity_id("image", DOMAIN, f"{PREFIX}_unknown_group_{group_id}")
        assert image_id is not None
        result = await hass.services.async_call(
            DOMAIN,
            "inbox_name",
            {"group_id": group_id[:8], "name": STRANGER, "mode": "new"},
            blocking=True,
            return_response=True,
        )
        assert result is not None
        assert result["person"] == STRANGER
        assert result["created"] is True
        assert result["enrolled"] >= 1

        def stranger_enrolled() -> bool:
            devices = dev_reg.devices.get_devices_for_config_entry_id(entry.entry_id)
            return any(d.name == STRANGER for d in devices) and hass.states.get(image_id) is None

        await _wait_for(hass, f"{STRANGER}'s device and the group's image gone", stranger_enrolled, engine_log)
        assert ent_reg.async_get(image_id) is None

        # The three alerts of the clip's first pass joined the first one's clip; each has its own
        # snapshot, the face of its own track: the face in it is nearest to that person's photos.
        await _wait_for(
            hass, "the first alert's clip", lambda: any(c["alert_id"] == first["alert_id"] for c in clips), engine_log
        )
        first_pass = alerts[:3]
        assert sorted(a["person"] or "" for a in first_pass) == ["", "John_Salley", "John_Savage"], alerts
        clip_path = first["clip_url"].split("?")[0]
        # All three on a machine that keeps up; at least two however slow it is (a clip ends on
        # the clock, and an alert joins it only while half of its post-roll is ahead).
        joined = [a for a in first_pass if a["clip_url"].split("?")[0] == clip_path]
        assert len(joined) >= 2, [a["clip_url"] for a in first_pass]
        offsets = [a["clip_offset_seconds"] for a in joined]
        assert offsets == sorted(offsets) and offsets[0] < offsets[-1]
        assert all(a["clip_url"].endswith(f"#t={a['clip_offset_seconds']:g}") for a in first_pass)
        assert len({a["snapshot_url"] for a in first_pass}) == len(first_pass)
        paths = []
        for n, alert in enumerate(first_pass):
            status, jpeg = await download(alert["snapshot_url"])
            assert status == 200 and jpeg[:2] == b"\xff\xd8"
            paths.append(tmp_path / f"alert-{n}.jpg")
            paths[-1].write_bytes(jpeg)
        similarities = await hass.async_add_executor_job(_similarities, paths)
        for alert, sims in zip(first_pass, similarities, strict=True):
            expected = alert["person"] or UNENROLLED
            assert sims is not None, f"no face in the snapshot of {expected}'s alert"
            best = max(sims, key=lambda name: sims[name])
            others = max(v for name, v in sims.items() if name != expected)
            assert best == expected and sims[expected] > others + 0.1, (expected, sims)

        # Clean shutdown: the engine publishes `offline` (retained) before it disconnects.
        proc.send_signal(signal.SIGTERM)
        code = await hass.async_add_executor_job(proc.wait, 30)
        assert code == 0, log_tail(engine_log)

        watched = (presence_id, last_seen_id, faces_id)
        await _wait_for(
            hass,
            "the entities to become unavailable",
            lambda: all((s := hass.states.get(e)) is not None and s.state == STATE_UNAVAILABLE for e in watched),
            engine_log,
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        # Unload while the broker still runs: cancels the presence timer and disconnects cleanly.
        for config_entry in (entry, mqtt_entry):
            if config_entry.state is ConfigEntryState.LOADED:
                await hass.config_entries.async_unload(config_entry.entry_id)
        await hass.async_block_till_done()
