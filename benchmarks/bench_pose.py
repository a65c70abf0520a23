#!/usr/bin/env python
"""Still-image identification by head yaw: rank-1, false reject, misidentification, stranger false accept.

Black box: on ``labels.csv`` of ``shared/data`` without derived copies and its suggested split
(``threshold_curve.load_labels`` / ``suggested_split``: enrol the first 2 images of each person
with >= 4 images, 1 for people with 2-3; query with the rest; single-image people are strangers),
the people are enrolled with ``FaceRecognizer.enroll`` into a temporary ``FaceLibrary`` (default
configuration, default backend), and every probe (genuine query image or stranger image) is
identified with ``FaceRecognizer.recognize(image)``.

The probe's face is the result entry of the largest *confident* face (detector score >=
``CONFIDENT_SCORE``, else the largest), as ``FaceRecognizer.verify`` picks it; its yaw ratio is
``facetrack.quality.landmark_geometry`` of the backend's detection with that box (0 frontal,
about +-0.5 profile; the table bins the sign-free |yaw|). Outcomes per probe: named right (rank-1),
no name (false reject; includes probes without any face), a wrong name (misidentification);
for a stranger any name is a false accept.

Leave-persons-out (``--no-loo`` skips it): each enrolled person is forgotten in turn
(``FaceLibrary.forget``), its query images recognised again (any name is a false accept: many
more impostor probes than the 4 strangers), and the person enrolled again.

Usage::

    PYTHONPATH=addon .venv/bin/python benchmarks/bench_pose.py [--json OUT] [--engine OLD/addon]

``--engine`` runs the measurement on another engine tree (its addon folder), e.g. the commit
before a change extracted with ``git archive``. One core, about a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, emit_result, environment, markdown_table, run_worker, write_json

#: A face scoring at least this is "confident" (FaceRecognizer's ENROL_MIN_SCORE, YuNet's default).
CONFIDENT_SCORE = 0.9
#: Lower edges of the |yaw| bins; the last bin is open.
YAW_BINS = (0.0, 0.1, 0.2, 0.3, 0.4)


# ---- pure helpers -----------------------------------------------------------------------------


def yaw_bin(abs_yaw: float | None) -> str:
    """The bin label of a sign-free yaw ratio (``"no face"`` for ``None``)."""
    if abs_yaw is None:
        return "no face"
    for lo, hi in zip(YAW_BINS, (*YAW_BINS[1:], None), strict=True):
        if hi is None or abs_yaw < hi:
            return f"[{lo:.1f}, {hi:.1f})" if hi is not None else f"[{lo:.1f}, inf)"
    raise AssertionError("unreachable")


def pick_probe_face(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The entry of ``FaceRecognizer.recognize`` for the probe's face: the largest (shorter box
    side) among entries scoring >= ``CONFIDENT_SCORE``, else the largest; None when empty."""
    if not results:
        return None
    confident = [r for r in results if r["score"] >= CONFIDENT_SCORE] or results
    return max(confident, key=lambda r: min(r["bbox"][2] - r["bbox"][0], r["bbox"][3] - r["bbox"][1]))


def outcome(truth: str, named: str | None, stranger: bool) -> str:
    """``right`` / ``no name`` / ``wrong`` for a genuine probe; ``accepted`` / ``rejected`` for a stranger."""
    if stranger:
        return "rejected" if named is None else "accepted"
    if named is None:
        return "no name"
    return "right" if named == truth else "wrong"


def summarise(probes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per |yaw| bin and overall counts from the worker's probe records."""
    bins: dict[str, dict[str, int]] = {}
    labels = [yaw_bin(lo) for lo in YAW_BINS] + ["no face"]
    for lab in labels:
        bins[lab] = {"genuine": 0, "right": 0, "no name": 0, "wrong": 0, "strangers": 0, "accepted": 0}
    sims: dict[str, dict[str, float | None]] = {lab: {"min_genuine": None, "max_stranger": None} for lab in labels}
    for p in probes:
        lab = yaw_bin(p["abs_yaw"])
        b = bins[lab]
        sim = p.get("similarity")
        if p["stranger"]:
            b["strangers"] += 1
            b["accepted"] += p["outcome"] == "accepted"
            if sim is not None:
                cur = sims[lab]["max_stranger"]
                sims[lab]["max_stranger"] = sim if cur is None else max(cur, sim)
        else:
            b["genuine"] += 1
            b[p["outcome"]] += 1
            if sim is not None:
                cur = sims[lab]["min_genuine"]
                sims[lab]["min_genuine"] = sim if cur is None else min(cur, sim)
    genuine = [p for p in probes if not p["stranger"]]
    strangers = [p for p in probes if p["stranger"]]
    loo = [p for p in genuine if p.get("loo_named", "n/a") != "n/a"]
    loo_sims = [p["loo_similarity"] for p in loo if p.get("loo_similarity") is not None]
    return {
        "bins": bins,
        "similarity": sims,
        "max_loo_similarity": max(loo_sims, default=None),
        "genuine": len(genuine),
        "rank1": sum(p["outcome"] == "right" for p in genuine),
        "false_reject": sum(p["outcome"] == "no name" for p in genuine),
        "misidentified": sum(p["outcome"] == "wrong" for p in genuine),
        "strangers": len(strangers),
        "stranger_false_accepts": sum(p["outcome"] == "accepted" for p in strangers),
        "loo_probes": len(loo),
        "loo_false_accepts": sum(p["loo_named"] is not None for p in loo),
    }


# ---- worker (imports the engine) --------------------------------------------------------------


def _backend_and_config() -> tuple[Any, Any]:
    from facetrack.config import parse_config
    from facetrack.inference import create_backend

    cfg = parse_config({})
    opts: dict[str, Any] = {
        "detector_input_size": cfg.detector_input_size,
        "score_threshold": cfg.detection_score_threshold,
        "nms_threshold": cfg.nms_threshold,
    }
    try:
        return create_backend(cfg.backend, threads=1, **opts), cfg
    except TypeError:  # an engine tree without the threads option
        return create_backend(cfg.backend, **opts), cfg


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Enrol, recognise every probe (and the leave-persons-out pass); per-probe records."""
    import tempfile
    import time

    import numpy as np

    from facetrack.images import read_image
    from facetrack.library import FaceLibrary
    from facetrack.quality import landmark_geometry
    from facetrack.recognizer import FaceRecognizer
    from threshold_curve import load_labels, suggested_split

    data = Path(spec["data"])
    backend, cfg = _backend_and_config()
    enrol, queries, strangers = suggested_split(load_labels(data))
    t0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench_pose_") as tmp:
        lib = FaceLibrary(Path(tmp) / "faces.lance", backend.model_id, backend.embedding_dim)
        rec = FaceRecognizer(backend, cfg, lib)
        enrolled: dict[str, Any] = {}
        for person, paths in enrol.items():
            r = rec.enroll(person, [str(data / p) for p in paths])
            enrolled[person] = {"enrolled": r.enrolled, "skipped": r.skipped}
        cpu_enrol = time.process_time() - t0

        def identify(image: Any) -> dict[str, Any] | None:
            return pick_probe_face(rec.recognize(image))

        probes: list[dict[str, Any]] = []
        images: dict[str, Any] = {}
        for path, person, is_stranger in [(p, q, False) for p, q in queries] + [(p, q, True) for p, q in strangers]:
            img = read_image(data / path)
            images[path] = img
            hit = identify(img)
            yaw: float | None = None
            if hit is not None:
                dets = backend.detect(img)
                boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
                if len(dets):
                    d = np.abs(boxes - np.array(hit["bbox"], dtype=np.float64)).max(axis=1)
                    det = dets[int(np.argmin(d))]
                    yaw = float(landmark_geometry(det)[0])
            named = None if hit is None else hit["person"]
            probes.append(
                {
                    "path": path,
                    "person": person,
                    "stranger": is_stranger,
                    "yaw": None if yaw is None else round(yaw, 4),
                    "abs_yaw": None if yaw is None else round(abs(yaw), 4),
                    "score": None if hit is None else hit["score"],
                    "face_px": None
                    if hit is None
                    else round(min(hit["bbox"][2] - hit["bbox"][0], hit["bbox"][3] - hit["bbox"][1]), 1),
                    "named": named,
                    "similarity": None if hit is None else hit["similarity"],
                    "outcome": outcome(person, named, is_stranger),
                }
            )
        cpu_probe = time.process_time() - t0 - cpu_enrol

        if spec["loo"]:
            by_person: dict[str, list[dict[str, Any]]] = {}
            for p in probes:
                if not p["stranger"]:
                    by_person.setdefault(p["person"], []).append(p)
            for person, ps in by_person.items():
                if lib.person(person) is None:  # nothing was enrolled for them
                    for p in ps:
                        p["loo_named"] = "n/a"
                    continue
                lib.forget(person)
                for p in ps:
                    hit = identify(images[p["path"]])
                    p["loo_named"] = None if hit is None else hit["person"]
                    p["loo_similarity"] = None if hit is None else hit["similarity"]
                rec.enroll(person, [str(data / x) for x in enrol[person]])
        cpu_loo = time.process_time() - t0 - cpu_enrol - cpu_probe
    import facetrack

    return {
        "engine_path": str(Path(facetrack.__file__).parent),
        "enrolled": enrolled,
        "probes": probes,
        "threshold": cfg.cosine_similarity_threshold,
        "cpu_s": {"enrol": cpu_enrol, "probes": cpu_probe, "loo": cpu_loo},
    }


# ---- main -------------------------------------------------------------------------------------


def _sim(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def report(result: dict[str, Any]) -> dict[str, Any]:
    """Print the tables; the summary dict. Similarities are the cosine similarity of the probe's face
    to its nearest enrolled person as ``recognize`` reports it (the margin to the threshold)."""
    s = summarise(result["probes"])
    rows = []
    for lab, b in s["bins"].items():
        if not (b["genuine"] or b["strangers"]):
            continue
        g = max(b["genuine"], 1)
        rows.append(
            [
                lab,
                b["genuine"],
                f"{b['right']} ({b['right'] / g:.0%})" if b["genuine"] else "-",
                b["no name"],
                b["wrong"],
                b["strangers"],
                b["accepted"],
                _sim(s["similarity"][lab]["min_genuine"]),
                _sim(s["similarity"][lab]["max_stranger"]),
            ]
        )
    print(
        markdown_table(
            [
                "|yaw|",
                "genuine probes",
                "rank-1",
                "false reject",
                "misidentified",
                "strangers",
                "stranger FA",
                "lowest genuine sim",
                "highest stranger sim",
            ],
            rows,
        )
    )
    g = max(s["genuine"], 1)
    print(
        f"\noverall: genuine {s['genuine']}, rank-1 {s['rank1']} ({s['rank1'] / g:.1%}), "
        f"false reject {s['false_reject']}, misidentified {s['misidentified']}; "
        f"strangers {s['strangers']}, false accepts {s['stranger_false_accepts']}"
    )
    if s["loo_probes"]:
        print(
            f"leave-persons-out: {s['loo_probes']} impostor probes, false accepts {s['loo_false_accepts']} "
            f"({s['loo_false_accepts'] / s['loo_probes']:.1%}), highest similarity {_sim(s['max_loo_similarity'])}"
        )
    bad = [
        p for p in result["probes"] if p["outcome"] in ("wrong", "accepted") or p.get("loo_named") not in (None, "n/a")
    ]
    for p in bad:
        print(
            f"  {p['path']} ({p['person']}, |yaw| {p['abs_yaw']}): named {p['named']} ({p['similarity']})"
            + (f", without them: {p['loo_named']} ({p.get('loo_similarity')})" if p.get("loo_named") else "")
        )
    skipped = [(k, x) for k, v in result["enrolled"].items() for x in v["skipped"]]
    for person, x in skipped:
        print(f"  enrolment skipped: {x['path']} ({person}): {x['reason']}")
    c = result["cpu_s"]
    print(f"CPU s: enrol {c['enrol']:.1f}, probes {c['probes']:.1f}, leave-persons-out {c['loo']:.1f}")
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared/data folder")
    ap.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    ap.add_argument("--engine", type=Path, default=None, help="run on this engine tree (its addon folder)")
    ap.add_argument("--no-loo", action="store_true", help="skip the leave-persons-out pass")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        emit_result(worker(json.loads(args.worker)))
        return 0
    env = environment()
    print(f"# bench_pose  ({env['cpu']}, {env['cores']} cores, load {env['loadavg_1m_at_start']:.2f})\n")
    extra = {"PYTHONPATH": str(args.engine.resolve())} if args.engine else None
    result = run_worker(__file__, {"data": str(args.data), "loo": not args.no_loo}, env=extra)
    print(f"engine: {result['engine_path']}, threshold {result['threshold']}\n")
    s = report(result)
    write_json(
        args.json,
        {
            "benchmark": "pose",
            "environment": env,
            "engine": result["engine_path"],
            "threshold": result["threshold"],
            "summary": s,
            "cpu_s": result["cpu_s"],
            "enrolled": result["enrolled"],
            "probes": result["probes"],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
