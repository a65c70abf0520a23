"""Motion-gated detection: the motion detector, the gate's rule, and no face track lost to it.

The real-data test pastes real faces (dlib's ``johns`` chips) over a real street frame (the first
frame of ``vtest.avi``, held still with sensor-like noise): a face sliding in, staying and
vanishing, then a still gap, then a second face fading in where it stands. The tracker runs with
and without the gate on the same frames: the same tracks must start on the same frames, while
the gated run skips the detector on the still frames.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.config import FaceTrackerConfig, parse_config
from facetrack.config.service import parse_service_config
from facetrack.errors import ConfigError
from facetrack.images import read_image
from facetrack.inference import InferenceBackend
from facetrack.inference.base import Detection, Frame
from facetrack.library import FaceLibrary
from facetrack.track import FaceTracker
from facetrack.track.motion import (
    FOUND_HOLD_SECONDS,
    MOTION_DETECT_FPS,
    STILL_RECHECK_SECONDS,
    DetectionGate,
    MotionDetector,
    detect_in_windows,
    detection_windows,
)

RNG = np.random.default_rng(16)
SCENE = RNG.integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # textured, like a real scene


def noisy(frame: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    return np.clip(frame + RNG.normal(0.0, sigma, frame.shape), 0, 255).astype(np.uint8)


def with_square(x: int, y: int, size: int = 80) -> np.ndarray:
    f = SCENE.copy()
    f[y : y + size, x : x + size] = 255
    return f


# ---- the motion detector ----------------------------------------------------------------------


def test_first_frame_counts_as_moving() -> None:
    m = MotionDetector()
    assert m.update(SCENE) == [(0, 0, 1280, 720)]
    assert m.moving
    assert m.thumbnail is not None and m.thumbnail.shape == (180, 320, 3)


def test_still_frames_with_sensor_noise_do_not_move() -> None:
    m = MotionDetector()
    m.update(noisy(SCENE))
    for _ in range(20):
        assert m.update(noisy(SCENE)) == []
        assert not m.moving


def test_a_moving_square_is_found_where_it_is() -> None:
    m = MotionDetector()
    for _ in range(5):
        m.update(SCENE)
    for i in range(5):
        x, y = 400 + 12 * i, 300
        regions = m.update(with_square(x, y))
        assert m.moving and regions
        # The largest region covers the square (in full-frame pixels, a few pixels of slack for
        # the 4x downscale and the dilation) and not much more.
        x1, y1, x2, y2 = regions[0]
        assert x1 <= x + 4 and y1 <= y + 4 and x2 >= x + 80 - 4 and y2 >= y + 80 - 4, (regions[0], x, y)
        assert (x2 - x1) * (y2 - y1) < 4 * (80 + 12 * i + 16) ** 2
        assert x1 >= x - 12 * i - 24  # not the whole frame


def test_a_square_that_stops_is_absorbed_into_the_background() -> None:
    m = MotionDetector()
    m.update(SCENE)
    still = with_square(400, 300)
    moving = [m.update(still) != [] for _ in range(100)]
    assert moving[0] and not moving[-1]


def test_a_global_change_counts_as_motion_and_recalibrates() -> None:
    m = MotionDetector()
    m.update(SCENE)
    m.update(SCENE)
    dark = (SCENE // 3).astype(np.uint8)  # lights off / IR switch
    assert m.update(dark) == [(0, 0, 1280, 720)]
    assert m.update(dark) == []  # the new background at once


def test_small_frames_are_not_upscaled() -> None:
    m = MotionDetector()
    small = SCENE[:120, :200]
    m.update(small)
    assert m.thumbnail is not None and m.thumbnail.shape == (120, 200, 3)


# ---- detection windows ------------------------------------------------------------------------


def test_windows_grow_and_merge_moving_regions() -> None:
    wins = detection_windows([(100, 100, 140, 180), (150, 120, 190, 200), (900, 500, 920, 520)], 1280, 720, 0.5)
    assert wins is not None and len(wins) == 2  # the two close regions share one window
    near, far = sorted(wins)
    assert near[0] <= 100 - 32 and near[2] >= 190 + 32 and near[1] <= 100 - 32 and near[3] >= 200 + 32
    assert far[2] - far[0] >= 128 and far[3] - far[1] >= 128  # 64 px of detector input at scale 0.5
    assert all(0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 720 for x1, y1, x2, y2 in wins)


def test_large_motion_detects_the_whole_frame() -> None:
    assert detection_windows([(0, 0, 1000, 600)], 1280, 720, 0.5) is None
    assert detection_windows([], 1280, 720, 0.5) is None


def _within(box: np.ndarray, win: tuple[int, int, int, int]) -> bool:
    return bool(box[0] >= win[0] and box[1] >= win[1] and box[2] <= win[2] and box[3] <= win[3])


def _same(a: Detection, b: Detection) -> bool:
    return bool(np.abs(a.box - b.box).max() <= 2.0 and abs(a.score - b.score) <= 0.05)


def test_periodic_whole_frame_look_while_things_move() -> None:
    gate = _idle_gate(1.0)
    full, detected = [], []
    for i in range(30):  # 3 s of motion in a corner, nothing tracked
        gate.observe(with_square(100 + 10 * i, 100))
        if gate.should_detect(i / 10, tracking=False):
            detected.append(i)
            if gate.windows(1280, 720, tracking=False, scale=0.5) is None:
                full.append(i)
    assert detected == list(range(30))  # every moving frame (motion_detect_fps 0)
    assert full == [0, 10, 20]


def test_windowed_detection_sees_what_the_whole_frame_sees(backend: InferenceBackend, data_dir: Path) -> None:
    """vtest.avi's pedestrians (10-px heads, scores near the thresholds): windows around the moving
    regions find the same faces, boxes and scores as the whole frame."""
    if not getattr(backend, "window_detection", False):
        pytest.skip("windows need a backend that scales frames to detector_input_size")
    cap = cv2.VideoCapture(str(data_dir / "debian_opencv-doc/examples/data/vtest.avi"))
    motion = MotionDetector()
    compared = windowed_frames = 0
    for i in range(330):
        ok, frame = cap.read()
        assert ok
        regions = motion.update(frame)
        if i < 90:
            continue
        h, w = frame.shape[:2]
        scale = min(1.0, backend.detector_input_size / max(h, w))
        wins = detection_windows(regions, w, h, scale)
        if wins is None:  # the windows would cover over half the frame: the whole frame instead
            continue
        windowed_frames += 1
        full = backend.detect(frame)
        windowed = detect_in_windows(backend, frame, wins, scale)
        # Every face inside a window is found there with the whole frame's box and score, and
        # the windows find nothing the whole frame does not (a face outside every window is left
        # to the gate's periodic whole-frame look).
        # Within 0.05 of the detector's 0.5 score threshold a face may fall either side (such
        # faces cannot start a track: that takes 0.7).
        inside = [d for d in full if d.score >= 0.55 and any(_within(d.box, win) for win in wins)]
        for a in inside:
            assert any(_same(a, b) for b in windowed), (i, a, windowed)
        for b in windowed:
            assert b.score < 0.55 or any(_same(a, b) for a in full), (i, b, full)
        compared += len(inside)
    cap.release()
    assert windowed_frames >= 20 and compared >= 5, (windowed_frames, compared)


# ---- the gate's rule --------------------------------------------------------------------------


def _idle_gate(detect_fps: float, enabled: bool = True) -> DetectionGate:
    gate = DetectionGate(detect_fps, enabled)
    gate.observe(SCENE)
    return gate


def _looks(gate: DetectionGate, frames: list[Frame], start: int = 0) -> list[int]:
    """Indices of the frames the gate has detected, as the tracker drives it (10 frames/s,
    nothing tracked, the windows asked for on every detected frame)."""
    looked = []
    for i, frame in enumerate(frames, start):
        gate.observe(frame)
        if gate.should_detect(i / 10, tracking=False):
            gate.windows(1280, 720, tracking=False, scale=0.5)
            looked.append(i)
    return looked


def test_a_still_scene_is_looked_at_again_only_every_recheck_interval() -> None:
    gate = DetectionGate(1.0)
    frames = [SCENE] + [noisy(SCENE) for _ in range(249)]  # 25 s, nothing moves, nothing tracked
    assert STILL_RECHECK_SECONDS == 10.0
    assert _looks(gate, frames) == [0, 100, 200]


def test_a_scene_that_moved_is_looked_at_whole_at_detect_fps_until_it_was_seen_still() -> None:
    """A person who walked in and stopped (absorbed into the background) is looked for in the
    whole frame at ``detect_fps`` once the motion ended, then the still scene rests."""
    gate = DetectionGate(1.0)
    walk = [SCENE] + [with_square(100 + 10 * i, 100) for i in range(1, 15)]  # 1.5 s of motion
    stopped = with_square(240, 100)
    still = [noisy(stopped) for _ in range(150)]  # 15 s standing still
    looked = _looks(gate, walk + still)
    assert looked[:15] == list(range(15))  # every moving frame (windows, or whole every 1 s)
    after = [i for i in looked if i >= 15]
    # The motion ended at frame 15: whole-frame looks continue at 1 a second while the square is
    # being absorbed (the background still differs there), then every 10 s.
    assert after[0] - 10 <= 15 and after == sorted(after)
    quiet = [b - a for a, b in itertools.pairwise(after) if b - a > 10]
    assert quiet and all(gap == 100 for gap in quiet), after


def test_motion_without_a_track_is_detected_at_motion_detect_fps() -> None:
    """With ``motion_detect_fps`` 5, while something moves and nothing is tracked, the detector
    runs 5 times a second (every other frame at 10 frames/s), starting on the first moving frame
    after a quiet one, even right after another detection; with a track alive, on every frame.
    By default (0) on every moving frame."""
    assert MOTION_DETECT_FPS == 0.0
    gate = DetectionGate(1.0, motion_detect_fps=5.0)
    still = [SCENE] + [noisy(SCENE) for _ in range(100)]  # looked at on frames 0 and 100
    walk = [with_square(100 + 10 * i, 100) for i in range(1, 21)]  # moves from frame 101 on
    looked = _looks(gate, still + walk)
    assert looked == [0, 100, *range(101, 121, 2)], looked
    assert all(gate.should_detect(12.1 + i / 10, tracking=True) for i in range(5))
    assert _looks(DetectionGate(1.0), still + walk) == [0, 100, *range(101, 121)]


def test_a_face_found_holds_the_detector_on_every_frame_for_a_second() -> None:
    """With a ``motion_detect_fps``, the second after the detector found a face counts as tracked
    (whole frame, every frame), whether or not ByteTrack kept the face; then the motion rate
    applies again. Without one, every moving frame is detected anyway: no hold."""
    gate = DetectionGate(1.0, motion_detect_fps=5.0)
    gate.observe(SCENE)
    assert gate.should_detect(0.0, tracking=False)
    gate.found(0.0, 1)
    assert FOUND_HOLD_SECONDS == 1.0
    held = [gate.holding(i / 10) for i in range(15)]
    assert held == [True] * 10 + [False] * 5
    gate.found(2.0, 0)  # a look that found nothing does not extend the hold
    assert not gate.holding(2.05)
    gate.found(5.0, 2)
    assert not gate.holding(4.9) and gate.holding(5.9) and not gate.holding(6.0)
    assert not DetectionGate(1.0, enabled=False, motion_detect_fps=5.0).holding(0.0)
    default = DetectionGate(1.0)
    default.found(0.0, 3)
    assert not default.holding(0.5)


def test_detect_fps_zero_detects_only_on_motion_or_tracks() -> None:
    gate = _idle_gate(0.0)
    assert gate.should_detect(0.0, tracking=False)  # the first frame moved (nothing to compare)
    gate.observe(SCENE)
    assert [gate.should_detect(t / 10, tracking=False) for t in range(1, 30)] == [False] * 29
    gate.observe(SCENE)
    assert gate.should_detect(3.0, tracking=True)
    gate.observe(with_square(100, 100))
    assert gate.should_detect(3.1, tracking=False)


def test_tracks_alive_detect_every_frame() -> None:
    gate = _idle_gate(0.5)
    gate.should_detect(0.0, tracking=False)
    for i in range(1, 30):
        gate.observe(SCENE)
        assert gate.should_detect(i / 10, tracking=True)


def test_gate_off_detects_every_frame_without_a_motion_check() -> None:
    gate = DetectionGate(0.0, enabled=False)
    for i in range(10):
        gate.observe(SCENE)
        assert gate.should_detect(i / 10, tracking=False)
    assert gate.motion.thumbnail is None


def test_replayed_file_restarts_the_timer() -> None:
    gate = _idle_gate(1.0)
    assert gate.should_detect(5.0, tracking=False)
    gate.observe(SCENE)
    assert gate.should_detect(0.0, tracking=False)  # timestamps went back: a new pass


def test_negative_detect_fps_is_refused() -> None:
    with pytest.raises(ValueError, match="detect_fps"):
        DetectionGate(-1.0)
    with pytest.raises(ValueError, match="motion_detect_fps"):
        DetectionGate(1.0, motion_detect_fps=-0.5)


def test_config_keys() -> None:
    cfg = parse_config({"detect_fps": 0, "motion_gate": False})
    assert (cfg.detect_fps, cfg.motion_gate) == (0.0, False)
    assert (FaceTrackerConfig().motion_gate, FaceTrackerConfig().detect_fps) == (True, 1.0)
    with pytest.raises(ConfigError, match="detect_fps"):
        parse_config({"detect_fps": -1})
    assert FaceTrackerConfig().motion_detect_fps == MOTION_DETECT_FPS
    assert parse_config({"motion_detect_fps": 5}).motion_detect_fps == 5.0
    with pytest.raises(ConfigError, match="motion_detect_fps"):
        parse_config({"motion_detect_fps": -1})


def test_camera_sets_detect_fps_beside_fps() -> None:
    svc = parse_service_config(
        {
            "detect_fps": 2,
            "cameras": [
                {"name": "door", "source": "rtsp://h/a", "fps": 10, "detect_fps": 0.5, "motion_detect_fps": 5},
                {"name": "yard", "source": "rtsp://h/b", "motion_gate": False},
            ],
        }
    )
    door, yard = svc.cameras
    assert (door.fps, door.tracking.detect_fps, door.tracking.motion_gate) == (10, 0.5, True)
    assert (door.tracking.motion_detect_fps, yard.tracking.motion_detect_fps) == (5.0, MOTION_DETECT_FPS)
    assert (yard.tracking.detect_fps, yard.tracking.motion_gate) == (2.0, False)


# ---- real faces: the gate loses no track --------------------------------------------------------


def _clip(data: Path) -> list[np.ndarray]:
    """150 frames (10 frames/s, 960x540) of a still street with two real faces (see module doc)."""
    cap = cv2.VideoCapture(str(data / "debian_opencv-doc/examples/data/vtest.avi"))
    ok, first = cap.read()
    cap.release()
    assert ok
    bg = cv2.resize(first, (960, 540), interpolation=cv2.INTER_AREA).astype(np.float32)
    johns = data / "dlib/examples/johns"
    people = sorted(p for p in johns.iterdir() if p.is_dir())
    a = cv2.resize(read_image(sorted(people[0].iterdir())[0]), (120, 120)).astype(np.float32)
    b = cv2.resize(read_image(sorted(people[1].iterdir())[0]), (120, 120)).astype(np.float32)
    rng = np.random.default_rng(3)
    frames = []
    for i in range(150):
        f = bg.copy()
        if 30 <= i < 80:  # slides in from the left edge until frame 55, then stands still
            x = min(-100 + 20 * (i - 30), 400)
            lo = max(0, -x)
            f[200:320, max(x, 0) : x + 120] = a[:, lo:]
        if i >= 120:  # fades in where it stands over 5 frames
            alpha = min(1.0, (i - 119) / 5)
            f[150:270, 700:820] = alpha * b + (1 - alpha) * f[150:270, 700:820]
        frames.append(np.clip(f + rng.normal(0, 2.0, f.shape), 0, 255).astype(np.uint8))
    return frames


def _run(
    frames: list[np.ndarray], backend: InferenceBackend, cfg: FaceTrackerConfig, tmp: Path
) -> tuple[list[int], int]:
    lib = FaceLibrary(tmp / "lib", backend.model_id, backend.embedding_dim)
    tracker = FaceTracker(backend, lib, cfg, fps=10.0)
    starts, detected = [], 0
    for i, f in enumerate(frames):
        r = tracker.process(f, i, i / 10)
        detected += r.detected
        starts += [e.frame for e in r.events if e.type == "track_started"]
    return starts, detected


def test_gate_loses_no_face_track_on_real_faces(
    backend: InferenceBackend, config: FaceTrackerConfig, data_dir: Path, tmp_path: Path
) -> None:
    frames = _clip(data_dir)
    ungated, all_frames = _run(frames, backend, replace(config, motion_gate=False), tmp_path / "off")
    exact, detected_every = _run(frames, backend, replace(config, motion_gate=True), tmp_path / "every")
    rated = replace(config, motion_gate=True, motion_detect_fps=5.0)
    gated, detected = _run(frames, backend, rated, tmp_path / "on")
    assert all_frames == len(frames)
    assert len(ungated) == 2, ungated  # both faces tracked without the gate: the clip is sound
    # Detecting every moving frame (the default), the gate starts the same tracks on the same frames.
    assert exact == ungated
    # At motion_detect_fps 5 (every other moving frame at 10 frames/s while nothing is tracked),
    # the same tracks, each starting at most one frame late.
    assert len(gated) == len(ungated) and all(0 <= g - u <= 1 for g, u in zip(gated, ungated, strict=True)), gated
    # ... and the gate did skip the detector: on the still frames before the first face (27 of
    # the first 30; detect_fps 1 looks at frames 0, 10 and 20). After the first face vanishes its
    # lost track and then its fading ghost in the background keep the detector running, at most
    # every other frame while nothing is tracked.
    assert detected_every <= len(frames) - 25, detected_every
    assert detected < detected_every, (detected, detected_every)


def test_still_frames_are_flagged_and_a_cut_after_them_is_still_found(
    backend: InferenceBackend, config: FaceTrackerConfig, data_dir: Path, tmp_path: Path
) -> None:
    """``FrameResult.still``: no motion on a frame nor the one before, nothing tracked (what lets a
    recorder reuse the previous JPEG). A scene cut right after still frames, whose scoring the
    tracker skips, still ends the tracks."""
    frames = _clip(data_dir)
    lib = FaceLibrary(tmp_path / "lib", backend.model_id, backend.embedding_dim)
    tracker = FaceTracker(backend, lib, replace(config, motion_gate=True), fps=10)
    still = [tracker.process(f, i, i / 10).still for i, f in enumerate(frames[:70])]
    assert still[:2] == [False, False] and all(still[2:30]), still  # the first frame counts as moving
    assert not any(still[31:70])  # the face slides in (and is then tracked)
    assert tracker.tracks
    for i in range(70, 100):  # the face gone, the street still again
        tracker.process(frames[0], i, i / 10)
    assert not tracker.tracks or all(t.last_frame < 99 for t in tracker.tracks.values())
    other = np.ascontiguousarray(frames[0][::-1, ::-1])  # a different picture: a cut
    cut = tracker.process(other, 100, 10.0)
    assert cut.scene_cut and not cut.still
    off = FaceTracker(backend, lib, replace(config, motion_gate=False), fps=10)
    assert not any(off.process(f, i, i / 10).still for i, f in enumerate(frames[:10]))
