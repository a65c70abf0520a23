"""The pure helpers of ``benchmarks/bench_video_turned.py``: binning, association, track merges,
enrolment choice, hand corrections and the scoring of the named pipeline run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_video_turned as bvt


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_bins_are_half_open_and_cover_everything() -> None:
    assert bvt.bin_labels(bvt.YAW_EDGES) == ["[0,0.15)", "[0.15,0.35)", "[0.35,0.75)", ">=0.75"]
    assert bvt.bin_label(0.0, bvt.YAW_EDGES) == "[0,0.15)"
    assert bvt.bin_label(0.15, bvt.YAW_EDGES) == "[0.15,0.35)"
    assert bvt.bin_label(0.749, bvt.YAW_EDGES) == "[0.35,0.75)"
    assert bvt.bin_label(0.75, bvt.YAW_EDGES) == ">=0.75"
    assert bvt.bin_label(47.9, bvt.SIZE_EDGES) == "[0,48)"
    assert bvt.bin_label(120.0, bvt.SIZE_EDGES) == ">=120"


def test_associate_is_one_to_one_and_needs_the_iou() -> None:
    tracked = [(7, [0.0, 0.0, 10.0, 10.0]), (9, [100.0, 100.0, 110.0, 110.0])]
    dets = [[100.0, 100.0, 110.0, 111.0], [0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60.0, 60.0]]
    # The exact box wins track 7; the shifted copy (IoU 0.82) finds it taken.
    assert bvt.associate(dets, tracked, 0.5) == [9, 7, None, None]
    assert bvt.associate([[0.0, 0.0, 10.0, 10.0]], [(1, [5.0, 0.0, 15.0, 10.0])], 0.5) == [None]  # IoU 1/3


def test_merge_tracks_links_similar_tracks_but_never_co_visible_ones() -> None:
    means = {1: _unit(1, 0, 0), 2: _unit(0, 1, 0), 5: _unit(1, 0.1, 0), 8: _unit(1, 0.05, 0)}
    identity, records = bvt.merge_tracks(means, covisible={frozenset((5, 8))}, threshold=0.6)
    assert identity[2] == 2
    # 1-5 and 1-8 link; 5-8 are in one frame but already joined through 1: single linkage.
    assert identity[1] == identity[5] == identity[8] == 1
    assert {tuple(r["tracks"]): r["merged"] for r in records} == {(1, 5): True, (1, 8): True, (5, 8): False}
    identity, _ = bvt.merge_tracks({3: _unit(1, 0), 4: _unit(1, 0.01)}, covisible={frozenset((3, 4))})
    assert identity == {3: 3, 4: 4}


def test_enrolment_choice_wants_a_frontal_face_of_fair_size() -> None:
    yaws = [0.0, 0.09, -0.05, 0.3, 0.0]
    sizes = [47.0, 100.0, 90.0, 200.0, 120.0]
    eligible = [True, True, True, True, False]
    # 100 * (1 - 0.18) = 82 beats 90 * (1 - 0.1) = 81; 47 px is too small, 0.3 too turned.
    assert bvt.enrolment_choice(yaws, sizes, eligible) == 1
    assert bvt.enrolment_choice([0.0, 0.2], [40.0, 100.0], [True, True]) is None


def test_corrections_move_only_their_frames() -> None:
    fixes = ((2, 28, 45, 11),)
    assert [bvt.corrected_track(2, f, fixes) for f in (27, 28, 45, 46)] == [2, 11, 11, 2]
    assert bvt.corrected_track(3, 30, fixes) == 3


def test_corrections_resolve_by_face_not_by_track_number() -> None:
    obs = [[30, 4, [0.0, 0.0, 10.0, 10.0]], [30, 7, [20.0, 0.0, 30.0, 10.0]], [60, 9, [20.0, 0.0, 30.0, 10.0]]]
    anchors = (((30, 25.0, 5.0), 28, 46, (60, 25.0, 5.0)),)
    assert bvt.resolve_corrections(obs, anchors) == [(7, 28, 46, 9)]
    with pytest.raises(ValueError, match="anchor"):
        bvt.resolve_corrections(obs, (((31, 25.0, 5.0), 28, 46, (60, 25.0, 5.0)),))


def test_outcome_and_tally() -> None:
    assert bvt.outcome(None, 3) == "none"
    assert bvt.outcome(3, 3) == "right"
    assert bvt.outcome(4, 3) == "wrong"
    assert bvt.outcome(4, None) == "wrong"  # a stranger named: a false accept
    rows = [{"b": "x", "o": "right"}, {"b": "x", "o": "wrong"}, {"b": "y", "o": "none"}]
    assert bvt.tally(rows, "b", ["x", "y", "z"], "o") == [
        {"bin": "x", "probes": 2, "right": 1, "wrong": 1, "none": 0},
        {"bin": "y", "probes": 1, "right": 0, "wrong": 0, "none": 1},
        {"bin": "z", "probes": 0, "right": 0, "wrong": 0, "none": 0},
    ]


def test_score_named_run_follows_the_shown_name_per_frame() -> None:
    box_a, box_b = [0.0, 0.0, 50.0, 50.0], [100.0, 0.0, 150.0, 50.0]
    detections = [[f, 1, box_a] for f in range(4)] + [[f, 2, box_b] for f in range(4)]
    gallery = [{"identity": 1, "name": "person_1", "frame": 0}]
    observations = [[f, 10, box_a] for f in range(4)] + [[f, 20, box_b] for f in range(4)]
    events = [
        {"type": "identity", "frame": 2, "track_id": 10, "person": "person_1"},
        {"type": "identity", "frame": 3, "track_id": 20, "person": "person_1"},
    ]
    rows = {r["identity"]: r for r in bvt.score_named_run(observations, events, detections, gallery)}
    assert rows[1]["verdict"] == "named right" and rows[1]["first_right_frame"] == 2 and rows[1]["frames_right"] == 2
    assert rows[2]["role"] == "stranger" and rows[2]["verdict"] == "false accept" and rows[2]["frames_wrong"] == 1
