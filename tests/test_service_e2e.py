"""End to end: the real ``facetrack serve`` process, a real Mosquitto, the composed demo clip.

Two people are enrolled before the run; the clip also shows a stranger. Every payload the test
subscriber receives is validated against docs/schemas (see mqtt_helpers.Subscriber).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
import yaml

from facetrack.config import parse_config
from facetrack.inference import create_backend
from facetrack.library import FaceLibrary
from facetrack.recognizer import FaceRecognizer
from mqtt_helpers import WAIT_SCALE, Broker, Gate, Subscriber, free_port, wait_subscribed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
import compose  # noqa: E402

# Generous: the module's fixtures (composing the clip, enrolling) alone take minutes on a loaded machine.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "demo.mp4"
    compose.compose(out)
    return out


@pytest.fixture(scope="module")
def enrolled_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("db") / "faces.lance"
    backend = create_backend()
    cfg = parse_config({})
    rec = FaceRecognizer(backend, cfg, FaceLibrary(db, backend.model_id, backend.embedding_dim))
    compose.enrol_demo_people(rec)
    return db


class Engine:
    """``python -m facetrack serve`` as a subprocess."""

    def __init__(self, tmp: Path, port: int, db: Path, source: Path | str, **extra: object) -> None:
        self.db = tmp / "faces.lance"
        if db.exists():
            shutil.copytree(db, self.db)
        cfg = {
            "db_path": str(self.db),
            "reconnect_max_seconds": 2,
            "media_dir": str(tmp),
            "mqtt": {"host": "127.0.0.1", "port": port, "client_id": f"facetrack-{port}"},
            "alerts": {"alert_mode": "ON_ALL", "alert_once": True, "cooldown_seconds": 60},
            "cameras": [{"name": "door", "source": str(source)}],
            "http": {"host": "127.0.0.1", "port": free_port()},
            "clips": {"duration_seconds": 2, "pre_roll_seconds": 0.4, "storage": {"path": str(tmp / "clips")}},
        }
        cfg.update(extra)
        self.config = tmp / "facetrack.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = tmp / "engine.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Engine:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "facetrack", "-v", "serve", "--config", str(self.config)],
                # Its own working directory: local state of an s3:// library (inbox, clips) goes there.
                stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=self.config.parent,
            )  # fmt: skip
        return self

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30 * WAIT_SCALE)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def sub(broker: Broker):
    s = Subscriber(broker.port).start()
    yield s
    s.stop()
    assert not s.errors, "payloads not matching docs/schemas:\n" + "\n".join(s.errors[:10])


class _Capture(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).bodies.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_a: object) -> None:
        pass


@pytest.fixture
def notifications():  # a real HTTP endpoint for Apprise's json:// plugin, on loopback
    _Capture.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], _Capture.bodies
    server.shutdown()


def test_clip_gives_track_identity_and_alert_sequence(
    tmp_path: Path, broker: Broker, sub: Subscriber, demo_clip: Path, enrolled_db: Path, notifications
) -> None:
    port, bodies = notifications
    engine = Engine(
        tmp_path, broker.port, enrolled_db, demo_clip,
        notifications={"urls": [f"json://127.0.0.1:{port}/notify"], "message": "${person} at ${camera}"},
        mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": "ft-e2e", "discovery": True},
    ).start()  # fmt: skip
    try:
        sub.wait_for("facetrack/status", lambda m: m.payload == "online", timeout=60)
        info = sub.wait_for("facetrack/info")[0].payload
        assert info["cameras"] == ["door"] and info["model_id"] == "sface_2021dec"
        persons = sub.wait_for("facetrack/persons")[0].payload["persons"]
        assert sorted(p["name"] for p in persons) == sorted(compose.ENROLLED)
        sub.wait_for("door/state", lambda m: m.payload["state"] == "online")
        # The clip lasts 10.4 s; wait for its last track to end (the file then replays at once).
        ended = sub.wait_for("door/track", lambda m: m.payload["type"] == "track_ended", count=4, timeout=60)
        code = engine.terminate()
    finally:
        engine.kill()
    assert code == 0
    # The first pass (the replay's track ids start at 1 again).
    tracks = [m.payload for m in sub.find("door/track") if m.at <= ended[3].at]
    by_track: dict[int, list[str]] = {}
    for t in tracks:
        by_track.setdefault(t["track_id"], []).append(t["type"])
    first_run = sorted(by_track)[:4]
    for tid in first_run:
        seq = by_track[tid]
        assert seq[0] == "track_started" and seq[-1] == "track_ended" and "identity" in seq, (tid, seq)
    identities = {t["track_id"]: t["person"] for t in tracks if t["type"] == "identity"}
    names = [identities[t] for t in first_run]
    assert names == ["John_Salley", "John_Savage", None, "John_Salley"]
    alerts = [m for m in sub.find("door/alert")]
    assert all(not m.retain and m.qos == 1 for m in alerts)
    assert all(not m.retain for m in sub.find("door/track"))
    kinds = [(a.payload["kind"], a.payload["person"]) for a in alerts[:3]]
    # The returning John_Salley is within the person cooldown: 3 alerts, not 4.
    assert kinds == [("known_face", "John_Salley"), ("known_face", "John_Savage"), ("unknown_face", None)]
    # Clean shutdown: status offline, camera offline, retained.
    status = sub.find("facetrack/status")
    assert status[-1].payload == "offline"
    assert sub.find("door/state")[-1].payload["state"] == "offline"
    # Presence: "seen" for each known person, never retained.
    seen = {m.payload["person"] for m in sub.find("", lambda m: "/seen/" in m.topic)}
    assert seen == set(compose.ENROLLED)
    assert not any(m.retain for m in sub.messages if "/seen/" in m.topic)
    # Notifications: one per alert, through Apprise to a real HTTP endpoint, with the snapshot.
    deadline = time.monotonic() + 10
    while len(bodies) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    messages = sorted(str(b["message"]) for b in bodies)
    assert messages[:3] == ["John_Salley at door", "John_Savage at door", "unknown person at door"]
    attachments = [a for b in bodies for a in b.get("attachments", [])]  # type: ignore[union-attr]
    assert attachments and all(base64.b64decode(a["base64"])[:2] == b"\xff\xd8" for a in attachments)


def test_discovery_configs_for_cameras_and_persons(
    tmp_path: Path, broker: Broker, demo_clip: Path, enrolled_db: Path
) -> None:
    disc = Subscriber(broker.port, prefix="homeassistant").start()
    engine = Engine(
        tmp_path, broker.port, enrolled_db, demo_clip,
        mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": "ft-disc", "discovery": True},
    ).start()  # fmt: skip
    control = Subscriber(broker.port).start()
    try:
        disc.wait_for("/config", count=3, timeout=60)
        # A late subscriber (HA restarting) gets the configs as retained messages.
        late = Subscriber(broker.port, prefix="homeassistant").start()
        configs = late.wait_for("/config", count=3, timeout=15)
        late.stop()
        assert all(m.retain for m in configs)
        for m in configs:
            m.payload = json.loads(m.payload)
        by_topic = {m.topic: m for m in configs}
        cam = by_topic["homeassistant/device/facetrack_camera_door/config"]
        assert cam.payload["o"]["name"] == "FaceTrack"
        platforms = sorted(c["p"] for c in cam.payload["cmps"].values())
        assert platforms == ["binary_sensor", "event", "sensor", "sensor"]
        assert all("default_entity_id" in c and "unique_id" in c for c in cam.payload["cmps"].values())
        persons = [m for m in configs if "_person_" in m.topic]
        assert sorted(m.payload["dev"]["name"] for m in persons) == sorted(compose.ENROLLED)
        presence = next(c for m in persons for c in m.payload["cmps"].values() if c["p"] == "binary_sensor")
        assert presence["off_dly"] == 120 and presence["stat_t"].startswith("facetrack/seen/")
        # Forgetting a person removes their device (empty retained config).
        control.publish("facetrack/command/forget", {"request_id": "f1", "name": "John_Savage"})
        assert control.wait_for("response/f1")[0].payload["ok"] is True
        gone = next(m.topic for m in persons if m.payload["dev"]["name"] == "John_Savage")
        disc.wait_for(gone, lambda m: m.payload == "", timeout=15)
        assert engine.terminate() == 0
    finally:
        engine.kill()
        disc.stop()
        control.stop()


def test_broker_restart_reconnects_republishes_and_loses_no_alert(
    tmp_path: Path, broker: Broker, sub: Subscriber, demo_clip: Path, enrolled_db: Path, notifications
) -> None:
    port, bodies = notifications
    # The engine reaches the broker through a gate, opened after the restart only once this
    # subscriber is subscribed again: what the engine kept must not go out to nobody.
    gate = Gate(broker.port)
    gate.open()
    source = tmp_path / "camera.mp4"  # appears during the outage: every alert is raised in it
    engine = Engine(
        tmp_path, gate.port, enrolled_db, source,
        notifications={"urls": [f"json://127.0.0.1:{port}/notify"], "message": "${person} at ${camera}"},
        alerts={"alert_mode": "ON_ALL", "alert_once": True, "cooldown_seconds": 3600},  # 3 alerts, however slow
    ).start()  # fmt: skip
    try:
        sub.wait_for("door/state", lambda m: m.payload["state"] == "offline", timeout=120)  # no file yet
        gate.close()
        broker.stop()
        down_at = time.time()
        shutil.copy(demo_clip, source)
        # The notifications (sent after each alert is published) say when all three were raised.
        deadline = time.monotonic() + 120
        while len(bodies) < 3:
            assert time.monotonic() < deadline, f"alerts raised during the outage: {bodies}"
            time.sleep(0.2)
        broker.start()
        up_at = time.time()
        wait_subscribed(sub)
        gate.open()
        alerts = sub.wait_for("door/alert", count=3, timeout=120)
        # Raised while the broker was down (frames captured after the outage began), delivered
        # after it, in order, once.
        assert [a.payload["person"] for a in alerts] == ["John_Salley", "John_Savage", None]
        assert all(a.payload["ts"] >= down_at and a.at > up_at for a in alerts)
        # Retained state came back although the restarted broker kept nothing: the engine
        # republished it (a new subscriber gets it as retained messages).
        late = Subscriber(broker.port).start()
        try:
            info = late.wait_for("facetrack/info", timeout=60)[0]
            assert info.retain and info.payload["mqtt_outbox"]["dropped_alerts"] == 0
            assert late.wait_for("facetrack/persons", timeout=60)[0].retain
            assert late.wait_for("door/state", timeout=60)[0].retain
            assert late.wait_for("facetrack/status", timeout=60)[0].payload == "online"
        finally:
            late.stop()
        assert not late.errors, late.errors[:5]
        assert engine.terminate() == 0
    finally:
        engine.kill()
        gate.stop()
    # Every alert raised was delivered exactly once (the notifications count what was raised).
    alerts = [m.payload for m in sub.find("door/alert")]
    assert len({a["alert_id"] for a in alerts}) == len(alerts) == len(bodies)
    notified = sorted(str(b["message"]) for b in bodies)
    assert notified == sorted(f"{a['person'] or 'unknown person'} at door" for a in alerts)


def test_camera_that_vanishes_and_comes_back(
    tmp_path: Path, broker: Broker, sub: Subscriber, demo_clip: Path, enrolled_db: Path
) -> None:
    source = tmp_path / "camera.mp4"  # missing at start: the camera is "offline"
    engine = Engine(tmp_path, broker.port, enrolled_db, source).start()
    try:
        off = sub.wait_for("door/state", lambda m: m.payload["state"] == "offline", timeout=60)
        assert "not found" in off[0].payload["error"]
        shutil.copy(demo_clip, source)
        sub.wait_for("door/state", lambda m: m.payload["state"] == "online", timeout=30)
        sub.wait_for("door/track", lambda m: m.payload["type"] == "track_started", timeout=30)
        assert engine.terminate() == 0
    finally:
        engine.kill()


def test_commands_errors_and_enrolment_recognised_on_the_next_run(
    tmp_path: Path, broker: Broker, sub: Subscriber, demo_clip: Path, enrolled_db: Path
) -> None:
    engine = Engine(tmp_path, broker.port, enrolled_db, demo_clip).start()
    try:
        sub.wait_for("facetrack/status", lambda m: m.payload == "online", timeout=60)
        # Malformed, unknown, invalid and oversized commands: error responses, no crash.
        sub.publish("facetrack/command/enroll", b"{not json")
        sub.publish("facetrack/command/explode", {"request_id": "r-unknown"})
        sub.publish("facetrack/command/enroll", {"request_id": "r-noimage", "name": "X"})
        sub.publish("facetrack/command/forget", {"request_id": "r-nobody", "name": "Nobody"})
        sub.publish(
            "facetrack/command/enroll", {"request_id": "r-escape", "name": "X", "image_path": "../../etc/passwd"}
        )
        sub.publish("facetrack/command/enroll", {"request_id": "r-big", "name": "X", "image_base64": "A" * (9 << 20)})
        sub.publish(
            "facetrack/command/enroll",
            {"request_id": "r-dog", "name": "Dog", "image_base64": base64.b64encode(b"GIF89a not really").decode()},
        )
        codes = {}
        for rid in ("r-unknown", "r-noimage", "r-nobody", "r-escape", "r-dog", "r-big"):
            codes[rid] = sub.wait_for(f"response/{rid}", timeout=30)[0].payload["error"]["code"]
        # Not JSON: no usable request_id, so answered on response/invalid (the oversized one is
        # answered on its own id, tests/test_hostile_commands.py).
        invalid = sub.wait_for("response/invalid", count=1, timeout=30)
        assert [m.payload["error"]["code"] for m in invalid] == ["bad_request"]
        assert codes == {
            "r-big": "too_large",
            "r-unknown": "unknown_command",
            "r-noimage": "bad_request",
            "r-nobody": "not_found",
            "r-escape": "forbidden",
            "r-dog": "not_an_image",
        }
        # Enrol the stranger from his track (its best crops) ...
        unknown = sub.wait_for(
            "door/track", lambda m: m.payload["type"] == "identity" and m.payload["person"] is None, timeout=60
        )[0].payload
        sub.publish(
            "facetrack/command/enroll_track",
            {"request_id": "r-track", "camera": "door", "track_id": unknown["track_id"], "name": "John_Simm"},
        )
        by_track = sub.wait_for("response/r-track", timeout=30)[0].payload
        assert by_track["ok"] is True and 1 <= by_track["result"]["enrolled"] <= 3, by_track
        sub.publish(
            "facetrack/command/enroll_track",
            {"request_id": "r-notrack", "camera": "door", "track_id": 999, "name": "X"},
        )
        assert sub.wait_for("response/r-notrack")[0].payload["error"]["code"] == "not_found"
        # ... and from a photo not shown in the clip ...
        photo = compose.enrolment_photos(compose.STRANGER)[0]
        sub.publish(
            "facetrack/command/enroll",
            {
                "request_id": "r-enrol",
                "name": "John_Simm",
                "image_base64": base64.b64encode(photo.read_bytes()).decode(),
            },
        )
        ok = sub.wait_for("response/r-enrol", timeout=30)[0].payload
        assert ok["ok"] is True and ok["result"]["person"] == "John_Simm"
        assert ok["result"]["embeddings"] == by_track["result"]["enrolled"] + 1
        sub.wait_for("facetrack/persons", lambda m: any(p["name"] == "John_Simm" for p in m.payload["persons"]))
        sub.publish("facetrack/command/list", {"request_id": "r-list"})
        listed = sub.wait_for("response/r-list")[0].payload["result"]["persons"]
        assert sorted(p["name"] for p in listed) == sorted([*compose.ENROLLED, "John_Simm"])
        # ... the clip replays after it ends: now John_Simm is recognised.
        sub.wait_for(
            "door/track", lambda m: m.payload["type"] == "identity" and m.payload["person"] == "John_Simm", timeout=60
        )
        assert engine.terminate() == 0
    finally:
        engine.kill()
    responses = [m for m in sub.messages if "/response/" in m.topic]
    assert len(responses) >= 11 and all(not m.retain for m in responses)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, b"", {}


def _ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,nb_read_frames,width,height:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    s = data["streams"][0]
    return {"codec": s["codec_name"], "frames": int(s["nb_read_frames"]), "width": s["width"],
            "duration": float(data["format"]["duration"])}  # fmt: skip


def test_alert_clip_snapshot_and_live_stream_over_http(
    tmp_path: Path, broker: Broker, sub: Subscriber, demo_clip: Path, enrolled_db: Path
) -> None:
    engine = Engine(tmp_path, broker.port, enrolled_db, demo_clip).start()
    try:
        state = sub.wait_for("door/state", lambda m: m.payload["state"] == "online", timeout=60)[-1].payload
        # Live: snapshot and MJPEG of the annotated frames, token-protected.
        deadline = time.monotonic() + 10
        while (got := _get(state["snapshot_url"]))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # until the first frame is processed
        code, jpeg, headers = got
        assert code == 200 and headers["Content-Type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (720, 1280, 3)
        assert _get(state["snapshot_url"].split("?")[0])[0] == 401
        with urllib.request.urlopen(state["mjpeg_url"], timeout=20) as stream:
            assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            parts = 0
            buf = b""
            while parts < 3:
                buf += stream.read(4096)
                while (end := buf.find(b"\xff\xd9")) != -1 and (start := buf.find(b"\xff\xd8")) != -1:
                    frame = cv2.imdecode(np.frombuffer(buf[start : end + 2], np.uint8), cv2.IMREAD_COLOR)
                    assert frame is not None and frame.shape[1] == 1280
                    parts += 1
                    buf = buf[end + 2 :]
        # An alert carries the clip's URLs; the clip arrives a few seconds later.
        alert = sub.wait_for("door/alert", timeout=60)[0].payload
        assert alert["clip_url"] and alert["snapshot_url"]
        clip = sub.wait_for("door/clip", lambda m: m.payload["alert_id"] == alert["alert_id"], timeout=60)[0].payload
        # 2 s at the file's 25 frames/s; shorter if the machine cannot keep up with the file: the
        # clip then ends 1.6 s (+ 1 s) after its alert on the clock.
        assert 0.4 <= clip["duration_s"] <= 2.01
        frames = clip["frames"]
        code, original, _ = _get(alert["clip_url"])
        assert code == 200
        (tmp_path / "original.mp4").write_bytes(original)
        code, annotated, _ = _get(clip["urls"]["annotated"])
        assert code == 200
        (tmp_path / "annotated.mp4").write_bytes(annotated)
        for name in ("original.mp4", "annotated.mp4"):
            probe = _ffprobe(tmp_path / name)
            assert probe["codec"] == "h264" and probe["frames"] == frames and probe["width"] == 1280, probe
            assert abs(float(probe["duration"]) - clip["duration_s"]) < 0.1, probe  # type: ignore[arg-type]
        code, ann, _ = _get(clip["urls"]["annotations"])
        meta = json.loads(ann)
        assert code == 200 and len(meta["frames"]) == frames and meta["alerts"][0]["alert_id"] == alert["alert_id"]
        # The alert's own frame is the last pre-roll frame, and its face is annotated there.
        assert any(f["faces"] and f["faces"][0]["track_id"] == alert["track_id"] for f in meta["frames"][:10])
        code, snap, _ = _get(alert["snapshot_url"])
        assert code == 200 and snap[:2] == b"\xff\xd8"
        # Tampered or truncated URLs are refused; no listing.
        assert _get(alert["clip_url"].replace("sig=", "sig=0"))[0] == 403
        assert _get(alert["clip_url"].split("?")[0])[0] == 403
        origin = alert["clip_url"].split("/clips/")[0]
        assert _get(f"{origin}/clips/")[0] == 404
        assert _get(f"{origin}/clips/door/../../facetrack.yaml")[0] in (403, 404)
        assert engine.terminate() == 0
    finally:
        engine.kill()


def test_rtsp_publication_to_a_listening_peer(
    tmp_path: Path, broker: Broker, sub: Subscriber, demo_clip: Path, enrolled_db: Path
) -> None:
    engine = Engine(tmp_path, broker.port, enrolled_db, demo_clip).start()
    port = free_port()
    out = tmp_path / "received.mp4"
    peer = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-rtsp_flags", "listen", "-timeout", "300",
         "-i", f"rtsp://127.0.0.1:{port}/door", "-frames:v", "20", "-c", "copy", str(out)],
    )  # fmt: skip
    publisher = None
    try:
        state = sub.wait_for("door/state", lambda m: m.payload["state"] == "online", timeout=60)[-1].payload
        assert state["stream_url"] == state["mjpeg_url"]  # no rtsp.base_url configured
        time.sleep(0.5)  # the peer is listening
        # Exactly what the HA app's RTSP server runs on demand (addon/rootfs/etc/mediamtx.yml).
        publisher = subprocess.Popen(
            [sys.executable, "-m", "facetrack.record.rtsp", "--config", str(engine.config), "--camera", "door",
             "--rtsp-url", f"rtsp://127.0.0.1:{port}/door"]
        )  # fmt: skip
        assert peer.wait(timeout=300) == 0
        probe = _ffprobe(out)
        assert probe["codec"] == "h264" and probe["frames"] == 20 and probe["width"] == 1280, probe
        assert engine.terminate() == 0
    finally:
        for p in (publisher, peer):
            if p is not None and p.poll() is None:
                p.kill()
        engine.kill()


def test_shutdown_during_a_clip_leaves_no_corrupt_file(
    tmp_path: Path, broker: Broker, sub: Subscriber, demo_clip: Path, enrolled_db: Path
) -> None:
    engine = Engine(
        tmp_path, broker.port, enrolled_db, demo_clip,
        clips={"clip_duration": 500, "pre_roll": 10, "storage": {"path": str(tmp_path / "clips")}},
    ).start()  # fmt: skip
    try:
        sub.wait_for("door/alert", timeout=60)
        assert engine.terminate() == 0  # a 20 s clip is in progress: it is finished, shorter
    finally:
        engine.kill()
    files = [p for p in (tmp_path / "clips").rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")]
    videos = [p for p in files if p.suffix == ".mp4"]
    assert videos, "the clip in progress was neither finished nor stored"
    for v in videos:
        # However fast the machine: whole (playable H.264, at least the alert's frame), and shorter.
        probe = _ffprobe(v)
        assert probe["codec"] == "h264" and 1 <= int(probe["frames"]) < 500, probe  # type: ignore[call-overload]
