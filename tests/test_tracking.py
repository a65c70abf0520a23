"""Face tracking on the real multi-face clip against hand-made ground truth.

``tests/data/video_gt.json`` holds face boxes of the clip's people at key frames 0, 10, ..., 100,
104 and 28 (just after p9's face replaced p7's at the same place), with a person label decided by
eye (see its ``notes``). The tracker runs once over the
whole clip (module fixture) with the default configuration and an empty library; each key frame's
ground-truth boxes are matched one-to-one to the confirmed tracked faces of that frame (IoU >= 0.3).

Checked:
- every person keeps exactly one track id over the key frames where its face is visible (one
  appearance; see re-entry below);
- no track id is given to two people (an id switch passes one person's track to another);
- re-identification embeds far less than "every tracked face every frame".

Allowed misses (a person's face visible in a key frame but no tracked face on it):
- key frames before ``credence_count`` frames have passed (a track is reported only once it has
  ``credence_count`` consecutive detections, so nobody can be matched in frame 0);
- at most ``MAX_MISSES`` other key frames per person (a track is briefly unconfirmed again after
  the detector missed the face, or a new one is still gaining credence).
A miss is never a licence for a second id: a person matched to two ids fails whatever the misses.

Re-entry: when a person's face is not visible for more than ``REENTRY_GAP_FRAMES`` frames (2 s,
twice the default lost-track time) between two annotated key frames, the later key frames are a
new appearance that may carry a new track id (face tracking cannot bridge that; re-identification
by embedding is the recognizer's job, not the tracker's). In this clip that is only p5 (face
turned down/away from ~frame 35 to ~93, annotated at 30 and then 100); p7's ~1 s occlusion behind
p9 (key frames 20 -> 50) is NOT a re-entry. The same id still may not be given to another person.

Occlusion swap latency: an online tracker follows a box, so when one head passes in front of
another (p9 in front of p7 at frames 26-28) the box is on the new face before any embedding can
tell. The engine re-identifies there and splits the track within a few frames. A key-frame match
of person P to an id that another person held before is forgiven only if, ``SWAP_LATENCY_FRAMES``
later, the face at P's place carries a different id and that id is the one P keeps afterwards;
at most ``MAX_FORGIVEN_SWAPS`` such key frames are forgiven in the clip.

A tracker that hands out a new id every frame, or swaps ids between people, fails these tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from boxes import box_iou
from conftest import BACKENDS
from facetrack.camera import open_source
from facetrack.config import FaceTrackerConfig
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.track import FaceTracker

GT_PATH = Path(__file__).parent / "data" / "video_gt.json"
GT = json.loads(GT_PATH.read_text())
GT_FRAMES: dict[int, list[dict[str, Any]]] = {int(k): v for k, v in GT["frames"].items()}
PERSONS = sorted({r["person"] for rows in GT_FRAMES.values() for r in rows}, key=lambda p: int(p[1:]))
FPS = 25.0
N_FRAMES = 105
IOU_MIN = 0.3
#: Key frames (beyond those before credence) in which a visible person may have no tracked face.
MAX_MISSES = 1
#: A gap longer than this (frames) between a person's annotated key frames starts a new appearance.
REENTRY_GAP_FRAMES = 50
#: Frames within which an id carried onto another face by an occlusion must be split off.
SWAP_LATENCY_FRAMES = 5
MAX_FORGIVEN_SWAPS = 1
#: Embeddings over the clip as a fraction of embedding every tracked face every frame.
MAX_EMBEDDING_FRACTION = 0.25


@dataclass
class Run:
    """What the tracker reported over the clip."""

    faces: dict[int, list[tuple[int, np.ndarray]]]  # frame -> [(track id, box xyxy)]
    embeddings: int
    baseline: int  # sum over frames of confirmed tracked faces
    frames: int


def _match(gt_rows: list[dict[str, Any]], faces: list[tuple[int, np.ndarray]]) -> dict[str, int | None]:
    """One-to-one GT person -> track id, greedily by highest IoU (>= ``IOU_MIN``); ``None`` if unmatched."""
    out: dict[str, int | None] = {r["person"]: None for r in gt_rows}
    pairs = sorted(
        (
            (box_iou(np.asarray(r["box"], float), box), i, j)
            for i, r in enumerate(gt_rows)
            for j, (_, box) in enumerate(faces)
        ),
        reverse=True,
    )
    used_gt: set[int] = set()
    used_face: set[int] = set()
    for v, i, j in pairs:
        if v < IOU_MIN:
            break
        if i not in used_gt and j not in used_face:
            used_gt.add(i)
            used_face.add(j)
            out[gt_rows[i]["person"]] = faces[j][0]
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, backend_factory: Callable[[str], InferenceBackend]) -> InferenceBackend:
    """Each backend in turn (overrides conftest's OpenCV-only fixture for this module)."""
    return backend_factory(request.param)


@pytest.fixture(scope="module")
def run(
    backend: InferenceBackend,
    config: FaceTrackerConfig,
    video_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    library = FaceLibrary(tmp_path_factory.mktemp("track") / "lib", backend.model_id, backend.embedding_dim)
    tracker = FaceTracker(backend, library, config, fps=FPS)
    faces: dict[int, list[tuple[int, np.ndarray]]] = {}
    embeddings = baseline = frames = 0
    with open_source(str(video_path)) as video:
        for i, ts, frame in video.frames():
            res = tracker.process(frame, i, ts)
            faces[i] = [(f.track_id, np.asarray(f.detection.box, dtype=float)) for f in res.faces]
            embeddings += res.embeddings
            baseline += len(res.faces)
            frames += 1
    return Run(faces, embeddings, baseline, frames)


@pytest.fixture(scope="module")
def raw_matches(run: Run) -> dict[str, list[tuple[int, int | None]]]:
    """Person -> [(key frame, matched track id or None)] over the key frames where it is visible."""
    out: dict[str, list[tuple[int, int | None]]] = {p: [] for p in PERSONS}
    for k in sorted(GT_FRAMES):
        for person, tid in _match(GT_FRAMES[k], run.faces[k]).items():
            out[person].append((k, tid))
    return out


def _forgivable(run: Run, person: str, k: int, tid: int, later_ids: set[int]) -> bool:
    """Whether ``tid`` on ``person`` at key frame ``k`` is split off within the swap latency."""
    box = np.asarray(next(r["box"] for r in GT_FRAMES[k] if r["person"] == person), float)
    after = run.faces.get(k + SWAP_LATENCY_FRAMES, [])
    here = [t for t, b in after if box_iou(box, b) >= IOU_MIN]
    return bool(here) and all(t != tid and t in later_ids for t in here)


@pytest.fixture(scope="module")
def forgiven(run: Run, raw_matches: dict[str, list[tuple[int, int | None]]]) -> list[tuple[str, int, int]]:
    """(person, key frame, id) matches forgiven as occlusion swap latency (see module doc)."""
    first_owner: dict[int, tuple[int, str]] = {}
    for person, seen in raw_matches.items():
        for k, tid in seen:
            if tid is not None and (tid not in first_owner or k < first_owner[tid][0]):
                first_owner[tid] = (k, person)
    out = []
    for person, seen in raw_matches.items():
        for k, tid in seen:
            if tid is None or first_owner[tid][1] == person:
                continue
            later = {t for kk, t in seen if kk > k + SWAP_LATENCY_FRAMES and t is not None}
            if _forgivable(run, person, k, tid, later):
                out.append((person, k, tid))
    return out


@pytest.fixture(scope="module")
def matches(
    raw_matches: dict[str, list[tuple[int, int | None]]], forgiven: list[tuple[str, int, int]]
) -> dict[str, list[tuple[int, int | None]]]:
    """``raw_matches`` without the forgiven swap-latency key frames."""
    drop = {(p, k) for p, k, _ in forgiven}
    return {p: [(k, t) for k, t in seen if (p, k) not in drop] for p, seen in raw_matches.items()}


def test_occlusion_swaps_are_split_off_quickly(forgiven: list[tuple[str, int, int]]) -> None:
    assert len(forgiven) <= MAX_FORGIVEN_SWAPS, f"too many swapped key frames: {forgiven}"


def _appearances(seen: list[tuple[int, int | None]]) -> list[list[tuple[int, int | None]]]:
    """Split a person's key frames where the ground truth shows no face for > ``REENTRY_GAP_FRAMES``."""
    out: list[list[tuple[int, int | None]]] = []
    for k, t in seen:
        if not out or k - out[-1][-1][0] > REENTRY_GAP_FRAMES:
            out.append([])
        out[-1].append((k, t))
    return out


def _describe(matches: dict[str, list[tuple[int, int | None]]]) -> str:
    return "\n".join(f"  {p}: " + ", ".join(f"{k}->{t}" for k, t in v) for p, v in matches.items())


def test_ground_truth_file() -> None:
    assert GT["video"] == "facenet_pytorch/examples/video.mp4"
    assert set(GT_FRAMES) <= set(range(N_FRAMES))
    assert len(PERSONS) >= 5
    for k, rows in GT_FRAMES.items():
        names = [r["person"] for r in rows]
        assert len(names) == len(set(names)), f"frame {k}: a person appears twice"
        for r in rows:
            x1, y1, x2, y2 = r["box"]
            assert 0 <= x1 < x2 <= 1920 and 0 <= y1 < y2 <= 1080, (k, r)
            assert x2 - x1 >= 35 and y2 - y1 >= 35, (k, r)


def test_whole_clip_processed(run: Run) -> None:
    assert run.frames == N_FRAMES
    # Sanity: the clip has several faces in nearly every frame; a tracker that confirms nothing
    # would pass the id checks vacuously (and the embedding budget too).
    assert run.baseline >= 4 * N_FRAMES, f"only {run.baseline} confirmed tracked faces over the clip"


@pytest.mark.parametrize("person", PERSONS)
def test_person_keeps_one_track_id(
    person: str, matches: dict[str, list[tuple[int, int | None]]], config: FaceTrackerConfig
) -> None:
    seen = matches[person]
    detail = f"{person} ({GT.get('persons', {}).get(person, '')}):\n{_describe({person: seen})}"
    # Before credence_count frames no track can be confirmed yet.
    counted = [(k, t) for k, t in seen if k >= config.credence_count - 1]
    misses = [k for k, t in counted if t is None]
    assert len(misses) <= MAX_MISSES, f"{person} untracked in key frames {misses}\n{detail}"
    for appearance in _appearances(counted):
        ids = {t for _, t in appearance if t is not None}
        span = f"key frames {appearance[0][0]}-{appearance[-1][0]}"
        assert len(ids) <= 1, f"{person} fragmented into track ids {sorted(ids)} over {span}\n{detail}"
        assert ids, f"{person} never tracked over {span}\n{detail}"


def test_no_track_id_shared_by_two_people(matches: dict[str, list[tuple[int, int | None]]]) -> None:
    owners: dict[int, set[str]] = {}
    for person, seen in matches.items():
        for _, tid in seen:
            if tid is not None:
                owners.setdefault(tid, set()).add(person)
    shared = {tid: sorted(ps) for tid, ps in owners.items() if len(ps) > 1}
    assert not shared, f"track ids passed between people (id switch): {shared}\n{_describe(matches)}"


def test_reidentification_embeds_sparingly(run: Run) -> None:
    assert run.embeddings > 0
    fraction = run.embeddings / run.baseline
    assert fraction <= MAX_EMBEDDING_FRACTION, (
        f"{run.embeddings} embeddings for {run.baseline} tracked faces ({fraction:.1%}); "
        f"the per-frame baseline budget is {MAX_EMBEDDING_FRACTION:.0%}"
    )
