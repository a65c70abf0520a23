"""kill -9 while clips record: a restarted engine finishes or removes what it was recording, the
alert's clip and snapshot URLs answer the clip or "410 Gone" (never 404), and no temporary folder
is left, in /tmp or in the state folder.

The recorder runs in a child process killed with SIGKILL (alone: its ffmpeg encoders get end of
input and finish their files; or with its whole process group: the encoders die mid-fragment),
then :func:`recover_clips` runs as the engine does at start-up. The last test is the real
``facetrack serve`` with a real Mosquitto, killed while an alert's clip records, then restarted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from facetrack.record import clips as clips_mod
from facetrack.record.clips import ClipRecorder, StoredClip, cleanup_legacy_temp, recover_clips
from facetrack.record.storage import CLIP_FILES, S3ClipStorage, StorageConfig, clip_key, create_storage, new_clip_id
from facetrack.web.frames import FrameHub
from facetrack.web.server import WebServer
from facetrack.web.signing import UrlSigner, load_or_create_secret
from mqtt_helpers import Broker, Subscriber, free_port
from test_clips import frame, frames_in
from test_service_e2e import Engine, demo_clip, enrolled_db  # noqa: F401 - module fixtures
from test_storage import ACCESS, SECRET

pytestmark = pytest.mark.timeout(300)
ALERT_ID = "ab" * 16
CLIP_ID = new_clip_id(1795300000.0, ALERT_ID)
SNAPSHOT = b"\xff\xd8 a face \xff\xd9"

# A camera that records one alert clip, then is killed while it records (signal handling is the
# test's): pre-roll, the alert, then frames until `frames` have reached the encoders (0: none, the
# camera stops right after the alert).
_RECORDER = """
import json, sys, time
from pathlib import Path
import numpy as np
from facetrack.record.clips import ClipRecorder
from facetrack.record.storage import StorageConfig, create_storage

root, pre_roll, frames, clip_id = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
storage = create_storage(StorageConfig(**json.loads(sys.argv[5])))
alert_id, snapshot = sys.argv[6], bytes.fromhex(sys.argv[7])
rec = ClipRecorder("door", storage, duration_seconds=400, pre_roll_seconds=pre_roll / 25, spool_dir=root / "spool")

def frame(i):
    f = np.zeros((240, 320, 3), np.uint8)
    f[:, :, 1] = i % 255
    f[100:140, 10 + i % 300 : 20 + i % 300] = 255
    return f

for i in range(pre_roll):
    rec.add_frame(i, i / 25, frame(i), [], 25.0)
rec.start_clip(clip_id)
rec.note_alert(clip_id, {"alert_id": alert_id}, snapshot)
if frames == 0:
    print("recording 0", flush=True)
    time.sleep(3600)
i = pre_roll
while True:
    log = next((root / "spool").glob("*/frames.jsonl"), None)
    written = len(log.read_text().splitlines()) if log else 0
    if written >= frames:
        print("recording", written, flush=True)
        frames = 10**9  # say it once, then record on until killed
    rec.add_frame(i, i / 25, frame(i), [], 25.0)
    i += 1
    time.sleep(0.04)
"""


def record_and_kill(root: Path, storage: dict[str, object], *, pre_roll: int, frames: int, group: bool) -> None:
    """Run the recorder until ``frames`` frames are encoded (0: right after the alert), SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_RECORDER), str(root), str(pre_roll), str(frames), CLIP_ID,
         json.dumps(storage), ALERT_ID, SNAPSHOT.hex()],
        stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # blocks until the frames are in (the timeout mark guards)
        assert line.startswith("recording"), line
    finally:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)  # the encoders die too, mid-fragment
        else:
            proc.send_signal(signal.SIGKILL)  # the encoders get end of input and finish their files
        proc.wait()


def spool_folders(root: Path) -> list[Path]:
    return [p for p in root.rglob("facetrack-clip-*") if p.is_dir()]


def http_get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


@pytest.mark.parametrize("group", [False, True], ids=["engine-killed", "engine-and-encoders-killed"])
def test_killed_recording_is_recovered_playable(tmp_path: Path, group: bool) -> None:
    local = {"path": str(tmp_path / "clips")}
    record_and_kill(tmp_path, local, pre_roll=5, frames=60, group=group)
    assert len(spool_folders(tmp_path / "spool")) == 1  # what a killed engine leaves today
    storage = create_storage(StorageConfig(**local))  # type: ignore[arg-type]
    report = recover_clips(tmp_path / "spool", storage, wait_s=60)
    assert report.lost == 0 and report.pending == 0
    (clip,) = report.stored
    assert clip.clip_id == CLIP_ID and clip.alert_id == ALERT_ID and clip.recovered
    assert sorted(clip.keys) == sorted(CLIP_FILES)
    clips = tmp_path / "clips"
    # At least the frames the child saw encoded, less what dead encoders had not written out (the
    # fragment in progress: at most 1 s, 25 frames, and the frame in the pipe).
    assert clip.frames >= (60 - 30 if group else 60)
    assert frames_in(clips / clip.keys["original"]) == clip.frames
    assert frames_in(clips / clip.keys["annotated"]) == clip.frames
    meta = json.loads((clips / clip.keys["annotations"]).read_text())
    assert meta["recovered"] is True and meta["alerts"] == [{"alert_id": ALERT_ID}]
    index = [f["frame"] for f in meta["frames"]]  # one per frame kept, in order
    assert len(index) == clip.frames and index == sorted(set(index)) and index[0] == 0
    assert (clips / clip.keys["snapshot"]).read_bytes() == SNAPSHOT
    assert spool_folders(tmp_path) == [] and not list(clips.rglob("*.tmp"))
    assert recover_clips(tmp_path / "spool", storage) == clips_mod.RecoveryReport()  # nothing twice


def test_clip_killed_before_any_frame_answers_410_over_http(tmp_path: Path) -> None:
    local = {"path": str(tmp_path / "clips")}
    record_and_kill(tmp_path, local, pre_roll=0, frames=0, group=True)
    storage = create_storage(StorageConfig(**local))  # type: ignore[arg-type]
    report = recover_clips(tmp_path / "spool", storage, wait_s=60)
    assert report.stored == [] and report.lost == 1 and spool_folders(tmp_path) == []
    signer = UrlSigner(load_or_create_secret(tmp_path / "secret"))
    with WebServer("127.0.0.1", 0, FrameHub(), signer, tmp_path / "clips") as server:
        url = {kind: server.sign_clip_url(clip_key("door", CLIP_ID, kind), 600) for kind in CLIP_FILES}
        for kind in ("original", "annotated", "annotations"):
            code, body, ctype = http_get(url[kind])
            assert code == 410 and ctype.startswith("application/json"), (kind, code, body)
            answer = json.loads(body)
            assert answer["error"] == "clip_lost" and answer["message"].startswith("clip lost:"), answer
        # The snapshot was taken at the alert: it is kept.
        assert http_get(url["snapshot"])[:2] == (200, SNAPSHOT)
        # Another clip that never existed is still a plain 404; a bad signature still 403.
        other = server.sign_clip_url(clip_key("door", new_clip_id(1795300000.0, "cd" * 16), "original"), 600)
        assert http_get(other)[0] == 404
        assert http_get(url["original"].replace("sig=", "sig=0"))[0] == 403
    # Markers go with the URLs they answer for.
    assert (tmp_path / "clips" / "door" / f"{CLIP_ID}.lost.json").is_file()
    storage.purge(now=time.time() + storage.config.url_expiry_seconds + 1)
    assert not (tmp_path / "clips" / "door" / f"{CLIP_ID}.lost.json").exists()


def test_clip_that_cannot_start_is_marked_lost(tmp_path: Path) -> None:
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    (tmp_path / "spool").write_text("not a folder")  # the state folder is unusable
    rec = ClipRecorder("door", storage, duration_seconds=0.8, pre_roll_seconds=0.08, spool_dir=tmp_path / "spool")
    for i in range(5):
        rec.add_frame(i, i / 25, frame(i), [], 25.0)
    assert rec.start_clip(CLIP_ID) == CLIP_ID  # the camera loop goes on
    rec.note_alert(CLIP_ID, {"alert_id": ALERT_ID}, SNAPSHOT)
    rec.add_frame(5, 0.2, frame(5), [], 25.0)
    rec.close()
    assert rec.failed == 1
    from facetrack.record.storage import lost_reason

    for kind in CLIP_FILES:
        assert lost_reason(tmp_path / "clips", clip_key("door", CLIP_ID, kind)) == clips_mod.LOST_NOT_STARTED


def test_live_and_foreign_spool_folders_are_left_alone(tmp_path: Path) -> None:
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    other = create_storage(StorageConfig(path=str(tmp_path / "other")))
    rec = ClipRecorder("door", storage, duration_seconds=4.0, pre_roll_seconds=0.08, spool_dir=tmp_path / "spool")
    for i in range(3):
        rec.add_frame(i, i / 25, frame(i), [], 25.0)
    rec.start_clip(CLIP_ID)
    try:
        # Recording here (locked): neither this storage's recovery nor another's touches it.
        assert recover_clips(tmp_path / "spool", storage).pending == 1
        assert recover_clips(tmp_path / "spool", other) == clips_mod.RecoveryReport()
        assert len(spool_folders(tmp_path / "spool")) == 1 and storage.list_clips() == []
    finally:
        rec.close()
    (clip,) = storage.list_clips()
    assert clip.clip_id == CLIP_ID and spool_folders(tmp_path) == []


def test_s3_upload_is_journalled_and_retried(tmp_path: Path) -> None:
    """S3 down when a clip ends: the sealed clip stays in the spool, and a later recovery (the
    engine retries with retention, and at start-up) uploads it once S3 is back."""
    port = free_port()
    cfg = StorageConfig(kind="s3", endpoint=f"127.0.0.1:{port}", bucket="clips", access_key=ACCESS,
                        secret_key=SECRET, secure=False, region="us-east-1")  # fmt: skip
    storage = create_storage(cfg)
    assert isinstance(storage, S3ClipStorage)
    stored: list[StoredClip] = []
    rec = ClipRecorder("door", storage, duration_seconds=0.48, pre_roll_seconds=0.08, on_stored=stored.append,
                       spool_dir=tmp_path / "spool")  # fmt: skip
    for i in range(20):
        rec.add_frame(i, i / 25, frame(i), [], 25.0)
        if i == 1:
            rec.start_clip(CLIP_ID)
            rec.note_alert(CLIP_ID, {"alert_id": ALERT_ID}, SNAPSHOT)
    rec.close()
    assert stored == [] and rec.failed == 0
    (folder,) = spool_folders(tmp_path / "spool")
    assert clips_mod.read_journal(folder)["state"] == "encoded"
    assert recover_clips(tmp_path / "spool", storage).pending == 1  # still down: kept
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (report := recover_clips(tmp_path / "spool", storage)).pending and time.monotonic() < deadline:
            time.sleep(0.5)  # until moto listens
        (clip,) = report.stored
        assert clip.frames == 12 and not clip.recovered and sorted(clip.keys) == sorted(CLIP_FILES)
        assert spool_folders(tmp_path) == []
        storage.download(clip.keys["original"], tmp_path / "got.mp4")
        assert frames_in(tmp_path / "got.mp4") == 12
        storage.download(clip.keys["snapshot"], tmp_path / "got.jpg")
        assert (tmp_path / "got.jpg").read_bytes() == SNAPSHOT
    finally:
        moto.terminate()
        moto.wait(10)


def test_legacy_temp_folders_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    old, fresh, foreign = (tmp_path / f"facetrack-clip-door-{s}" for s in ("old1", "new1", "cli1"))
    for folder in (old, fresh, foreign):
        folder.mkdir()
        (folder / "original.mp4").write_bytes(b"no moov")
    (foreign / "video.mp4").write_bytes(b"find-faces download")  # not a recorder's folder
    for p in (old, old / "original.mp4", foreign, foreign / "original.mp4", foreign / "video.mp4"):
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    assert cleanup_legacy_temp(["door"]) == 1
    assert not old.exists() and fresh.exists() and foreign.exists()


# ---- the real engine -------------------------------------------------------------------------------


def test_engine_killed_during_a_clip_restarts_without_dangling_urls(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    demo_clip: Path,  # noqa: F811
    enrolled_db: Path,  # noqa: F811
) -> None:
    engine_tmp = tmp_path / "engine-tmp"  # the engine's /tmp (TMPDIR), to see what it leaves there
    engine_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(engine_tmp))
    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port).start()
    # An 80 s clip: still recording when the engine is killed, whatever the machine's speed.
    engine = Engine(
        tmp_path, broker.port, enrolled_db, demo_clip,
        clips={"clip_duration": 2000, "pre_roll": 10, "storage": {"path": str(tmp_path / "clips")}},
    )  # fmt: skip
    try:
        engine.start()
        alert = sub.wait_for("door/alert", timeout=120)[0].payload
        assert alert["clip_url"] and alert["snapshot_url"]
        # Let some frames reach the encoders (new engine: its journal says so; else a bounded wait).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("clip-spool/facetrack-clip-*/frames.jsonl"))
            if logs and len(logs[0].read_text().splitlines()) >= 40:
                break
            time.sleep(0.2)
        assert engine.proc is not None
        engine.proc.send_signal(signal.SIGKILL)
        engine.proc.wait()
        killed_at = time.time()
        engine.start()
        sub.wait_for("facetrack/status", lambda m: m.payload == "online" and m.at > killed_at, timeout=120)
        sub.wait_for("door/state", lambda m: m.payload["state"] == "online" and m.at > killed_at, timeout=120)
        # Every file of the alert's clip: the clip, or 410 with a reason; never 404.
        signer = UrlSigner(load_or_create_secret(tmp_path / "url_secret"))
        origin, path = alert["clip_url"].split("?")[0].split("/clips/")
        urls = {"original": alert["clip_url"], "snapshot": alert["snapshot_url"]}
        for kind in ("annotated", "annotations"):
            p = f"/clips/{path.rsplit('/', 1)[0]}/{CLIP_FILES[kind][0]}"
            urls[kind] = f"{origin}{p}?{signer.sign(p, int(time.time()) + 600)}"
        answers = {}
        for kind, url in urls.items():
            code, body, ctype = http_get(url)
            answers[kind] = code
            assert code in (200, 410), f"{kind}: HTTP {code} {body[:200]!r}"
            if code == 410:
                assert ctype.startswith("application/json") and "lost" in json.loads(body)["message"]
            elif kind in ("original", "annotated"):
                (tmp_path / f"got-{kind}.mp4").write_bytes(body)
                assert frames_in(tmp_path / f"got-{kind}.mp4") > 0
            elif kind == "annotations":
                meta = json.loads(body)
                assert meta["recovered"] is True and meta["alerts"][0]["alert_id"] == alert["alert_id"]
            else:
                assert body[:2] == b"\xff\xd8"
        if answers["original"] == 200:  # a recovered clip is announced like any other
            clip = sub.wait_for("door/clip", lambda m: m.payload["alert_id"] == alert["alert_id"], timeout=60)
            assert clip[0].payload["frames"] == frames_in(tmp_path / "got-original.mp4")
        # Nothing of the killed clip left behind: not in the engine's /tmp, not in its state folder
        # (the restarted engine may be recording new alerts' clips there).
        clip_id = path.split("/")[1]
        assert list(engine_tmp.glob("facetrack-clip-*")) == []
        assert [p for p in tmp_path.rglob("facetrack-clip-*") if clip_id in p.name] == []
        assert engine.terminate() == 0
        assert list(tmp_path.rglob("facetrack-clip-*")) == []  # a clean stop finishes them all
    finally:
        engine.kill()
        sub.stop()
        broker.stop()
    print("answers after kill -9 and restart:", answers)
