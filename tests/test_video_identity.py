"""Identification in video: the composed demo clip (real photos, real H.264 damage, exact truth).

Two people are enrolled from photos that never appear in the clip; a stranger is never enrolled;
one person leaves and comes back. A splice with real street footage checks scene cuts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from boxes import box_iou
from facetrack.camera import open_source
from facetrack.config import FaceTrackerConfig
from facetrack.events import TrackEvent
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.recognizer import FaceRecognizer
from facetrack.track import FaceTracker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
import compose  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    truth = compose.compose(out)
    return out, truth


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory, backend: InferenceBackend, config: FaceTrackerConfig
) -> FaceLibrary:
    lib = FaceLibrary(tmp_path_factory.mktemp("lib") / "faces.lance", backend.model_id, backend.embedding_dim)
    rec = FaceRecognizer(backend, config, lib)
    compose.enrol_demo_people(rec)
    return lib


def track(path: Path, backend: InferenceBackend, lib: FaceLibrary, config: FaceTrackerConfig):
    tracker = FaceTracker(backend, lib, config, fps=25.0)
    events: list[TrackEvent] = []
    per_frame: dict[int, list[tuple[int, list[float]]]] = {}
    with open_source(str(path)) as video:
        for i, ts, frame in video.frames():
            res = tracker.process(frame, i, ts)
            events += res.events
            per_frame[i] = [(f.track_id, [float(v) for v in f.detection.box]) for f in res.faces]
    events += tracker.finish()
    return events, per_frame


@pytest.fixture(scope="module")
def run(demo, backend, library, config):
    path, truth = demo
    events, per_frame = track(path, backend, library, config)
    return truth, events, per_frame


def appearances(truth: dict) -> list[tuple[str, int, int]]:
    return [(p, a, b) for p, a, b, *_ in compose.APPEARANCES]


def test_each_appearance_is_one_track_with_the_right_identity(run) -> None:
    truth, events, per_frame = run
    final_identity: dict[int, str | None] = {}
    for e in events:
        if e.type == "identity":
            final_identity[e.track_id] = e.person
    seen_ids: list[int] = []
    for person, a, b in appearances(truth):
        ids = set()
        matched = 0
        for i in range(a, b + 1):
            gt_box = next(g["box"] for g in truth["boxes"][str(i)] if g["person"] == person and a <= i <= b)
            hits = [tid for tid, box in per_frame.get(i, []) if box_iou(box, gt_box) >= 0.3]
            ids.update(hits)
            matched += bool(hits)
        # Confirmed within credence_count frames and followed to the end of the appearance.
        assert matched >= (b - a + 1) - 5, f"{person} {a}-{b}: tracked in only {matched} frames"
        assert len(ids) == 1, f"{person} {a}-{b}: track ids {ids}"
        (tid,) = ids
        assert tid not in seen_ids  # a returning person is a new track
        seen_ids.append(tid)
        expected = person if person in compose.ENROLLED else None
        assert final_identity.get(tid, "undecided") == expected, f"{person}: {final_identity.get(tid)}"


def test_identity_never_flips_and_stranger_is_decided_unknown(run) -> None:
    _, events, _ = run
    by_track: dict[int, list[str | None]] = {}
    for e in events:
        if e.type == "identity":
            by_track.setdefault(e.track_id, []).append(e.person)
    assert len(by_track) == 4
    for names in by_track.values():
        assert len(names) == 1, f"identity changed: {names}"
    assert sorted(by_track.values(), key=str) == sorted(
        [[compose.ENROLLED[0]], [compose.ENROLLED[1]], [None], [compose.ENROLLED[0]]], key=str
    )


def test_returning_person_is_named_on_the_first_embedding(run, config: FaceTrackerConfig) -> None:
    _, events, _ = run
    person, a, _b, *_ = compose.APPEARANCES[3]
    started = [e for e in events if e.type == "track_started" and a <= e.frame <= a + 10]
    assert len(started) == 1
    tid = started[0].track_id
    ident = next(e for e in events if e.type == "identity" and e.track_id == tid)
    assert ident.person == person
    assert ident.frame == started[0].frame  # named on confirmation, by the gallery or a clear match


def test_embeddings_are_a_fraction_of_per_frame(backend, library, config, demo) -> None:
    path, _ = demo
    tracker = FaceTracker(backend, library, config, fps=25.0)
    faces = 0
    with open_source(str(path)) as video:
        for i, ts, frame in video.frames():
            faces += len(tracker.process(frame, i, ts).faces)
    assert tracker.total_embeddings <= 0.25 * faces
    # Tracked face-seconds vs embeddings: the backoff's whole point.
    assert tracker.total_embeddings / (faces / 25.0) <= 1.5


def test_scene_cut_in_spliced_footage_ends_tracks(
    tmp_path: Path,
    demo,
    video_path: Path,
    backend,
    library,
    config,
) -> None:
    demo_path, _ = demo
    spliced = tmp_path / "spliced.mp4"
    # 2 s of the demo clip, then 2 s of real street footage, both 1280x720 at 25 fps.
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(demo_path), "-i", str(video_path),
         "-filter_complex",
         "[0:v]trim=start_frame=40:end_frame=90,setpts=PTS-STARTPTS[a];"
         "[1:v]scale=1280:720,fps=25,trim=end_frame=50,setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1[v]",
         "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", str(spliced)],
        check=True,
    )  # fmt: skip
    events, _ = track(spliced, backend, library, config)
    cut_ends = [e for e in events if e.type == "track_ended" and e.reason == "scene_cut"]
    assert cut_ends, "no track ended at the splice"
    assert all(e.frame == 49 for e in cut_ends)  # last frame of the first shot
    assert all(e.reason != "scene_cut" for e in events if e.type == "track_ended" and e.frame != 49)
    # No track carries an identity across the cut: tracks after it start after frame 49.
    after = {e.track_id for e in events if e.type == "track_started" and e.frame >= 50}
    before = {e.track_id for e in events if e.type == "track_started" and e.frame < 50}
    assert after and not (after & before)
    assert np.all([e.frame >= 50 for e in events if e.track_id in after])
