#!/usr/bin/env python
"""Turned faces of real people walking: a self-enrolment benchmark on ``video.mp4`` (issue 15).

The labelled dev stills reach |yaw| 0.19 at most; ``facenet_pytorch/examples/video.mp4`` (1920x1080,
25 fps, 105 frames, people walking towards the camera, faces up to 116 px) has real head turns
(9 % of detections at |yaw ratio| >= 0.45), but nobody in it is in the dev gallery. So the people
of the clip are enrolled from the clip itself:

1. **Identities.** ``run_pipeline`` (default configuration) over the clip with an *empty* library
   gives tracks (per frame, each tracked face's box). Every frame is then detected again
   (``backend.detect``, same detector settings) and each detection joins the track whose box it
   overlaps by IoU >= ``MIN_IOU`` (the same detector on the same frame: the boxes are identical).
   **A person is a track**: tracks are the identity ground truth. Two tracks are the same person
   (a re-entry) when the L2-normalised means of their frontal embeddings are >= ``MERGE_SIMILARITY``
   similar and they are never in the same frame (two faces in one frame are two people); such
   merges are reported. Purity is checked cheaply: per track the lowest SFace similarity between
   two of its frontal faces (a track holding two people would show a low one).
2. **Enrolment.** Per identity with a frontal face (|yaw| < ``ENROL_MAX_YAW``, size >=
   ``ENROL_MIN_SIZE`` px, level pitch, usable), the single face maximising ``size * (1 - 2|yaw|)``
   (the frontal factor of ``FaceQuality.rank``) is its gallery: its SFace embedding and dlib
   descriptor, as a user enrolling one photo. Identities without such a face are **strangers**.
3. **Probes, per frame.** Every other detection of an enrolled identity at least
   ``MIN_FRAME_GAP`` frames from its enrolment frame, judged against the whole gallery:

   - *new rule* (``facetrack.matching``, as ``FaceTracker._evidence``): the face must pass the
     default ``face_filters`` (|yaw| <= 0.75, pitch 0.25-0.95, ...); the nearest enrolled person by
     SFace; ``PERSON`` names them; ``GREY`` names them if dlib's distance to their gallery
     descriptor is <= ``confirm_distance(pose)``, else ``NOBODY`` (frontal) / ``NONE``;
   - *old rule* (before issue 15): SFace >= 0.52 alone, and only faces passing the old filters
     (|yaw| <= 0.3, pitch 0.3-0.85) count at all.

   Outcomes per |yaw| bin ([0, 0.15), [0.15, 0.35), [0.35, 0.75), >= 0.75: dropped by the default
   ``face_filters.max_yaw``) and per size bin: named right, wrong name, no name. Every detection of
   a stranger is a probe too: any name is a false accept. A wrong name is "certain" when the named
   person's track is in the same frame (one person cannot be two faces).
4. **The real pipeline, named.** A library holding the gallery (SFace embedding + dlib descriptor:
   ``FaceLibrary.enroll(..., descriptors2=...)``) and ``run_pipeline`` again: per identity, named
   right / wrong / never, the first frame named right, and the enrolment frame (a track that
   passes its own enrolment frame matches itself there at similarity ~1).

Caveat: self-enrolment from the same clip is optimistic (same light, same camera, same session,
minutes apart at most). The figures show whether turned faces *can* count and whether they cause
wrong names, not cross-session accuracy.

Usage::

    PYTHONPATH=addon .venv/bin/python benchmarks/bench_video_turned.py [--json OUT]

About 1-2 minutes of one core.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, emit_result, environment, markdown_table, run_worker, write_json
from bench_turned_clip import name_at
from compose_clip import iou

VIDEO = "facenet_pytorch/examples/video.mp4"
#: A detection belongs to a tracked face when their boxes overlap this much (Pascal VOC's 0.5;
#: the tracker reports the detector's own box, so true pairs overlap ~1).
MIN_IOU = 0.5
#: Two tracks whose frontal mean embeddings are at least this similar are one person. Well above
#: SFace's published 0.363 and the default ``cosine_similarity_threshold`` 0.52.
MERGE_SIMILARITY = 0.6
#: Enrolment face: |yaw| below this and shorter side at least this many pixels.
ENROL_MAX_YAW = 0.1
ENROL_MIN_SIZE = 48.0
#: Probes at least this many frames (0.4 s at 25 fps) from their identity's enrolment frame.
MIN_FRAME_GAP = 10
#: The rule before issue 15: SFace alone, faces within these filters only.
OLD_THRESHOLD = 0.52
OLD_MAX_YAW = 0.3
OLD_PITCH = (0.3, 0.85)
#: |yaw ratio| bin edges (``facetrack.pose``: frontal < 0.15, profile >= 0.35; 0.75 is the default
#: ``face_filters.max_yaw``) and size bin edges, pixels (48: ``matching.MIN_GREY_SIZE``).
YAW_EDGES = (0.15, 0.35, 0.75)
SIZE_EDGES = (48.0, 80.0, 120.0)
OUTCOMES = ("right", "wrong", "none")
#: Hand corrections of the tracks, checked by eye on face crops of every 3rd frame of every track
#: and of every frame where a track looked mixed: in frames 28-46 an Asian man with glasses walks
#: in front of the bald man and the bald man's track follows him (his turned faces never trip the
#: appearance split); from frame 46 he has a track of his own (never in the same frame as those
#: faces); the bald man is back on his track from frame 55. Every other track holds one person (the
#: last frames of one woman's track and one frame of a red-haired man are the back of the same
#: head; one young man looks down all along). A correction is ``(anchor, first frame, last frame,
#: anchor)``: the detections of the track at the first anchor within the frames belong to the
#: track at the second; an anchor is ``(frame, x, y)``, the tracked face whose box holds that
#: pixel (track ids depend on the engine version, the faces do not).
Anchor = tuple[int, float, float]
TRACK_CORRECTIONS: tuple[tuple[Anchor, int, int, Anchor], ...] = (((30, 1090.0, 717.0), 28, 46, (60, 1150.0, 730.0)),)


# ---- pure helpers -----------------------------------------------------------------------------


def bin_label(value: float, edges: Sequence[float]) -> str:
    """The half-open bin of ``value`` (``>= 0``) among ``edges``: ``"[0,0.15)"`` ... ``">=0.75"``."""
    lo = 0.0
    for hi in edges:
        if value < hi:
            return f"[{lo:g},{hi:g})"
        lo = hi
    return f">={lo:g}"


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Every label of :func:`bin_label` for ``edges``, in order."""
    return [bin_label(v, edges) for v in [0.0, *edges]]


def associate(
    dets: Sequence[Sequence[float]], tracked: Sequence[tuple[int, Sequence[float]]], min_iou: float
) -> list[int | None]:
    """The track id of each detection box (greedy by IoU, each tracked box used once), or ``None``.

    Args:
        dets: ``[x1, y1, x2, y2]`` detection boxes of one frame.
        tracked: ``(track id, box)`` of the frame's tracked faces.
    """
    pairs = sorted(((iou(list(d), list(b)), i, tid) for i, d in enumerate(dets) for tid, b in tracked), reverse=True)
    out: list[int | None] = [None] * len(dets)
    used: set[int] = set()
    for v, i, tid in pairs:
        if v < min_iou:
            break
        if out[i] is None and tid not in used:
            out[i] = tid
            used.add(tid)
    return out


def resolve_corrections(
    observations: Sequence[Sequence[Any]],
    corrections: Sequence[tuple[Anchor, int, int, Anchor]] = TRACK_CORRECTIONS,
) -> list[tuple[int, int, int, int]]:
    """``(track, first frame, last frame, true track)`` of each correction, anchors resolved on
    the ``(frame, track id, [x1, y1, x2, y2])`` observations of a pipeline run.

    Raises:
        ValueError: an anchor matches no tracked face (the tracks changed: check them again).
    """

    def track_at(anchor: Anchor) -> int:
        f, x, y = anchor
        hits = sorted({int(t) for fr, t, b in observations if fr == f and b[0] <= x <= b[2] and b[1] <= y <= b[3]})
        if not hits:
            raise ValueError(f"no tracked face holds the anchor {anchor}: check the track corrections again")
        return hits[0]

    return [(track_at(a), lo, hi, track_at(b)) for a, lo, hi, b in corrections]


def corrected_track(track: int, frame: int, corrections: Sequence[tuple[int, int, int, int]]) -> int:
    """The track (person) a detection of ``track`` at ``frame`` really belongs to."""
    for t, lo, hi, to in corrections:
        if t == track and lo <= frame <= hi:
            return to
    return track


def merge_tracks(
    means: dict[int, np.ndarray], covisible: set[frozenset[int]], threshold: float = MERGE_SIMILARITY
) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """Group tracks into identities (single linkage over frontal mean embeddings).

    Args:
        means: per track id with frontal faces, the L2-normalised mean of their ``(D,)`` embeddings.
        covisible: pairs of track ids seen in one frame (never merged: two faces, two people).
        threshold: cosine similarity at or above which two tracks are one person.

    Returns:
        ``{track id: identity id}`` for the tracks of ``means`` (identity id: the smallest track
        id of the group) and one record per candidate pair at or above ``threshold``
        (``tracks``, ``similarity``, ``merged``: False when co-visibility forbade it).
    """
    parent = {t: t for t in means}

    def root(t: int) -> int:
        while parent[t] != t:
            t = parent[t]
        return t

    ids = sorted(means)
    pairs = []
    for a_i, a in enumerate(ids):
        for b in ids[a_i + 1 :]:
            sim = float(means[a] @ means[b])
            if sim >= threshold:
                pairs.append((sim, a, b))
    records = []
    for sim, a, b in sorted(pairs, reverse=True):
        ok = frozenset((a, b)) not in covisible
        if ok:
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)
        records.append({"tracks": [a, b], "similarity": round(sim, 4), "merged": ok})
    return {t: root(t) for t in ids}, records


def enrolment_choice(yaws: Sequence[float], sizes: Sequence[float], eligible: Sequence[bool]) -> int | None:
    """Index of the enrolment face: eligible, |yaw| < ``ENROL_MAX_YAW``, size >= ``ENROL_MIN_SIZE``,
    maximising ``size * (1 - 2|yaw|)``; ``None`` when no face qualifies."""
    best, best_key = None, -1.0
    for i, (yaw, size, ok) in enumerate(zip(yaws, sizes, eligible, strict=True)):
        if ok and abs(yaw) < ENROL_MAX_YAW and size >= ENROL_MIN_SIZE:
            key = size * (1.0 - 2.0 * abs(yaw))
            if key > best_key:
                best, best_key = i, key
    return best


def tally(rows: Sequence[dict[str, Any]], key: str, labels: Sequence[str], outcome: str) -> list[dict[str, Any]]:
    """Per bin ``rows[i][key]`` in ``labels``: probes and counts of each of ``OUTCOMES`` in ``rows[i][outcome]``."""
    out = []
    for lab in labels:
        sel = [r for r in rows if r[key] == lab]
        out.append({"bin": lab, "probes": len(sel), **{o: sum(r[outcome] == o for r in sel) for o in OUTCOMES}})
    return out


def per_identity_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per enrolled identity: probes, new-rule outcomes, its "nobody" votes (``nobody`` and
    ``grey->nobody`` evidence), old-rule right names, median SFace similarity to its own gallery."""
    out = []
    for ident in sorted({r["identity"] for r in rows}):
        sel = [r for r in rows if r["identity"] == ident]
        own = [r["similarity"] for r in sel if r["nearest"] == ident]
        out.append(
            {
                "identity": ident,
                "probes": len(sel),
                **{o: sum(r["new"] == o for r in sel) for o in OUTCOMES},
                "nobody_votes": sum(r["evidence"] in ("nobody", "grey->nobody") for r in sel),
                "old_right": sum(r["old"] == "right" for r in sel),
                "median_similarity_own": round(float(np.median(own)), 3) if own else None,
            }
        )
    return out


def outcome(named: int | None, truth: int | None) -> str:
    """``right`` / ``wrong`` / ``none`` for a probe of identity ``truth`` (``None``: a stranger,
    whose any name is ``wrong``, a false accept) named ``named`` (``None``: no name)."""
    if named is None:
        return "none"
    return "right" if named == truth else "wrong"


# ---- workers ----------------------------------------------------------------------------------


def _backend_and_config(tmp: str) -> tuple[Any, Any]:
    from facetrack.config import parse_config
    from facetrack.inference import create_backend

    cfg = parse_config({"db_path": str(Path(tmp) / "faces.lance")})
    backend = create_backend(
        cfg.backend,
        threads=1,
        detector_input_size=cfg.detector_input_size,
        score_threshold=cfg.detection_score_threshold,
        nms_threshold=cfg.nms_threshold,
    )
    return backend, cfg


def worker_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """``run_pipeline`` over the clip with an empty library or ``spec["gallery"]`` enrolled."""
    import inspect
    import resource
    import tempfile
    import time

    from facetrack.library import FaceLibrary
    from facetrack.pipeline import run_pipeline

    with tempfile.TemporaryDirectory(prefix="bench_vturn_") as tmp:
        backend, cfg = _backend_and_config(tmp)
        lib = FaceLibrary(cfg.db_path, backend.model_id, backend.embedding_dim)
        gallery = spec.get("gallery") or []
        if gallery:
            if "descriptors2" not in inspect.signature(lib.enroll).parameters:
                return {"skipped": "FaceLibrary.enroll has no descriptors2 (an engine before library schema v2)"}
            for g in gallery:
                lib.enroll(
                    g["name"],
                    np.asarray([g["sface"]], dtype=np.float32),
                    [base64.b64decode(g["crop_jpeg"])],
                    [f"{VIDEO}:{g['frame']}"],
                    yaws=[g["yaw"]],
                    descriptors2=np.asarray([g["dlib"]], dtype=np.float32),
                )
        events: list[dict[str, Any]] = []
        observations: list[tuple[int, int, list[float]]] = []

        def on_frame(index: int, result: Any) -> None:
            for face in result.faces:
                box = getattr(face, "detection", face).box
                observations.append((index, int(face.track_id), [round(float(v), 1) for v in box]))

        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = ru.ru_utime + ru.ru_stime
        t0 = time.perf_counter()
        summary = run_pipeline(
            str(Path(spec["data"]) / VIDEO),
            backend,
            lib,
            cfg,
            lambda ev: events.append(ev.to_json()),
            on_frame=on_frame,
        )
        wall = time.perf_counter() - t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "events": events,
        "observations": observations,
        "summary": summary.to_json(),
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime - cpu0,
        "threshold": cfg.cosine_similarity_threshold,
    }


@dataclass
class _Face:
    frame: int
    track: int
    det: Any  # facetrack Detection
    yaw: float
    pitch: float
    size: float
    usable: bool  # default face_filters
    reason: str | None  # why not usable (quality.assess)
    usable_old: bool  # the filters before issue 15
    frontal: bool  # matching.FacePose.frontal
    sface: np.ndarray  # (128,) float32, L2-normalised
    identity: int = -1


def worker_analyse(spec: dict[str, Any]) -> dict[str, Any]:
    """Steps 1-3 of the module docstring, given the empty-library run's tracked faces."""
    import tempfile
    import time

    import cv2

    from facetrack.config.schema import FaceFilters
    from facetrack.inference.dlib_resnet import DlibResNet
    from facetrack.matching import Evidence, FacePose, classify, confirm_distance
    from facetrack.quality import assess

    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    video = str(Path(spec["data"]) / VIDEO)
    tracked: dict[int, list[tuple[int, list[float]]]] = {}
    for f, tid, box in spec["observations"]:
        tracked.setdefault(int(f), []).append((int(tid), box))
    corrections = resolve_corrections(spec["observations"])
    new_filters, old_filters = FaceFilters(), FaceFilters(max_yaw=OLD_MAX_YAW, pitch_range=OLD_PITCH)
    threshold = float(spec["threshold"])
    with tempfile.TemporaryDirectory(prefix="bench_vturn_") as tmp:
        backend, _ = _backend_and_config(tmp)
    faces: list[_Face] = []
    unassociated = 0
    crops: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(video)
    frame_no = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        dets = backend.detect(frame)
        owners = associate([d.box.tolist() for d in dets], tracked.get(frame_no, []), MIN_IOU)
        keep = [(d, t) for d, t in zip(dets, owners, strict=True) if t is not None]
        unassociated += len(dets) - len(keep)
        if keep:
            fcrops = [backend.aligned_crop(frame, d) for d, _ in keep]
            embs = np.asarray(backend.embed_crops(fcrops), dtype=np.float32)
            for (d, tid), crop, emb in zip(keep, fcrops, embs, strict=True):
                qn, qo = assess(d, crop, new_filters), assess(d, crop, old_filters)
                pose = FacePose(qn.yaw, qn.pitch, qn.size)
                crops[len(faces)] = crop
                faces.append(
                    _Face(
                        frame_no,
                        corrected_track(tid, frame_no, corrections),
                        d,
                        qn.yaw,
                        qn.pitch,
                        qn.size,
                        qn.usable,
                        qn.reason,
                        qo.usable,
                        pose.frontal,
                        emb,
                    )
                )
        frame_no += 1
    cap.release()
    t_detect = time.perf_counter() - t0

    # 1. identities: tracks, purity, merges
    by_track: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        by_track.setdefault(f.track, []).append(i)
    frontal_of = {t: [i for i in ix if faces[i].frontal and faces[i].usable] for t, ix in by_track.items()}
    means = {}
    for t, ix in frontal_of.items():
        if ix:
            m = np.mean([faces[i].sface for i in ix], axis=0)
            means[t] = m / np.linalg.norm(m)
    in_frame: dict[int, set[int]] = {}
    for f in faces:
        in_frame.setdefault(f.frame, set()).add(f.track)
    covisible: set[frozenset[int]] = set()
    for tids in in_frame.values():
        covisible |= {frozenset((a, b)) for a in tids for b in tids if a < b}
    identity_of, merges = merge_tracks(means, covisible)
    for f in faces:
        f.identity = identity_of.get(f.track, f.track)
    tracks_out = []
    debug_dir = spec.get("debug_dir")
    for t, ix in sorted(by_track.items()):
        fr = frontal_of[t]
        outliers = []
        if len(fr) >= 2:
            e = np.stack([faces[i].sface for i in fr])
            s = e @ e.T
            min_sim: float | None = float(s[np.triu_indices(len(fr), 1)].min())
            to_mean = e @ means[t]
            for i, v in zip(fr, to_mean, strict=True):
                if v < 0.3:
                    outliers.append(
                        [faces[i].frame, round(float(v), 3), round(faces[i].size, 1), round(faces[i].det.score, 3)]
                    )
                    if debug_dir:
                        Path(debug_dir).mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(f"{debug_dir}/t{t}_f{faces[i].frame}_{v:.2f}.png", crops[i])
        else:
            min_sim = None
        tracks_out.append(
            {
                "track": t,
                "identity": identity_of.get(t, t),
                "frames": [faces[ix[0]].frame, faces[ix[-1]].frame],
                "detections": len(ix),
                "frontal": len(fr),
                "min_frontal_similarity": None if min_sim is None else round(min_sim, 4),
                "max_abs_yaw": round(max(abs(faces[i].yaw) for i in ix), 3),
                "max_size": round(max(faces[i].size for i in ix), 1),
                "frontal_outliers": outliers,
            }
        )

    # 2. enrolment
    by_identity: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        by_identity.setdefault(f.identity, []).append(i)
    gallery_idx: dict[int, int] = {}
    for ident, ix in sorted(by_identity.items()):
        j = enrolment_choice(
            [faces[i].yaw for i in ix], [faces[i].size for i in ix], [faces[i].usable and faces[i].frontal for i in ix]
        )
        if j is not None:
            gallery_idx[ident] = ix[j]
    persons = sorted(gallery_idx)
    g_sface = np.stack([faces[gallery_idx[p]].sface for p in persons]) if persons else np.zeros((0, 128), np.float32)

    # 3. probes; dlib only where the rule asks for it (gallery faces and grey-zone probes)
    probes = [
        i
        for i, f in enumerate(faces)
        if f.identity not in gallery_idx or abs(f.frame - faces[gallery_idx[f.identity]].frame) >= MIN_FRAME_GAP
    ]
    sims = np.asarray([faces[i].sface for i in probes], dtype=np.float32) @ g_sface.T
    grey_needed = []
    first: dict[int, tuple[int, str]] = {}
    for k, i in enumerate(probes):
        f = faces[i]
        j = int(np.argmax(sims[k]))
        ev = classify(float(sims[k, j]), FacePose(f.yaw, f.pitch, f.size), threshold)
        first[i] = (j, ev.value)
        if f.usable and ev is Evidence.GREY:
            grey_needed.append(i)
    need = sorted({*gallery_idx.values(), *grey_needed}, key=lambda i: faces[i].frame)
    dlib = DlibResNet()
    desc: dict[int, np.ndarray] = {}
    t1 = time.perf_counter()
    cap = cv2.VideoCapture(video)
    frame_no, pos = 0, 0
    while pos < len(need):
        ok, frame = cap.read()
        if not ok:
            break
        todo = [i for i in need[pos:] if faces[i].frame == frame_no]
        if todo:
            out = dlib.describe(np.asarray(frame, dtype=np.uint8), np.stack([faces[i].det.box for i in todo]))
            desc.update(zip(todo, out, strict=True))
            pos += len(todo)
        frame_no += 1
    cap.release()
    t_dlib = time.perf_counter() - t1
    g_dlib = {p: desc[gallery_idx[p]] for p in persons}

    rows = []
    for k, i in enumerate(probes):
        f = faces[i]
        pose = FacePose(f.yaw, f.pitch, f.size)
        j, ev_name = first[i]
        sim = float(sims[k, j])
        dist: float | None = None
        named: int | None = None
        evidence = ev_name
        if not f.usable:
            evidence = "unusable"
        elif ev_name == Evidence.PERSON.value:
            named = persons[j]
        elif ev_name == Evidence.GREY.value:
            dist = float(np.linalg.norm(desc[i] - g_dlib[persons[j]]))
            if dist <= confirm_distance(pose):
                named, evidence = persons[j], "grey->person"
            else:
                evidence = "grey->nobody" if pose.frontal else "grey->none"
        old_named = persons[j] if f.usable_old and sim >= OLD_THRESHOLD else None
        truth = f.identity if f.identity in gallery_idx else None
        rows.append(
            {
                "frame": f.frame,
                "track": f.track,
                "identity": f.identity,
                "role": "enrolled" if truth is not None else "stranger",
                "yaw": round(f.yaw, 3),
                "pitch": round(f.pitch, 3),
                "size": round(f.size, 1),
                "yaw_bin": bin_label(abs(f.yaw), YAW_EDGES),
                "size_bin": bin_label(f.size, SIZE_EDGES),
                "nearest": persons[j],
                "similarity": round(sim, 4),
                "dlib_distance": None if dist is None else round(dist, 4),
                "evidence": evidence,
                "unusable_reason": f.reason,
                "named": named,
                "new": outcome(named, truth),
                "old_named": old_named,
                "old": outcome(old_named, truth),
                "certain_wrong": named is not None
                and named != truth
                and any(identity_of.get(t, t) == named for t in in_frame.get(f.frame, set())),
            }
        )
    gallery = []
    for p in persons:
        f = faces[gallery_idx[p]]
        ok, jpg = cv2.imencode(".jpg", crops[gallery_idx[p]])
        gallery.append(
            {
                "name": f"person_{p}",
                "identity": p,
                "track": f.track,
                "frame": f.frame,
                "yaw": round(f.yaw, 4),
                "size": round(f.size, 1),
                "sface": [float(v) for v in f.sface],
                "dlib": [float(v) for v in g_dlib[p]],
                "crop_jpeg": base64.b64encode(jpg.tobytes()).decode("ascii") if ok else "",
            }
        )
    yaws = np.abs([f.yaw for f in faces])
    return {
        "detections": len(faces),
        "unassociated_detections": unassociated,
        "yaw_p50_p90_max": [round(float(np.percentile(yaws, q)), 3) for q in (50, 90, 100)],
        "share_abs_yaw_ge_045": round(float(np.mean(yaws >= 0.45)), 3),
        "tracks": tracks_out,
        "merges": merges,
        "track_corrections": corrections,
        "identities": {str(k): sorted({faces[i].track for i in v}) for k, v in by_identity.items()},
        "gallery": gallery,
        "probes": rows,
        "detections_boxes": [[f.frame, f.identity, [round(float(v), 1) for v in f.det.box]] for f in faces],
        "dlib_descriptors": len(desc),
        "detect_embed_s": t_detect,
        "dlib_s": t_dlib,
    }


# ---- step 4 scoring ---------------------------------------------------------------------------


def score_named_run(
    observations: Sequence[Sequence[Any]],
    events: Sequence[dict[str, Any]],
    detections: Sequence[Sequence[Any]],
    gallery: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Per identity of steps 1-2, what the named pipeline run showed on its faces.

    Args:
        observations: ``(frame, track id, box)`` of the named run's tracked faces.
        events: its events as JSON.
        detections: ``(frame, identity, box)`` of steps 1-2 (the identity ground truth).
        gallery: the enrolled identities (``identity``, ``name``, ``frame``).
    """
    by_frame: dict[int, list[tuple[int, list[float]]]] = {}
    for f, ident, box in detections:
        by_frame.setdefault(int(f), []).append((int(ident), box))
    name_of = {g["name"]: int(g["identity"]) for g in gallery}
    enrol_frame = {int(g["identity"]): int(g["frame"]) for g in gallery}
    history = name_at(list(events))
    per: dict[int, dict[str, Any]] = {}
    for f, tid, box in observations:
        ident = associate([box], by_frame.get(int(f), []), MIN_IOU)[0]
        if ident is None:
            continue
        r = per.setdefault(
            ident, {"tracks": set(), "frames": 0, "right": 0, "wrong": 0, "first_right": None, "wrong_names": set()}
        )
        r["tracks"].add(int(tid))
        r["frames"] += 1
        shown = None
        for ef, person in history.get(int(tid), []):
            if ef > f:
                break
            shown = person
        if shown is None:
            continue
        if name_of.get(shown) == ident:
            r["right"] += 1
            r["first_right"] = f if r["first_right"] is None else min(r["first_right"], f)
        else:
            r["wrong"] += 1
            r["wrong_names"].add(shown)
    out = []
    for ident, r in sorted(per.items()):
        enrolled = ident in enrol_frame
        out.append(
            {
                "identity": ident,
                "role": "enrolled" if enrolled else "stranger",
                "enrol_frame": enrol_frame.get(ident),
                "tracks": sorted(r["tracks"]),
                "frames": r["frames"],
                "frames_right": r["right"],
                "frames_wrong": r["wrong"],
                "wrong_names": sorted(r["wrong_names"]),
                "first_right_frame": r["first_right"],
                "verdict": ("named right" if r["first_right"] is not None else "never named")
                if not r["wrong_names"]
                else ("wrong name" if enrolled else "false accept"),
            }
        )
    return out


# ---- main -------------------------------------------------------------------------------------


def _bin_table(rows: list[dict[str, Any]], key: str, labels: list[str], title: str) -> str:
    new, old = tally(rows, key, labels, "new"), tally(rows, key, labels, "old")
    return markdown_table(
        [title, "probes", "new: right", "new: wrong", "new: no name", "old: right", "old: wrong", "old: no name"],
        [
            [n["bin"], n["probes"], n["right"], n["wrong"], n["none"], o["right"], o["wrong"], o["none"]]
            for n, o in zip(new, old, strict=True)
        ],
    )


def _enrolment_cell(g: dict[str, Any] | None, track: int) -> str:
    """``frame, |yaw|, px`` of the enrolment face when it is on ``track``."""
    if g is None or g["track"] != track:
        return "-"
    return f"{g['frame']}, {abs(g['yaw']):.3f}, {g['size']:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared/data folder")
    ap.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    ap.add_argument(
        "--engine", type=Path, default=None, help="run both pipeline runs on this engine tree (addon folder)"
    )
    ap.add_argument("--no-named-run", action="store_true", help="skip step 4 (the pipeline with the gallery)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        emit_result({"pipeline": worker_pipeline, "analyse": worker_analyse}[spec["kind"]](spec))
        return 0

    env = environment()
    print(f"# bench_video_turned  ({env['cpu']}, {env['cores']} cores, load {env['loadavg_1m_at_start']:.2f})\n")
    data = str(args.data)
    extra = {"PYTHONPATH": str(args.engine.resolve())} if args.engine else None
    empty = run_worker(__file__, {"kind": "pipeline", "data": data}, env=extra)
    an = run_worker(
        __file__,
        {"kind": "analyse", "data": data, "observations": empty["observations"], "threshold": empty["threshold"]},
    )
    print(
        f"clip {VIDEO}: {empty['summary']['frames']} frames; {an['detections']} detections on tracks "
        f"({an['unassociated_detections']} on no track), |yaw| p50/p90/max {an['yaw_p50_p90_max']}, "
        f"share |yaw| >= 0.45: {an['share_abs_yaw_ge_045']:.1%}; threshold {empty['threshold']}\n"
    )
    enrolled = {g["identity"]: g for g in an["gallery"]}
    print("## Tracks (identity ground truth)\n")
    print(
        markdown_table(
            ["track", "identity", "role", "frames", "detections", "frontal", "min frontal sim", "frontal < 0.3 to mean",
             "max |yaw|", "max px", "enrolment (frame, |yaw|, px)"],
            [
                [t["track"], t["identity"], "enrolled" if t["identity"] in enrolled else "stranger",
                 f"{t['frames'][0]}-{t['frames'][1]}", t["detections"], t["frontal"],
                 "-" if t["min_frontal_similarity"] is None else t["min_frontal_similarity"],
                 ", ".join(f"f{o[0]} ({o[1]:.2f})" for o in t["frontal_outliers"]) or "-",
                 t["max_abs_yaw"], t["max_size"],
                 _enrolment_cell(enrolled.get(t["identity"]), t["track"])]
                for t in an["tracks"]
            ],
        )
    )  # fmt: skip
    print(
        "\nhand corrections (detections of track a in frames lo-hi are track b's person): "
        + ", ".join(f"{a} {lo}-{hi} -> {b}" for a, lo, hi, b in an["track_corrections"])
    )
    print(
        f"track pairs with frontal means >= {MERGE_SIMILARITY}: "
        + (", ".join(f"{a}+{b} ({m['similarity']:.3f}, {'merged' if m['merged'] else 'co-visible: kept apart'})"
                     for m in an["merges"] for a, b in [m["tracks"]]) or "none")
    )  # fmt: skip
    rows = an["probes"]
    enr = [r for r in rows if r["role"] == "enrolled"]
    strangers = [r for r in rows if r["role"] == "stranger"]
    yaw_labels, size_labels = bin_labels(YAW_EDGES), bin_labels(SIZE_EDGES)
    print(f"\n## Probes of enrolled people (>= {MIN_FRAME_GAP} frames from enrolment), per frame\n")
    print(_bin_table(enr, "yaw_bin", yaw_labels, "|yaw|"))
    print()
    print(_bin_table(enr, "size_bin", size_labels, "size px"))
    tot_new = {o: sum(r["new"] == o for r in enr) for o in OUTCOMES}
    tot_old = {o: sum(r["old"] == o for r in enr) for o in OUTCOMES}
    certain = sum(r["certain_wrong"] for r in enr)
    print(
        f"\nall {len(enr)} probes: new rule right/wrong/none {tot_new['right']}/{tot_new['wrong']}/{tot_new['none']} "
        f"(wrong with the named person in the same frame: {certain}); old rule {tot_old['right']}/{tot_old['wrong']}/"
        f"{tot_old['none']}"
    )
    ev_counts: dict[str, int] = {}
    for r in enr:
        ev_counts[r["evidence"]] = ev_counts.get(r["evidence"], 0) + 1
    print("new-rule evidence of those probes: " + ", ".join(f"{k} {v}" for k, v in sorted(ev_counts.items())))
    per_person = per_identity_summary(enr)
    print('\nper enrolled person (new rule; "nobody": frontal faces of fair size voting "not enrolled"):\n')
    print(
        markdown_table(
            ["identity", "probes", "right", "wrong", "no name", "nobody votes", "old: right", "median sim own"],
            [[p["identity"], p["probes"], p["right"], p["wrong"], p["none"], p["nobody_votes"], p["old_right"],
              p["median_similarity_own"]] for p in per_person],
        )
    )  # fmt: skip
    print("\n## Strangers (never enrolled): any name is a false accept\n")
    sy_new, sy_old = tally(strangers, "yaw_bin", yaw_labels, "new"), tally(strangers, "yaw_bin", yaw_labels, "old")
    print(
        markdown_table(
            ["|yaw|", "stranger detections", "new: false accepts", "old: false accepts"],
            [[n["bin"], n["probes"], n["wrong"], o["wrong"]] for n, o in zip(sy_new, sy_old, strict=True)],
        )
    )
    wrongs = [r for r in rows if r["new"] == "wrong" or r["old"] == "wrong"]
    if wrongs:
        print("\nwrong names / false accepts, one per line:\n")
        print(
            markdown_table(
                ["frame", "track", "identity", "role", "|yaw|", "px", "nearest", "sim", "dlib", "new", "old",
                 "certain"],
                [[r["frame"], r["track"], r["identity"], r["role"], abs(r["yaw"]), r["size"], r["nearest"],
                  r["similarity"], "-" if r["dlib_distance"] is None else r["dlib_distance"], r["named"] or "-",
                  r["old_named"] or "-", r["certain_wrong"]] for r in wrongs],
            )
        )  # fmt: skip

    named_run: dict[str, Any]
    if args.no_named_run:
        named_run = {"skipped": "--no-named-run"}
    else:
        named_run = run_worker(__file__, {"kind": "pipeline", "data": data, "gallery": an["gallery"]}, env=extra)
    print("\n## The real pipeline with the gallery enrolled\n")
    per_identity: list[dict[str, Any]] = []
    if "skipped" in named_run:
        print(f"skipped: {named_run['skipped']}")
    else:
        per_identity = score_named_run(
            named_run["observations"], named_run["events"], an["detections_boxes"], an["gallery"]
        )
        print(
            markdown_table(
                ["identity", "role", "enrolment frame", "tracks", "frames", "frames named right", "frames wrong",
                 "wrong names", "first named right", "verdict"],
                [[r["identity"], r["role"], "-" if r["enrol_frame"] is None else r["enrol_frame"],
                  ",".join(map(str, r["tracks"])), r["frames"], r["frames_right"], r["frames_wrong"],
                  ",".join(r["wrong_names"]) or "-", "-" if r["first_right_frame"] is None else r["first_right_frame"],
                  r["verdict"]] for r in per_identity],
            )
        )  # fmt: skip
        s = named_run["summary"]
        print(f"\nembeddings {s['embeddings']}, CPU {named_run['cpu_s']:.1f} s")
    print(
        "\ncaveat: self-enrolment from the same clip (same light, camera, session) is optimistic: this shows "
        "whether turned faces can count and whether they cause wrong names, not cross-session accuracy."
    )
    write_json(
        args.json,
        {
            "benchmark": "video_turned",
            "environment": env,
            "clip": VIDEO,
            "threshold": empty["threshold"],
            "engine": str(args.engine) if args.engine else "this checkout",
            "constants": {
                "min_iou": MIN_IOU, "merge_similarity": MERGE_SIMILARITY, "enrol_max_yaw": ENROL_MAX_YAW,
                "enrol_min_size": ENROL_MIN_SIZE, "min_frame_gap": MIN_FRAME_GAP, "old_threshold": OLD_THRESHOLD,
                "old_max_yaw": OLD_MAX_YAW, "old_pitch": OLD_PITCH, "yaw_edges": YAW_EDGES, "size_edges": SIZE_EDGES,
            },
            "detections": an["detections"],
            "unassociated_detections": an["unassociated_detections"],
            "yaw_p50_p90_max": an["yaw_p50_p90_max"],
            "share_abs_yaw_ge_045": an["share_abs_yaw_ge_045"],
            "tracks": an["tracks"],
            "track_corrections": an["track_corrections"],
            "merges": an["merges"],
            "gallery": [{k: v for k, v in g.items() if k not in ("sface", "dlib", "crop_jpeg")} for g in an["gallery"]],
            "enrolled_by_yaw": {rule: tally(enr, "yaw_bin", yaw_labels, rule) for rule in ("new", "old")},
            "enrolled_by_size": {rule: tally(enr, "size_bin", size_labels, rule) for rule in ("new", "old")},
            "enrolled_totals": {
                "new": tot_new, "old": tot_old, "new_wrong_certain": certain, "new_evidence": ev_counts,
            },
            "enrolled_by_person": per_person,
            "strangers_by_yaw": {"new": sy_new, "old": sy_old},
            "named_run": {k: v for k, v in named_run.items() if k != "observations"} | {"per_identity": per_identity},
            "timing": {
                "empty_run_cpu_s": empty["cpu_s"], "detect_embed_s": an["detect_embed_s"], "dlib_s": an["dlib_s"],
                "dlib_descriptors": an["dlib_descriptors"],
            },
            "probes": rows,
        },
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
