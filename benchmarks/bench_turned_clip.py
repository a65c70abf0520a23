#!/usr/bin/env python
"""Turned faces on video: who the real pipeline names, on a composed clip with exact ground truth.

1. The clip: ``compose_clip.py`` (query images of the enrolled people chosen for their yaw, plus
   some frontal ones and the 4 strangers, pasted over vtest.avi and encoded with libx264), made
   into ``--workdir`` by this checkout's engine, or ``--clip VIDEO`` (its ground truth: the
   ``.json`` next to it).
2. A temporary library with the people of the suggested split of ``shared/data/README.md``
   enrolled by ``FaceRecognizer.enroll`` (their enrolment images only; the clip shows query images).
3. ``facetrack.pipeline.run_pipeline`` over the clip, default configuration (what ``facetrack
   track`` runs), recording every frame's tracked faces (track id, box) and every event.
4. Each tracked face of each frame is mapped to the ground-truth segment active in that frame whose
   box it overlaps most, when IoU >= ``MIN_IOU``. A track's name at a frame is the ``person`` of
   its last ``identity`` event up to that frame.

Per segment: tracks, named right (the right name shown at some frame), wrong names (any other
name; for a stranger: any name, a false accept), never named, frame of the first right name, and
the highest ``similarity`` of the ``identity`` events of its tracks within the segment (the vote's
mean similarity, or an unknown track's best: the margin to the threshold).
Totals, embeddings computed, embeddings per tracked face-second (embeddings / sum over tracks of
their span in s, ``(last - first + 1) / fps``), processing frames/s and CPU s.

Usage::

    PYTHONPATH=addon .venv/bin/python benchmarks/bench_turned_clip.py [--json OUT] [--engine OLD/addon]

``--engine`` runs the enrolment and the pipeline on another engine tree (its addon folder; the clip
is always composed by this checkout, so before and after see the same frames). About a minute of
one core for the default clip.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, DEFAULT_WORKDIR, emit_result, environment, markdown_table, run_worker, write_json
from compose_clip import iou

#: A tracked face belongs to a segment when its box overlaps the segment's box by at least this
#: (Pascal VOC's 0.5 is too strict for a detector box against a still's box carried into the
#: clip: the detector's box on the composed frame differs by a few pixels, more on small faces).
MIN_IOU = 0.3


# ---- pure helpers -----------------------------------------------------------------------------


def name_at(events: list[dict[str, Any]]) -> dict[int, list[tuple[int, str | None]]]:
    """Per track id, its ``identity`` events as ``[(frame, person)]`` sorted by frame."""
    out: dict[int, list[tuple[int, str | None]]] = {}
    for ev in events:
        if ev["type"] == "identity":
            out.setdefault(ev["track_id"], []).append((ev["frame"], ev["person"]))
    for v in out.values():
        v.sort(key=lambda x: x[0])
    return out


def _name(history: list[tuple[int, str | None]], frame: int) -> str | None:
    name: str | None = None
    for f, person in history:
        if f > frame:
            break
        name = person
    return name


def assign(
    segments: list[dict[str, Any]], observations: list[tuple[int, int, list[float]]], min_iou: float = MIN_IOU
) -> dict[tuple[int, int], int]:
    """Map ``(frame, track id)`` observations to segment ids (best IoU >= ``min_iou`` with a
    segment active in that frame); unmatched observations are left out."""
    active: dict[int, list[tuple[int, list[float]]]] = {}
    for s in segments:
        for k, box in enumerate(s["boxes"]):
            active.setdefault(s["first_frame"] + k, []).append((s["id"], box))
    out: dict[tuple[int, int], int] = {}
    for frame, tid, box in observations:
        best, best_iou = -1, min_iou
        for sid, gbox in active.get(frame, []):
            v = iou(box, gbox)
            if v >= best_iou:
                best, best_iou = sid, v
        if best >= 0:
            out[(frame, tid)] = best
    return out


def evaluate(
    truth: dict[str, Any], observations: list[tuple[int, int, list[float]]], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per-segment outcome and totals (see the module docstring).

    Args:
        truth: the ground-truth JSON of ``compose_clip``.
        observations: ``(frame, track id, [x1, y1, x2, y2])`` of every tracked face of every frame.
        events: the pipeline's events as JSON (``type``, ``frame``, ``track_id``, ``person``).
    """
    fps = float(truth["fps"])
    segs = truth["segments"]
    mapping = assign(segs, observations)
    names = name_at(events)
    per_seg: dict[int, dict[str, Any]] = {
        s["id"]: {"tracks": set(), "frames": 0, "right_frames": 0, "first_right": None, "wrong": set()} for s in segs
    }
    by_id = {s["id"]: s for s in segs}
    spans: dict[int, list[int]] = {}
    unmatched: dict[int, int] = {}
    for frame, tid, _ in observations:
        sp = spans.setdefault(tid, [frame, frame])
        sp[0], sp[1] = min(sp[0], frame), max(sp[1], frame)
        sid = mapping.get((frame, tid))
        if sid is None:
            unmatched[tid] = unmatched.get(tid, 0) + 1
            continue
        r = per_seg[sid]
        r["tracks"].add(tid)
        r["frames"] += 1
        shown = _name(names.get(tid, []), frame)
        if shown is None:
            continue
        if shown == by_id[sid]["person"] and by_id[sid]["role"] == "enrolled":
            r["right_frames"] += 1
            if r["first_right"] is None or frame < r["first_right"]:
                r["first_right"] = frame
        else:
            r["wrong"].add(shown)
    rows = []
    for s in segs:
        r = per_seg[s["id"]]
        named_right = r["first_right"] is not None
        sims = [
            ev["similarity"]
            for ev in events
            if ev["type"] == "identity"
            and ev["track_id"] in r["tracks"]
            and s["first_frame"] <= ev["frame"] <= s["last_frame"]
            and ev.get("similarity") is not None
        ]
        rows.append(
            {
                "id": s["id"],
                "person": s["person"],
                "role": s["role"],
                "pose": s["pose"],
                "source": s["source"],
                "source_abs_yaw": s["source_abs_yaw"],
                "face_px": s["face_px"],
                "first_frame": s["first_frame"],
                "last_frame": s["last_frame"],
                "tracks": sorted(r["tracks"]),
                "tracked_frames": r["frames"],
                "named_right": named_right,
                "right_frames": r["right_frames"],
                "wrong_names": sorted(r["wrong"]),
                "never_named": not named_right and not r["wrong"],
                "first_right_frame": r["first_right"],
                "frames_to_name": None if r["first_right"] is None else r["first_right"] - s["first_frame"],
                "identity_similarity_max": max(sims, default=None),
            }
        )
    # Tracks that never matched a segment but were named: a name on something that is no face of the truth.
    matched_tracks = {tid for (_, tid) in mapping}
    stray_named = sorted(
        {tid for tid in unmatched if tid not in matched_tracks and any(p is not None for _, p in names.get(tid, []))}
    )
    face_seconds = sum((b - a + 1) / fps for a, b in spans.values())
    enrolled_rows = [r for r in rows if r["role"] == "enrolled"]
    strangers = [r for r in rows if r["role"] == "stranger"]
    return {
        "segments": rows,
        "totals": {
            "segments": len(rows),
            "enrolled_segments": len(enrolled_rows),
            "named_right": sum(r["named_right"] for r in enrolled_rows),
            "wrong_name_segments": sum(bool(r["wrong_names"]) for r in enrolled_rows),
            "never_named": sum(r["never_named"] for r in enrolled_rows),
            "never_tracked": sum(not r["tracks"] for r in rows),
            "strangers": len(strangers),
            "strangers_accepted": sum(bool(r["wrong_names"]) for r in strangers),
            "tracks": len(spans),
            "tracks_without_segment": len([t for t in spans if t not in matched_tracks]),
            "named_tracks_without_segment": stray_named,
            "tracked_face_seconds": face_seconds,
        },
    }


# ---- workers ----------------------------------------------------------------------------------


def worker_compose(spec: dict[str, Any]) -> dict[str, Any]:
    """Compose the clip (this checkout's engine detects the stills' faces)."""
    from compose_clip import compose

    video, gt = compose(Path(spec["out"]), Path(spec["data"]))
    return {"video": str(video), "truth": str(gt)}


def worker_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """Enrol the dev people into a temporary library and run the pipeline over the clip."""
    import resource
    import tempfile
    import time

    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.pipeline import run_pipeline
    from facetrack.recognizer import FaceRecognizer
    from threshold_curve import load_labels, suggested_split

    data = Path(spec["data"])
    enrol, _, _ = suggested_split(load_labels(data))
    with tempfile.TemporaryDirectory(prefix="bench_turned_") as tmp:
        cfg = parse_config({"db_path": str(Path(tmp) / "faces.lance")})
        opts: dict[str, Any] = {
            "detector_input_size": cfg.detector_input_size,
            "score_threshold": cfg.detection_score_threshold,
            "nms_threshold": cfg.nms_threshold,
        }
        try:
            backend = create_backend(cfg.backend, threads=1, **opts)
        except TypeError:  # an engine tree without the threads option
            backend = create_backend(cfg.backend, **opts)
        lib = FaceLibrary(cfg.db_path, backend.model_id, backend.embedding_dim)
        rec = FaceRecognizer(backend, cfg, lib)
        enrolled = {}
        for person, paths in enrol.items():
            r = rec.enroll(person, [str(data / p) for p in paths])
            enrolled[person] = {"enrolled": r.enrolled, "skipped": r.skipped}

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
            spec["video"], backend, lib, cfg, lambda ev: events.append(ev.to_json()), on_frame=on_frame
        )
        wall = time.perf_counter() - t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ru.ru_utime + ru.ru_stime - cpu0
    import facetrack

    return {
        "engine_path": str(Path(facetrack.__file__).parent),
        "enrolled": enrolled,
        "summary": summary.to_json(),
        "wall_s": wall,
        "cpu_s": cpu,
        "events": events,
        "observations": observations,
        "threshold": cfg.cosine_similarity_threshold,
    }


def _verdict(r: dict[str, Any]) -> str:
    """The "named right" cell of a segment's row."""
    if r["role"] == "stranger":
        return "accepted" if r["wrong_names"] else "unknown (right)"
    return "yes" if r["named_right"] else ("never named" if r["never_named"] else "no")


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared/data folder")
    ap.add_argument("--clip", type=Path, default=None, help="a composed clip (its truth: same stem, .json)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the clip is composed")
    ap.add_argument("--engine", type=Path, default=None, help="run the pipeline on this engine tree (addon folder)")
    ap.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        emit_result({"compose": worker_compose, "pipeline": worker_pipeline}[spec["kind"]](spec))
        return 0

    env = environment()
    print(f"# bench_turned_clip  ({env['cpu']}, {env['cores']} cores, load {env['loadavg_1m_at_start']:.2f})\n")
    if args.clip is None:
        made = run_worker(
            __file__, {"kind": "compose", "out": str(args.workdir / "turned_clip"), "data": str(args.data)}
        )
        video, truth_path = Path(made["video"]), Path(made["truth"])
    else:
        video, truth_path = args.clip, args.clip.with_suffix(".json")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    extra = {"PYTHONPATH": str(args.engine.resolve())} if args.engine else None
    res = run_worker(__file__, {"kind": "pipeline", "video": str(video), "data": str(args.data)}, env=extra)
    ev = evaluate(truth, [(f, t, b) for f, t, b in res["observations"]], res["events"])

    print(
        f"clip {video}: {truth['frames']} frames {truth['width']}x{truth['height']} at {truth['fps']:g} fps, "
        f"{len(truth['segments'])} segments; engine: {res['engine_path']}, "
        f"threshold {res['threshold']}\n"
    )
    print(
        markdown_table(
            ["seg", "person", "pose", "|yaw|", "face px", "frames", "tracks", "named right", "wrong name",
             "first right (+frames)", "identity sim"],
            [
                [
                    r["id"], r["person"], r["pose"], r["source_abs_yaw"], r["face_px"],
                    f"{r['first_frame']}-{r['last_frame']}", ",".join(map(str, r["tracks"])) or "-",
                    _verdict(r),
                    ",".join(r["wrong_names"]) or "-",
                    "-" if r["first_right_frame"] is None else f"{r['first_right_frame']} (+{r['frames_to_name']})",
                    "-" if r["identity_similarity_max"] is None else f"{r['identity_similarity_max']:.3f}",
                ]
                for r in sorted(ev["segments"], key=lambda r: (r["role"], -r["source_abs_yaw"]))
            ],
        )
    )  # fmt: skip
    t = ev["totals"]
    s = res["summary"]
    face_s = t["tracked_face_seconds"]
    frames = s["frames"]
    print(
        f"\nenrolled segments named right: {t['named_right']}/{t['enrolled_segments']}, with a wrong name: "
        f"{t['wrong_name_segments']}, never named: {t['never_named']}; strangers accepted: "
        f"{t['strangers_accepted']}/{t['strangers']}; segments never tracked: {t['never_tracked']}"
    )
    print(
        f"tracks: {t['tracks']} ({t['tracks_without_segment']} on no ground-truth face, named: "
        f"{t['named_tracks_without_segment'] or 'none'})"
    )
    print(
        f"embeddings: {s['embeddings']}, tracked face-s {face_s:.1f}, per face-s "
        f"{s['embeddings'] / face_s if face_s else float('nan'):.2f}; {frames} frames in {res['wall_s']:.1f} s "
        f"({frames / res['wall_s']:.1f} frames/s), CPU {res['cpu_s']:.1f} s"
    )
    write_json(
        args.json,
        {
            "benchmark": "turned_clip",
            "environment": env,
            "engine": res["engine_path"],
            "clip": {k: v for k, v in truth.items() if k not in ("segments", "sources")},
            "threshold": res["threshold"],
            "totals": {
                **t,
                "embeddings": s["embeddings"],
                "embeddings_per_face_second": s["embeddings"] / face_s if face_s else None,
                "frames": frames,
                "wall_s": res["wall_s"],
                "fps": frames / res["wall_s"],
                "cpu_s": res["cpu_s"],
            },
            "summary": s,
            "enrolled": res["enrolled"],
            "segments": ev["segments"],
            "events": res["events"],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
