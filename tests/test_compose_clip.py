"""The composed turned-face clip of ``benchmarks/compose_clip.py`` and the scoring helpers of
``benchmarks/bench_turned_clip.py`` and ``benchmarks/bench_pose.py``.

The composition test encodes a 2-segment clip with ffmpeg, decodes it and checks that the
ground-truth box of each segment holds a face the default backend detects (IoU >= 0.3): the
ground truth the video benchmark scores tracks against is where the faces really are.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import cv2
import pytest

from facetrack.images import read_image
from facetrack.inference import InferenceBackend
from facetrack.quality import landmark_geometry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_pose
import bench_turned_clip
import compose_clip

#: A 150x150 aligned chip (dlib) and a large web portrait (deepface): both ends of the source sizes.
STILLS = (
    ("dlib/examples/johns/John_Simm/000306_00470222.jpg", "john_simm"),
    ("deepface/tests/unit/dataset/img2.jpg", "angelina_jolie"),
)


def _source(backend: InferenceBackend, data: Path, path: str, person: str) -> compose_clip.Source:
    det = compose_clip.still_face(backend, read_image(data / path))
    assert det is not None, path
    x1, y1, x2, y2 = (float(v) for v in det.box)
    return compose_clip.Source(person, "enrolled", "turned", path, (x1, y1, x2, y2), landmark_geometry(det)[0])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH")
def test_composed_clip_ground_truth_boxes_hold_detectable_faces(
    backend: InferenceBackend, data_dir: Path, tmp_path: Path
) -> None:
    sources = [_source(backend, data_dir, p, person) for p, person in STILLS]
    video, truth_path = compose_clip.compose(
        tmp_path, data_dir, sources=sources, name="t", fps=10, segment_seconds=0.6, gap_seconds=0.2, seed=3
    )
    truth = json.loads(truth_path.read_text())
    assert len(truth["segments"]) == 2
    frames = []
    cap = cv2.VideoCapture(str(video))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == truth["frames"]
    assert (frames[0].shape[1], frames[0].shape[0]) == (truth["width"], truth["height"])
    for seg in truth["segments"]:
        assert len(seg["boxes"]) == seg["last_frame"] - seg["first_frame"] + 1
        k = (seg["last_frame"] - seg["first_frame"]) // 2  # full opacity in the middle
        gt = seg["boxes"][k]
        dets = backend.detect(frames[seg["first_frame"] + k])
        best = max((compose_clip.iou([float(v) for v in d.box], gt) for d in dets), default=0.0)
        assert best >= 0.3, (seg["source"], gt, [d.box for d in dets])
        # The face is drawn at the planned size (shorter side of the still's box, within the +-20 % scaling).
        assert 0.75 * seg["face_px"] <= min(gt[2] - gt[0], gt[3] - gt[1]) <= 1.25 * seg["face_px"]


def test_iou() -> None:
    assert compose_clip.iou([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert compose_clip.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert compose_clip.iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0


def test_plan_never_shows_a_person_twice_at_once() -> None:
    box = (10.0, 10.0, 60.0, 70.0)
    sources = [
        compose_clip.Source(p, "enrolled", "turned", f"{p}{i}.jpg", box, 0.0) for p in ("a", "b") for i in range(4)
    ]
    plans, total = compose_clip.plan_segments(
        sources, fps=10, width=1280, height=720, segment_seconds=1.0, gap_seconds=0.5, seed=1
    )
    assert sorted(p.source.path for p in plans) == sorted(s.path for s in sources)
    assert total > max(p.last for p in plans)
    for i, p in enumerate(plans):
        for q in plans[i + 1 :]:
            if p.source.person == q.source.person:
                assert p.last < q.first or q.last < p.first, (p, q)
    # Faces of one cell never overlap in time.
    for i, p in enumerate(plans):
        for q in plans[i + 1 :]:
            if p.cell == q.cell:
                assert p.last < q.first or q.last < p.first


def _truth() -> dict[str, Any]:
    seg = {"source": "x.jpg", "source_abs_yaw": 0.2, "face_px": 100, "pose": "turned"}
    return {
        "fps": 10,
        "segments": [
            {**seg, "id": 0, "person": "ann", "role": "enrolled", "first_frame": 0, "last_frame": 2,
             "boxes": [[0, 0, 100, 100]] * 3},
            {**seg, "id": 1, "person": "bob", "role": "enrolled", "first_frame": 0, "last_frame": 2,
             "boxes": [[500, 0, 600, 100]] * 3},
            {**seg, "id": 2, "person": "eve", "role": "stranger", "first_frame": 5, "last_frame": 6,
             "boxes": [[0, 0, 100, 100]] * 2},
        ],
    }  # fmt: skip


def test_evaluate_maps_tracks_and_scores_names() -> None:
    obs: list[tuple[int, int, list[float]]] = [
        (0, 1, [2, 2, 98, 100]),
        (1, 1, [2, 2, 98, 100]),
        (2, 1, [2, 2, 98, 100]),
        (0, 2, [505, 0, 600, 100]),
        (1, 2, [505, 0, 600, 100]),
        (5, 3, [0, 0, 100, 100]),
        (6, 3, [0, 0, 100, 100]),
        (6, 4, [900, 600, 920, 620]),  # no ground-truth face there
    ]
    events = [
        {"type": "identity", "frame": 1, "track_id": 1, "person": "ann"},
        {"type": "identity", "frame": 1, "track_id": 2, "person": "ann"},  # bob called ann
        {"type": "identity", "frame": 6, "track_id": 3, "person": "bob"},  # stranger accepted
    ]
    ev = bench_turned_clip.evaluate(_truth(), obs, events)
    rows = {r["id"]: r for r in ev["segments"]}
    assert rows[0]["named_right"] and rows[0]["first_right_frame"] == 1 and rows[0]["frames_to_name"] == 1
    assert rows[0]["wrong_names"] == [] and rows[0]["tracks"] == [1]
    assert not rows[1]["named_right"] and rows[1]["wrong_names"] == ["ann"]
    assert rows[2]["wrong_names"] == ["bob"]
    t = ev["totals"]
    assert (t["named_right"], t["wrong_name_segments"], t["strangers_accepted"]) == (1, 1, 1)
    assert t["tracks"] == 4 and t["tracks_without_segment"] == 1
    assert t["tracked_face_seconds"] == pytest.approx((3 + 2 + 2 + 1) / 10)


def test_evaluate_unnamed_segment_is_never_named() -> None:
    ev = bench_turned_clip.evaluate(_truth(), [(0, 7, [0, 0, 100, 100])], [])
    rows = {r["id"]: r for r in ev["segments"]}
    assert rows[0]["never_named"] and rows[0]["tracks"] == [7]
    assert rows[1]["tracks"] == [] and ev["totals"]["never_tracked"] == 2


def test_pose_helpers() -> None:
    assert bench_pose.yaw_bin(0.05) == "[0.0, 0.1)"
    assert bench_pose.yaw_bin(0.1) == "[0.1, 0.2)"
    assert bench_pose.yaw_bin(0.55) == "[0.4, inf)"
    assert bench_pose.yaw_bin(None) == "no face"
    big_weak = {"bbox": [0, 0, 300, 300], "score": 0.6, "person": None}
    small_sure = {"bbox": [0, 0, 50, 60], "score": 0.95, "person": "ann"}
    assert bench_pose.pick_probe_face([big_weak, small_sure]) is small_sure
    assert bench_pose.pick_probe_face([big_weak]) is big_weak
    assert bench_pose.pick_probe_face([]) is None
    probes: list[dict[str, Any]] = [
        {"abs_yaw": 0.05, "stranger": False, "outcome": "right", "loo_named": None},
        {"abs_yaw": 0.35, "stranger": False, "outcome": "wrong", "loo_named": "bob"},
        {"abs_yaw": None, "stranger": False, "outcome": "no name", "loo_named": None},
        {"abs_yaw": 0.25, "stranger": True, "outcome": "accepted"},
    ]
    s = bench_pose.summarise(probes)
    assert (s["rank1"], s["misidentified"], s["false_reject"], s["stranger_false_accepts"]) == (1, 1, 1, 1)
    assert s["bins"]["[0.3, 0.4)"]["wrong"] == 1 and s["bins"]["no face"]["no name"] == 1
    assert (s["loo_probes"], s["loo_false_accepts"]) == (3, 1)
