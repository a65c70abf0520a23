"""Every alert carries its own evidence (issue 14): its own face snapshot, kept before the alert
goes out and served at a signed, expiring URL, even when the alert joins a clip already
recording; the clip URL with the alert's time in it; clips in seconds at the processing rate."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from facetrack.alerting import BOX_KNOWN, AlertSink, snapshot_jpeg
from facetrack.alerts import Alert
from facetrack.camera.runner import ProcessedFrame
from facetrack.comms.payloads import AlertPayload
from facetrack.config.service import AlertConfig, AlertMode, parse_service_config
from facetrack.events import TrackEvent
from facetrack.record import clips as clips_mod
from facetrack.record.clips import ClipRecorder, RecorderSink, StoredClip
from facetrack.record.snapshots import AlertSnapshots
from facetrack.record.storage import StorageConfig, create_storage
from facetrack.track.face_tracker import FrameResult
from facetrack.web.api import AlertHistory
from facetrack.web.frames import FrameHub
from facetrack.web.server import WebServer
from facetrack.web.signing import UrlSigner
from mqtt_helpers import SCHEMAS

SECRET = b"s" * 32
ANNA = "a" * 32
T0 = 1795300000.0
#: Two faces: Anna's red square on the left, a stranger's blue one on the right (BGR).
BOX_A = [40.0, 60.0, 100.0, 140.0]
BOX_B = [200.0, 60.0, 260.0, 140.0]
RED, BLUE = (0, 0, 255), (255, 0, 0)


def scene(i: int) -> np.ndarray:
    f = np.full((240, 320, 3), 128, np.uint8)
    f[0, 0, 1] = i % 255  # each frame differs
    for (x1, y1, x2, y2), colour in ((BOX_A, RED), (BOX_B, BLUE)):
        f[int(y1) : int(y2), int(x1) : int(x2)] = colour
    return f


def processed(i: int, fps: float = 25.0) -> ProcessedFrame:
    return ProcessedFrame(i, i / fps, T0 + i / fps, scene(i), FrameResult([], [], 0), {}, fps)


def identity(track_id: int, bbox: list[float], person: str | None) -> TrackEvent:
    return TrackEvent(
        type="identity", frame=0, ts=0.0, track_id=track_id, person=person,
        person_id=ANNA if person else None, similarity=0.7 if person else 0.2, bbox=bbox, reason="vote",
    )  # fmt: skip


class Topics:
    def __init__(self) -> None:
        self.alerts: list[AlertPayload] = []

    def alert(self, camera: str, payload: Any) -> None:
        self.alerts.append(payload)


def centre(jpeg: bytes) -> tuple[int, int, int]:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    b, g, r = (int(v) for v in img[h // 2, w // 2])
    return b, g, r


class Camera:
    """A recorder and an alert sink over one camera, fed frame by frame as the runner does."""

    def __init__(self, tmp: Path, served: bool = True) -> None:
        self.storage = create_storage(StorageConfig(path=str(tmp / "clips")))
        self.stored: list[StoredClip] = []
        self.done = threading.Event()
        self.recorder = ClipRecorder(
            "door", self.storage, 2.0, 0.4, on_stored=self._stored, spool_dir=tmp / "spool"
        )  # 50 frames, 10 before the alert, at 25 frames/s
        self.snapshots = AlertSnapshots(tmp / "alert-snapshots", 3600)
        self.history = AlertHistory(True, snapshots=self.snapshots)
        self.topics = Topics()
        self.handed: dict[str, bytes | None] = {}
        self.sink = AlertSink(
            "door", AlertConfig(alert_mode=AlertMode.ON_ALL, cooldown_seconds=0), self.topics, self._on_alert,
            self.recorder, lambda key: f"http://engine.lan/clips/{key}?exp=1&sig=s",
            snapshots=self.snapshots,
            snapshot_url=(lambda aid: f"http://engine.lan/alerts/{aid}/snapshot.jpg?exp=1&sig=s") if served else None,
        )  # fmt: skip
        self.frames = RecorderSink(self.recorder)

    def _stored(self, clip: StoredClip) -> None:
        self.stored.append(clip)
        self.done.set()

    def _on_alert(self, alert: Alert, payload: AlertPayload, snapshot: bytes | None) -> None:
        self.history.add(payload, snapshot)
        self.handed[alert.alert_id] = snapshot

    def run(self, alerts: dict[int, TrackEvent], frames: int = 60) -> None:
        for i in range(frames):
            f = processed(i)
            self.frames.frame(f)
            if i in alerts:
                self.sink.event(alerts[i], f)
        assert self.done.wait(60)
        self.recorder.close()


def test_two_alerts_joining_one_clip_have_their_own_snapshots(tmp_path: Path) -> None:
    cam = Camera(tmp_path)
    cam.run({10: identity(1, BOX_A, "Anna"), 20: identity(2, BOX_B, None)})
    first, second = cam.topics.alerts
    for payload in (first, second):
        jsonschema.validate(payload, SCHEMAS["alert"], format_checker=jsonschema.FormatChecker())
    # One clip holds both alerts; each URL says where its alert is in it.
    (clip,) = cam.stored
    assert first["clip_url"] is not None and second["clip_url"] is not None
    assert first["clip_url"].split("#")[0] == second["clip_url"].split("#")[0]
    assert f"/clips/door/{clip.clip_id}/original.mp4?" in first["clip_url"]
    assert (first["clip_offset_seconds"], second["clip_offset_seconds"]) == (0.36, 0.76)  # frames 9 and 19
    assert first["clip_url"].endswith("#t=0.36") and second["clip_url"].endswith("#t=0.76")
    meta = json.loads((tmp_path / "clips" / clip.keys["annotations"]).read_text())
    for payload, frame in ((first, 10), (second, 20)):
        offset = payload["clip_offset_seconds"]
        assert offset is not None
        assert meta["frames"][round(offset * meta["fps"])]["frame"] == frame  # the alert's own frame
    assert [a["alert_id"] for a in meta["alerts"]] == [first["alert_id"], second["alert_id"]]
    # Each alert's snapshot is its own face (Anna red, the stranger blue), kept under its id.
    assert first["snapshot_url"] != second["snapshot_url"]
    for payload, colour in ((first, RED), (second, BLUE)):
        aid = payload["alert_id"]
        assert payload["snapshot_url"] == f"http://engine.lan/alerts/{aid}/snapshot.jpg?exp=1&sig=s"
        jpeg = cam.snapshots.get(aid)
        assert jpeg is not None and jpeg == cam.handed[aid] == cam.history.snapshot(aid)
        b, g, r = centre(jpeg)
        assert (b > 200 and r < 60) if colour == BLUE else (r > 200 and b < 60), (aid, b, g, r)
    # The clip's own snapshot stays its first alert's.
    assert (tmp_path / "clips" / clip.keys["snapshot"]).read_bytes() == cam.handed[first["alert_id"]]


def test_snapshot_has_the_face_box_drawn() -> None:
    frame = scene(0)
    plain, boxed = snapshot_jpeg(frame, BOX_A), snapshot_jpeg(frame, BOX_A, box=BOX_KNOWN)
    assert plain is not None and boxed is not None
    a = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR).astype(int)
    b = cv2.imdecode(np.frombuffer(boxed, np.uint8), cv2.IMREAD_COLOR).astype(int)
    assert a.shape == b.shape == (176, 132, 3)  # the face with 0.6 of its size around it
    diff = np.abs(a - b).sum(axis=2)
    # The box (x 36-96, y 48-128 in the crop) is drawn; the face inside it and the frame are not touched.
    assert diff[88, 36] > 100 and diff[48, 66] > 100
    assert diff[88, 66] < 30 and diff[5, 5] < 30
    assert np.array_equal(frame, scene(0))


def test_without_the_http_server_a_joining_alert_names_no_other_face(tmp_path: Path) -> None:
    cam = Camera(tmp_path, served=False)
    cam.run({10: identity(1, BOX_A, "Anna"), 20: identity(2, BOX_B, None)})
    first, second = cam.topics.alerts
    (clip,) = cam.stored
    # The first alert's face is the clip's snapshot; the second's is not in the clip: none.
    assert first["snapshot_url"] == f"http://engine.lan/clips/door/{clip.clip_id}/snapshot.jpg?exp=1&sig=s"
    assert second["snapshot_url"] is None
    assert second["clip_url"] is not None and second["clip_url"].endswith("#t=0.76")


def test_without_clips_the_alert_still_has_its_snapshot(tmp_path: Path) -> None:
    topics, snapshots = Topics(), AlertSnapshots(tmp_path / "snaps", 3600)
    sink = AlertSink(
        "door", AlertConfig(alert_mode=AlertMode.ON_ALL), topics, lambda *a: None,
        snapshots=snapshots, snapshot_url=lambda aid: f"http://e/alerts/{aid}/snapshot.jpg",
    )  # fmt: skip
    sink.event(identity(1, BOX_B, None), processed(3))
    (payload,) = topics.alerts
    assert payload["clip_url"] is None and payload["clip_offset_seconds"] is None
    assert payload["snapshot_url"] == f"http://e/alerts/{payload['alert_id']}/snapshot.jpg"
    jpeg = snapshots.get(payload["alert_id"])
    assert jpeg is not None and centre(jpeg)[0] > 200


# ---- the signed route --------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def test_alert_snapshot_route_is_signed_expiring_and_survives_a_restart(tmp_path: Path) -> None:
    snapshots = AlertSnapshots(tmp_path / "alert-snapshots", 3600)
    history = AlertHistory(True, snapshots=snapshots)
    known, older, unknown = "1" * 32, "2" * 32, "3" * 32
    history.add({"alert_id": known}, b"\xff\xd8in-memory")
    snapshots.put(older, b"\xff\xd8on-disk")  # an alert the history has forgotten
    signer = UrlSigner(SECRET)
    with WebServer("127.0.0.1", 0, FrameHub(), signer, None, alert_snapshot=history.snapshot) as server:
        url = server.sign_alert_snapshot_url(known, 60)
        assert url.startswith(f"http://127.0.0.1:{server.port}/alerts/{known}/snapshot.jpg?exp=")
        status, body, headers = fetch(url)
        assert (status, body, headers["Content-Type"]) == (200, b"\xff\xd8in-memory", "image/jpeg")
        assert fetch(server.sign_alert_snapshot_url(older, 60))[:2] == (200, b"\xff\xd8on-disk")
        # Unsigned, tampered, signed for another alert, expired: refused.
        path = f"/alerts/{known}/snapshot.jpg"
        base = f"http://127.0.0.1:{server.port}{path}"
        assert fetch(base)[0] == 403
        assert fetch(url.replace("sig=", "sig=0"))[0] == 403
        assert fetch(server.sign_alert_snapshot_url(unknown, 60).replace(unknown, known))[0] == 403
        assert fetch(f"{base}?{signer.sign(path, int(time.time()) - 1)}")[0] == 403
        # Signed but unknown (or no longer kept): 404; not an alert id: 404.
        assert fetch(server.sign_alert_snapshot_url(unknown, 60))[0] == 404
        bad = "/alerts/../url_secret/snapshot.jpg"
        assert fetch(f"http://127.0.0.1:{server.port}{bad}?{signer.sign(bad, int(time.time()) + 60)}")[0] == 404
        with pytest.raises(ValueError):
            server.sign_alert_snapshot_url("not-an-id", 60)
    # After a restart (a new history, the same folder) the kept snapshots still answer.
    history = AlertHistory(True, snapshots=AlertSnapshots(tmp_path / "alert-snapshots", 3600))
    with WebServer("127.0.0.1", 0, FrameHub(), signer, None, alert_snapshot=history.snapshot) as server:
        assert fetch(server.sign_alert_snapshot_url(older, 60))[:2] == (200, b"\xff\xd8on-disk")
        assert fetch(server.sign_alert_snapshot_url(known, 60))[0] == 404  # only in the old memory
    # No snapshots served at all: 404.
    with WebServer("127.0.0.1", 0, FrameHub(), signer, None) as server:
        assert fetch(server.sign_alert_snapshot_url(older, 60))[0] == 404


def test_alert_snapshots_are_kept_as_long_as_their_urls(tmp_path: Path) -> None:
    store = AlertSnapshots(tmp_path / "s", max_age_s=100, max_files=2)
    ids = [f"{i}" * 32 for i in range(1, 5)]
    for i, aid in enumerate(ids):
        assert store.put(aid, f"jpeg{i}".encode())
    assert store.get(ids[0]) == b"jpeg0"
    with pytest.raises(ValueError):
        store.put("../x", b"")
    assert store.get("../x") is None and store.get("f" * 32) is None
    now = time.time()
    old = tmp_path / "s" / f"{ids[0]}.jpg"
    os.utime(old, (now - 200, now - 200))
    for i, aid in enumerate(ids[1:], 1):  # oldest first
        os.utime(tmp_path / "s" / f"{aid}.jpg", (now - 10 + i, now - 10 + i))
    assert store.purge(now) == 2  # one expired, one beyond max_files
    assert [store.get(a) is not None for a in ids] == [False, False, True, True]


# ---- clips in seconds --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("arrival_fps", "rate", "frames", "pre"), [(24.0, 25.0, 250, 50), (5.0, 5.0, 50, 10)])
def test_seconds_become_frames_at_the_processing_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arrival_fps: float, rate: float, frames: int, pre: int
) -> None:
    """A live camera that keeps up (24 of 25 frames/s) records at the source's rate; one that
    processes 5 frames/s (its reader drops the rest) records 10 s as 50 frames at 5 frames/s."""
    monkeypatch.setattr(clips_mod, "MAX_QUEUED_FRAMES", 1000)  # frames come faster than real time here
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    clock = FakeClock()
    done: list[StoredClip] = []
    rec = ClipRecorder("door", storage, 10.0, 2.0, on_stored=done.append, spool_dir=tmp_path / "spool", clock=clock)
    assert rec.rate() == 25.0 and rec.clip_frames() == (250, 50)  # nothing measured yet: the source's rate
    small = np.zeros((48, 64, 3), np.uint8)
    alert_at = 60
    for i in range(alert_at + 1):
        clock.now = i / arrival_fps
        rec.add_frame(i, i / arrival_fps, small, [], 25.0)
    assert rec.rate() == pytest.approx(rate)
    assert rec.clip_frames() == (frames, pre)
    cid = rec.start_clip("20261122T081503Z_0123abcd")
    assert rec.offset_seconds(cid) == pytest.approx((pre - 1) / rate, abs=1e-3)
    for i in range(alert_at + 1, alert_at + frames):
        clock.now = i / arrival_fps
        rec.add_frame(i, i / arrival_fps, small, [], 25.0)
    rec.close()
    (clip,) = done
    assert clip.frames == frames and clip.duration_seconds == pytest.approx(10.0)


def test_a_clip_ends_on_time_when_the_camera_falls_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 25 frames/s file processed at 5 frames/s: the clip (25 frames/s, as the file) ends 8 s +
    MAX_LATE_S after its alert on the clock, not after 200 more frames (40 s)."""
    monkeypatch.setattr(clips_mod, "MAX_QUEUED_FRAMES", 1000)
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    clock = FakeClock()
    done: list[StoredClip] = []
    rec = ClipRecorder("door", storage, 10.0, 2.0, on_stored=done.append, spool_dir=tmp_path / "spool", clock=clock)
    small = np.zeros((48, 64, 3), np.uint8)
    for i in range(400):
        clock.now = i / 5
        rec.add_frame(i, i / 25, small, [], 25.0)
        if i == 60:
            assert rec.rate() == 25.0
            rec.start_clip("20261122T081503Z_0123abcd")
        if i == 60 + 45:
            assert done or rec._active == []  # ended at 8 + 1 s on the clock: 45 frames later
    rec.close()
    (clip,) = done
    assert clip.frames == 50 + 45 and clip.duration_seconds == pytest.approx(95 / 25)


def test_source_reopened_measures_afresh(tmp_path: Path) -> None:
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    clock = FakeClock()
    rec = ClipRecorder("door", storage, 10.0, 2.0, spool_dir=tmp_path / "spool", clock=clock)
    small = np.zeros((8, 8, 3), np.uint8)
    for i in range(20):
        clock.now = i / 5
        rec.add_frame(i, i / 5, small, [], 25.0)
    assert rec.rate() == pytest.approx(5.0)
    rec.source_opened(15.0)  # the fps cap, say
    assert rec.rate() == 15.0 and rec.clip_frames() == (150, 30)


def test_frame_keys_are_deprecated_and_converted(caplog: pytest.LogCaptureFixture) -> None:
    cam = {"name": "door", "source": "rtsp://h/s"}
    with caplog.at_level(logging.WARNING, logger="facetrack.config.service"):
        clips = parse_service_config({"cameras": [cam], "clips": {"clip_duration": 100, "pre_roll": 25}}).clips
    assert (clips.duration_seconds, clips.pre_roll_seconds) == (4.0, 1.0)
    assert "clips.clip_duration (frames) is deprecated" in caplog.text and "100 frames taken as 4 s" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facetrack.config.service"):
        clips = parse_service_config(
            {"cameras": [cam], "clips": {"clip_duration": 100, "duration_seconds": 12.5}}
        ).clips
    assert (clips.duration_seconds, clips.pre_roll_seconds) == (12.5, 2.0)
    assert "ignored" in caplog.text
    defaults = parse_service_config({"cameras": [cam]}).clips
    assert (defaults.duration_seconds, defaults.pre_roll_seconds) == (10.0, 2.0)
