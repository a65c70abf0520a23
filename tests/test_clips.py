"""Clip recorder: pre-roll, duration, joining alerts, bounded memory with a slow encoder, shutdown."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from facetrack.record import clips as clips_mod
from facetrack.record.clips import ClipRecorder, StoredClip
from facetrack.record.storage import StorageConfig, create_storage, new_clip_id


def frame(i: int) -> np.ndarray:
    f = np.zeros((240, 320, 3), np.uint8)
    f[:, :, 1] = i % 255  # each frame differs
    return f


def frames_in(path: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames,codec_name", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    s = json.loads(out.stdout)["streams"][0]
    assert s["codec_name"] == "h264"
    return int(s["nb_read_frames"])


@pytest.fixture
def recorder(tmp_path: Path):
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    done: list[StoredClip] = []
    event = threading.Event()

    def stored(c: StoredClip) -> None:
        done.append(c)
        event.set()

    # 0.8 s and 0.2 s at 25 frames/s: 20 frames, 5 of them before the alert.
    rec = ClipRecorder("door", storage, 0.8, 0.2, on_stored=stored, spool_dir=tmp_path / "spool")
    yield rec, storage, done, event
    rec.close()


def test_pre_roll_and_duration(recorder, tmp_path: Path) -> None:
    rec, storage, done, event = recorder
    cid = None
    for i in range(40):
        rec.add_frame(i, i / 25, frame(i), [], 25.0)
        if i == 10:
            cid = rec.start_clip(new_clip_id(1795300000.0, "ab" * 16))
            rec.note_alert(cid, {"alert_id": "ab" * 16}, b"\xff\xd8jpeg")
            # A second alert 2 frames later joins the clip recording.
        if i == 12:
            assert rec.start_clip(new_clip_id(1795300001.0, "cd" * 16)) == cid
    assert event.wait(30)
    (clip,) = done
    assert clip.clip_id == cid and clip.frames == 20 and clip.dropped_frames == 0
    meta = json.loads((tmp_path / "clips" / clip.keys["annotations"]).read_text())
    assert [f["frame"] for f in meta["frames"]] == list(range(6, 26))  # 5 pre-roll (6-10) + 15
    assert frames_in(tmp_path / "clips" / clip.keys["original"]) == 20
    assert frames_in(tmp_path / "clips" / clip.keys["annotated"]) == 20
    assert (tmp_path / "clips" / clip.keys["snapshot"]).read_bytes() == b"\xff\xd8jpeg"
    assert len(storage.list_clips()) == 1


def test_slow_encoder_never_blocks_the_camera_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stalled disk: the encoder blocks on its first frame until released. The camera loop still
    hands over every frame and ends the clip meanwhile; the clip keeps what fitted in its queue.
    (How long the hand-over takes is a figure: benchmarks/bench_clips.py.)"""
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    done = threading.Event()
    rec = ClipRecorder("door", storage, 6.0, 0.2, on_stored=lambda c: done.set(), spool_dir=tmp_path / "spool")
    original = clips_mod.VideoWriter.write
    blocked, release = threading.Event(), threading.Event()

    def stalled(self, f):
        blocked.set()
        assert release.wait(120)
        return original(self, f)

    monkeypatch.setattr(clips_mod.VideoWriter, "write", stalled)
    rec.add_frame(0, 0.0, frame(0), [], 25.0)
    cid = rec.start_clip(new_clip_id(1795300000.0, "ef" * 16))
    assert blocked.wait(60)  # the encoder holds frame 0 and writes nothing more

    def camera_loop() -> None:
        for i in range(1, 200):
            rec.add_frame(i, i / 25, frame(i), [], 25.0)

    loop = threading.Thread(target=camera_loop)
    loop.start()
    loop.join(120)
    try:
        # Every frame was handed over, and the clip ended, while the encoder was still blocked.
        assert not loop.is_alive() and not release.is_set()
        assert rec._active == []
    finally:
        release.set()
    assert done.wait(60)
    (clip,) = storage.list_clips()
    assert clip.clip_id == cid
    meta = json.loads((tmp_path / "clips" / clip.files["annotations"].key).read_text())
    # Frame 0 (being written) plus a full queue were kept; the other 99 were dropped, counted.
    assert len(meta["frames"]) == 1 + clips_mod.MAX_QUEUED_FRAMES
    assert meta["dropped_frames"] == 150 - 1 - clips_mod.MAX_QUEUED_FRAMES
    assert frames_in(tmp_path / "clips" / clip.files["original"].key) == 1 + clips_mod.MAX_QUEUED_FRAMES
    rec.close()


def test_close_finishes_the_clip_in_progress(tmp_path: Path) -> None:
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    rec = ClipRecorder("door", storage, duration_seconds=20.0, pre_roll_seconds=0.2, spool_dir=tmp_path / "spool")
    for i in range(30):
        rec.add_frame(i, i / 25, frame(i), [], 25.0)
        if i == 10:
            rec.start_clip(new_clip_id(1795300000.0, "12" * 16))
    rec.close()
    (clip,) = storage.list_clips()
    assert frames_in(tmp_path / "clips" / clip.files["original"].key) == 5 + 19  # pre-roll + frames 11..29
    assert not list((tmp_path / "clips").rglob("*.tmp"))


def test_pre_roll_is_kept_as_jpeg_within_its_byte_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    rec = ClipRecorder("door", storage, 4.0, 2.0, spool_dir=tmp_path / "spool")  # 50 pre-roll frames
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(3)]  # JPEG-hard frames
    for i in range(60):
        rec.add_frame(i, i / 25, noisy[i % 3], [], 25.0)
    ring = list(rec._ring)
    assert len(ring) == 50 and all(f.frame is None and f.jpeg is not None for f in ring)
    assert rec._ring_bytes == sum(len(f.jpeg or b"") for f in ring) < 50 * noisy[0].nbytes
    # A budget of 10 frames' JPEG: the oldest go, the newest stay.
    monkeypatch.setattr(clips_mod, "MAX_PRE_ROLL_BYTES", 10 * len(ring[-1].jpeg or b""))
    for i in range(60, 70):
        rec.add_frame(i, i / 25, noisy[i % 3], [], 25.0)
    ring = list(rec._ring)
    assert 5 <= len(ring) <= 11 and ring[-1].index == 69
    assert rec._ring_bytes <= clips_mod.MAX_PRE_ROLL_BYTES
    rec.close()


def test_still_frames_share_the_previous_jpeg_for_at_most_a_second(tmp_path: Path) -> None:
    """An idle camera's pre-roll: a still frame reuses the last JPEG (no encoding) unless that one
    is a second old; a frame that is not still is always encoded; the clip still gets every frame."""
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    done = threading.Event()
    rec = ClipRecorder("door", storage, 4.0, 2.0, on_stored=lambda c: done.set(), spool_dir=tmp_path / "spool")
    assert clips_mod.STILL_REUSE_SECONDS == 1.0
    for i in range(50):  # 5 s at 10 frames/s: frame 0 moved, then still
        rec.add_frame(i, i / 10, frame(i), [], 10.0, still=i > 0)
    ring = list(rec._ring)
    assert len(ring) == 20 and [f.index for f in ring] == list(range(30, 50))
    # Frames 30..49: encoded at 30 and 40 (each a second after the previous encoding), shared between.
    assert [id(f.jpeg) == id(ring[0].jpeg) for f in ring[:10]] == [True] * 10
    assert ring[10].jpeg != ring[0].jpeg and all(f.jpeg is ring[10].jpeg for f in ring[10:])
    rec.add_frame(50, 5.0, frame(50), [], 10.0, still=False)  # something moved: encoded at once
    assert rec._ring[-1].jpeg is not ring[-1].jpeg
    cid = rec.start_clip(new_clip_id(1795300000.0, "cd" * 16))
    for i in range(51, 75):
        rec.add_frame(i, i / 10, frame(i), [], 10.0)
    assert done.wait(60)
    (clip,) = storage.list_clips()
    assert clip.clip_id == cid
    assert frames_in(tmp_path / "clips" / clip.files["original"].key) == 40
    rec.close()


def test_frames_beyond_the_raw_budget_wait_as_jpeg_and_are_all_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled encoder: at most MAX_QUEUED_RAW_BYTES of decoded frames wait; the rest wait as
    JPEG, and once the encoder resumes every frame is in the clip, in order."""
    storage = create_storage(StorageConfig(path=str(tmp_path / "clips")))
    monkeypatch.setattr(clips_mod, "MAX_QUEUED_RAW_BYTES", 3 * frame(0).nbytes)
    done = threading.Event()
    rec = ClipRecorder("door", storage, 1.2, 0.4, on_stored=lambda c: done.set(), spool_dir=tmp_path / "spool")
    original = clips_mod.VideoWriter.write
    blocked, release = threading.Event(), threading.Event()

    def stalled(self, f):
        blocked.set()
        assert release.wait(120)
        return original(self, f)

    monkeypatch.setattr(clips_mod.VideoWriter, "write", stalled)
    for i in range(10):
        rec.add_frame(i, i / 25, frame(i), [], 25.0)
    cid = rec.start_clip(new_clip_id(1795300000.0, "ef" * 16))  # 10 pre-roll frames (JPEG) + 20
    assert blocked.wait(60)
    (clip,) = rec._active
    for i in range(10, 30):
        rec.add_frame(i, i / 25, frame(i), [], 25.0)
        assert clip.raw_bytes <= clips_mod.MAX_QUEUED_RAW_BYTES
    assert clip.raw_bytes == 3 * frame(0).nbytes
    release.set()
    assert done.wait(60)
    (stored,) = storage.list_clips()
    assert stored.clip_id == cid
    meta = json.loads((tmp_path / "clips" / stored.files["annotations"].key).read_text())
    assert [f["frame"] for f in meta["frames"]] == list(range(0, 30)) and meta["dropped_frames"] == 0
    assert frames_in(tmp_path / "clips" / stored.files["original"].key) == 30
    rec.close()
