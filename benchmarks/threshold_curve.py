#!/usr/bin/env python
"""Measure the recognition and detection thresholds of the default backend on ``shared/data``.

Identification (SFace cosine similarity, ``cosine_similarity_threshold``), on ``labels.csv``
without derived copies (rows with a ``note``) and the suggested split of ``shared/data/README.md``:
enrol the first 2 images (sorted by path) of each person with >= 4 images, 1 for people with 2-3;
query with the rest; people with a single image are strangers. For every threshold:

- genuine rank-1: the probe's nearest enrolled person is right AND similarity >= t;
- genuine false reject: best similarity < t (or no face found in the probe);
- misidentification: nearest person wrong AND similarity >= t;
- stranger false accept: a stranger's best similarity >= t;
- leave-persons-out false accept: each enrolled person's query images, matched against the
  library without that person (many more impostor probes than the handful of strangers);
- 1:1 verification (``FaceRecognizer.verify``'s rule, largest face of each image) over all pairs
  of labelled images: FAR on impostor pairs, FRR on genuine pairs.

Enrolment uses ``FaceRecognizer.enrolment_embedding`` (the default face filters: a skipped image
is simply missing from that person's enrolment); probes use the largest confident face (score >= 0.9).

Detection (YuNet ``detection_score_threshold``), on dlib's ``examples/faces/{training,testing}.xml``:
recall at IoU >= 0.5 of the ground-truth faces whose shorter side is >= 40 px, and false positives
per image, for score thresholds 0.3..0.9 and ``detector_input_size`` 640 / 1280.

Usage::

    .venv/bin/python benchmarks/threshold_curve.py [--data ../shared/data] [--part all|ident|detect]

Light on CPU: OpenCV runs on one thread, every image is decoded and detected once per setting.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrack.config import parse_config
from facetrack.errors import FaceTrackError
from facetrack.images import read_image
from facetrack.inference import create_backend
from facetrack.library import FaceLibrary
from facetrack.recognizer import ENROL_MIN_SCORE, FaceRecognizer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
THRESHOLDS = np.round(np.arange(0.20, 0.6001, 0.01), 2)
DET_THRESHOLDS = np.round(np.arange(0.3, 0.9001, 0.1), 1)
MIN_GT_SIZE = 40
FACES_DIR = Path("dlib/examples/faces")
#: Pictures of the faces folder without any face (README: "includes negatives (dogs)").
NEGATIVE_IMAGES = ("dogs.jpg",)


# ---- identification -----------------------------------------------------------------------


def load_labels(data: Path) -> list[dict[str, str]]:
    """``labels.csv`` rows without derived copies / duplicates."""
    with (data / "labels.csv").open(newline="") as f:
        return [r for r in csv.DictReader(f) if not r["note"]]


def suggested_split(
    rows: list[dict[str, str]],
) -> tuple[dict[str, list[str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """``(enrol {person: paths}, queries [(path, person)], strangers [(path, person)])``."""
    by_person: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_person[r["person"]].append(r["path"])
    enrol: dict[str, list[str]] = {}
    queries: list[tuple[str, str]] = []
    strangers: list[tuple[str, str]] = []
    for person, unsorted in sorted(by_person.items()):
        paths = sorted(unsorted)
        if len(paths) == 1:
            strangers.append((paths[0], person))
            continue
        k = 2 if len(paths) >= 4 else 1
        enrol[person] = paths[:k]
        queries += [(p, person) for p in paths[k:]]
    return enrol, queries, strangers


@dataclass
class Probe:
    path: str
    person: str
    emb: np.ndarray | None  # largest face, None when no face was found
    n_faces: int = 0
    largest_is_top_score: bool = True


@dataclass
class IdentResult:
    enrolled: dict[str, int]
    skipped: list[tuple[str, str, str]]
    genuine: list[Probe]
    strangers: list[Probe]
    # per genuine probe: nearest person (library), its similarity
    nearest: list[str | None]
    sims: np.ndarray
    stranger_sims: np.ndarray
    loo_sims: np.ndarray  # best similarity of each genuine probe against the library without its person
    ver_genuine: np.ndarray
    ver_impostor: np.ndarray
    ver_no_face: list[str] = field(default_factory=list)


def largest_face_probe(backend, data: Path, path: str, person: str) -> Probe:
    img = read_image(data / path)
    dets = backend.detect(img)
    if not dets:
        return Probe(path, person, None, 0)
    # The recogniser's rule (FaceRecognizer.verify, tests/test_identification.py): the largest of
    # the confident faces (score >= 0.9), so a large low-score false positive cannot win.
    confident = [d for d in dets if d.score >= ENROL_MIN_SCORE] or dets
    largest = max(confident, key=lambda d: d.size)
    top = max(dets, key=lambda d: d.score)
    emb = backend.embed(img, [largest])[0]
    return Probe(path, person, emb, len(dets), largest is top)


def run_identification(data: Path) -> IdentResult:
    cfg = parse_config({})
    backend = create_backend(
        cfg.backend,
        detector_input_size=cfg.detector_input_size,
        score_threshold=cfg.detection_score_threshold,
        nms_threshold=cfg.nms_threshold,
        threads=1,
    )
    rows = load_labels(data)
    enrol, queries, strangers = suggested_split(rows)
    rec = FaceRecognizer(backend, cfg)

    # Enrolment: FaceRecognizer's own face choice and filters (what `facetrack enroll` does).
    enrol_embs: dict[str, list[np.ndarray]] = {}
    enrol_crops: dict[str, list[bytes]] = {}
    skipped: list[tuple[str, str, str]] = []
    for person, paths in enrol.items():
        for p in paths:
            try:
                emb, crop = rec.enrolment_embedding(read_image(data / p))
            except FaceTrackError as err:
                skipped.append((p, person, str(err)))
                continue
            enrol_embs.setdefault(person, []).append(emb)
            enrol_crops.setdefault(person, []).append(crop)

    genuine = [largest_face_probe(backend, data, p, person) for p, person in queries]
    stranger_probes = [largest_face_probe(backend, data, p, person) for p, person in strangers]

    with tempfile.TemporaryDirectory(prefix="thr_lib_") as tmp:
        lib = FaceLibrary(Path(tmp) / "faces.lance", backend.model_id, backend.embedding_dim)
        for person, embs in enrol_embs.items():
            lib.enroll(person, np.stack(embs), enrol_crops[person], [person] * len(embs))

        def nearest(probes: list[Probe]) -> tuple[list[str | None], np.ndarray]:
            names: list[str | None] = []
            sims = np.full(len(probes), -np.inf)
            for i, pr in enumerate(probes):
                if pr.emb is None:
                    names.append(None)
                    continue
                m = lib.match(pr.emb, threshold=-2.0)[0]  # always the nearest person
                names.append(m.name)
                sims[i] = m.similarity
            return names, sims

        names, sims = nearest(genuine)
        _, stranger_sims = nearest(stranger_probes)

    # Leave-persons-out: the same nearest-embedding rule in numpy, without the probe's person.
    gallery = np.concatenate([np.stack(e) for e in enrol_embs.values()])
    owners = np.array([p for p, e in enrol_embs.items() for _ in e])
    loo = np.full(len(genuine), -np.inf)
    for i, pr in enumerate(genuine):
        if pr.emb is None:
            continue
        s = gallery @ pr.emb
        # sanity: the full-gallery best equals FaceLibrary.match
        assert abs(float(s.max()) - sims[i]) < 1e-4, (pr.path, float(s.max()), sims[i])
        others = owners != pr.person
        loo[i] = float(s[others].max())

    # 1:1 verification over every pair of labelled images (largest face of each).
    all_probes = {pr.path: pr for pr in genuine + stranger_probes}
    for person, paths in enrol.items():
        for p in paths:
            all_probes[p] = largest_face_probe(backend, data, p, person)
    ok = [pr for pr in all_probes.values() if pr.emb is not None]
    no_face = [pr.path for pr in all_probes.values() if pr.emb is None]
    embs = np.stack([pr.emb for pr in ok])
    pair_matrix = embs @ embs.T
    persons = np.array([pr.person for pr in ok])
    iu = np.triu_indices(len(ok), k=1)
    same = persons[iu[0]] == persons[iu[1]]
    pair_sims = pair_matrix[iu]

    return IdentResult(
        enrolled={p: len(e) for p, e in enrol_embs.items()},
        skipped=skipped,
        genuine=genuine,
        strangers=stranger_probes,
        nearest=names,
        sims=sims,
        stranger_sims=stranger_sims,
        loo_sims=loo,
        ver_genuine=pair_sims[same],
        ver_impostor=pair_sims[~same],
        ver_no_face=no_face,
    )


def identification_curve(r: IdentResult) -> list[dict[str, float]]:
    correct = np.array([n == pr.person for n, pr in zip(r.nearest, r.genuine, strict=True)])
    out = []
    for t in THRESHOLDS:
        acc = r.sims >= t
        out.append(
            {
                "t": float(t),
                "rank1": float(np.mean(correct & acc)),
                "frr": float(np.mean(~acc)),  # includes probes without a face (sim = -inf)
                "misid": float(np.mean(~correct & acc)),
                "stranger_fa": int(np.sum(r.stranger_sims >= t)),
                "loo_fa": float(np.mean(r.loo_sims >= t)),
                "ver_far": float(np.mean(r.ver_impostor >= t)),
                "ver_frr": float(np.mean(r.ver_genuine < t)),
            }
        )
    return out


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """``(threshold, rate)`` where FAR and FRR cross (fine grid)."""
    grid = np.linspace(-0.2, 1.0, 1201)
    far = np.array([np.mean(impostor >= t) for t in grid])
    frr = np.array([np.mean(genuine < t) for t in grid])
    i = int(np.argmin(np.abs(far - frr)))
    return float(grid[i]), float((far[i] + frr[i]) / 2)


def report_identification(r: IdentResult) -> None:
    n_g, n_s = len(r.genuine), len(r.strangers)
    print(f"enrolled persons: {len(r.enrolled)}, enrolment embeddings: {sum(r.enrolled.values())}")
    for p, person, why in r.skipped:
        print(f"  enrolment skipped: {p} ({person}): {why}")
    no_face_g = [pr.path for pr in r.genuine if pr.emb is None]
    no_face_s = [pr.path for pr in r.strangers if pr.emb is None]
    print(f"genuine probes: {n_g} (no face: {len(no_face_g)} {no_face_g})")
    print(f"stranger probes: {n_s} (no face: {len(no_face_s)} {no_face_s}) {[pr.person for pr in r.strangers]}")
    n_loo = int(np.sum(np.isfinite(r.loo_sims)))
    print(f"leave-persons-out impostor probes: {n_loo}")
    print(
        f"verification pairs: genuine {r.ver_genuine.size}, impostor {r.ver_impostor.size} "
        f"(images without a face: {r.ver_no_face})"
    )
    for pr in r.genuine + r.strangers:
        if not pr.largest_is_top_score:
            print(f"  note: largest face is not the top-score face in {pr.path} ({pr.n_faces} faces)")
    wrong = [
        (pr.path, pr.person, n, round(float(s), 3))
        for pr, n, s in zip(r.genuine, r.nearest, r.sims, strict=True)
        if pr.emb is not None and n != pr.person
    ]
    print(f"genuine probes whose nearest person is wrong: {wrong}")
    lows = sorted(((round(float(s), 3), pr.path) for pr, s in zip(r.genuine, r.sims, strict=True)))[:6]
    print(f"lowest genuine similarities: {lows}")
    print(f"stranger best similarities: {[round(float(s), 3) for s in r.stranger_sims]}")
    top_loo = sorted((round(float(s), 3) for s in r.loo_sims), reverse=True)[:8]
    print(f"highest leave-persons-out impostor similarities: {top_loo}")
    t_eer, v_eer = eer(r.ver_genuine, r.ver_impostor)
    print(f"1:1 verification EER {v_eer:.3f} at t={t_eer:.3f}")
    print()
    print("   t  rank1    FRR  misID  strangerFA   LOO-FA  ver-FAR  ver-FRR")
    for row in identification_curve(r):
        print(
            f"{row['t']:.2f}  {row['rank1']:.3f}  {row['frr']:.3f}  {row['misid']:.3f}"
            f"  {row['stranger_fa']:>4d}/{n_s:<4d}  {row['loo_fa']:.3f}"
            f"   {row['ver_far']:.4f}   {row['ver_frr']:.3f}"
        )
    ok = [
        row["t"]
        for row in identification_curve(r)
        if row["rank1"] >= 0.95 and row["loo_fa"] <= 0.05 and row["stranger_fa"] / max(n_s, 1) <= 0.05
    ]
    if ok:
        print(f"\nthresholds with rank-1 >= 95 %, stranger FA <= 5 % and LOO FA <= 5 %: {min(ok):.2f}..{max(ok):.2f}")
    else:
        print("\nno threshold gives rank-1 >= 95 % with stranger / LOO FA <= 5 %")


# ---- detection -----------------------------------------------------------------------------


def load_dlib_boxes(data: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(image path, (K, 4) xyxy boxes, (K,) ignore flags)]`` of training.xml + testing.xml + negatives."""
    out = []
    for name in ("training.xml", "testing.xml"):
        root = ET.parse(data / FACES_DIR / name).getroot()
        for im in root.iter("image"):
            boxes, ignore = [], []
            for b in im.iter("box"):
                x, y = float(b.get("left")), float(b.get("top"))
                boxes.append([x, y, x + float(b.get("width")), y + float(b.get("height"))])
                ignore.append(b.get("ignore", "0") == "1")
            out.append(
                (
                    str(FACES_DIR / im.get("file")),
                    np.array(boxes, dtype=np.float64).reshape(-1, 4),
                    np.array(ignore, bool),
                )
            )
    for neg in NEGATIVE_IMAGES:
        out.append((str(FACES_DIR / neg), np.zeros((0, 4)), np.zeros(0, bool)))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy."""
    a = a[:, None, :]
    b = b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def match_detections(dets: np.ndarray, gts: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching by descending score (``dets`` already sorted): ``(gt matched, det matched)``."""
    gt_hit = np.zeros(len(gts), bool)
    det_hit = np.zeros(len(dets), bool)
    if len(dets) and len(gts):
        ious = iou_matrix(dets, gts)
        for i in range(len(dets)):
            cand = np.where(~gt_hit & (ious[i] >= min_iou))[0]
            if cand.size:
                j = cand[np.argmax(ious[i, cand])]
                gt_hit[j] = det_hit[i] = True
    return gt_hit, det_hit


def run_detection(data: Path) -> list[dict[str, float]]:
    cfg = parse_config({})
    items = load_dlib_boxes(data)
    images = {p: read_image(data / p) for p, _, _ in items}
    rows = []
    for size in (640, 1280):
        for thr in DET_THRESHOLDS:
            backend = create_backend(
                cfg.backend,
                detector_input_size=size,
                score_threshold=float(thr),
                nms_threshold=cfg.nms_threshold,
                threads=1,
            )
            n_gt = hit = hit40 = n_gt40 = hit_all = 0
            fp = fp40 = neg_fp = 0
            min_iou_hit = 1.0
            n_img = 0
            for path, gts, ignore in items:
                dets = backend.detect(images[path])
                boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
                sizes = np.array([d.size for d in dets])
                gt_hit, det_hit = match_detections(boxes, gts, 0.5)
                gt_hit4, _ = match_detections(boxes, gts, 0.4)
                big = (np.minimum(gts[:, 2] - gts[:, 0], gts[:, 3] - gts[:, 1]) >= MIN_GT_SIZE) & ~ignore
                n_gt40 += int(big.sum())
                hit40 += int((gt_hit & big).sum())
                hit += int((gt_hit4 & big).sum())
                n_gt += int((~ignore).sum())
                hit_all += int((gt_hit & ~ignore).sum())
                if len(gts):
                    n_img += 1
                    fp += int((~det_hit).sum())
                    fp40 += int((~det_hit & (sizes >= MIN_GT_SIZE)).sum())
                else:
                    neg_fp += len(dets)
                if len(gts) and len(boxes):
                    best = iou_matrix(gts[big], boxes).max(axis=1) if big.any() else np.array([1.0])
                    min_iou_hit = min(min_iou_hit, float(best.min()))
            rows.append(
                {
                    "size": size,
                    "t": float(thr),
                    "recall40": hit40 / n_gt40,
                    "n_gt40": n_gt40,
                    "recall40_iou04": hit / n_gt40,
                    "recall_all": hit_all / n_gt,
                    "n_gt": n_gt,
                    "fp_per_img": fp / n_img,
                    "fp40_per_img": fp40 / n_img,
                    "n_img": n_img,
                    "neg_fp": neg_fp,
                    "min_best_iou40": min_iou_hit,
                }
            )
    return rows


def report_detection(rows: list[dict[str, float]]) -> None:
    r0 = rows[0]
    print(
        f"dlib faces: {r0['n_img']} annotated images, {r0['n_gt']} GT faces,"
        f" {r0['n_gt40']} of them >= {MIN_GT_SIZE} px; "
        f"negatives: {', '.join(NEGATIVE_IMAGES)}"
    )
    print("size    t  recall>=40@.5  @.4  recall-all@.5  FP/img  FP>=40px/img  dogs-FP  worst-best-IoU(>=40)")
    for r in rows:
        print(
            f"{r['size']:>4d}  {r['t']:.1f}     {r['recall40']:.3f}   {r['recall40_iou04']:.3f}"
            f"     {r['recall_all']:.3f}     {r['fp_per_img']:.2f}       {r['fp40_per_img']:.2f}"
            f"        {r['neg_fp']:d}       {r['min_best_iou40']:.2f}"
        )


def run_lfw(data: Path, size: int = 100) -> list[tuple[float, int, int]]:
    """``[(t, faces detected /100, non-faces with a detection /100)]`` on skimage's lfw_subset.

    The 25x25 grey patches are upscaled (bicubic) to ``size`` x ``size``: YuNet finds almost no
    face at 25 px.
    """
    import cv2

    patches = np.load(data / "skimage_wheel" / "skimage" / "data" / "lfw_subset.npy")
    backend = create_backend(detector_input_size=640, score_threshold=float(DET_THRESHOLDS[0]), threads=1)
    best = []
    for p in patches:
        grey = cv2.resize((np.clip(p, 0, 1) * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        dets = backend.detect(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        best.append(max((d.score for d in dets), default=0.0))
    b = np.array(best)
    # Filtering one low-threshold run is exact: NMS keeps the higher-scored box of any overlap.
    return [(float(t), int((b[:100] >= t).sum()), int((b[100:] >= t).sum())) for t in DET_THRESHOLDS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared/data folder")
    ap.add_argument("--part", choices=("all", "ident", "detect"), default="all")
    args = ap.parse_args(argv)
    if args.part in ("all", "ident"):
        report_identification(run_identification(args.data))
        print()
    if args.part in ("all", "detect"):
        report_detection(run_detection(args.data))
        print("\nlfw_subset upscaled to 100x100:  t  faces/100  non-faces/100")
        for t, f, n in run_lfw(args.data):
            print(f"                                {t:.1f}    {f:>3d}        {n:>3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
