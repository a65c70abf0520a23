#!/usr/bin/env python
"""Compose a turned-face test clip with exact ground truth from the labelled stills of ``shared/data``.

Faces of the query images of the enrolled people (the suggested split of ``shared/data/README.md``,
see ``threshold_curve.suggested_split``) are pasted over the real street background of
``debian_opencv-doc/examples/data/vtest.avi`` (its frames play on, pedestrians walk; centre 4:3 ->
16:9 crop, scaled to the clip size), and the result is encoded with ffmpeg (libx264, ``--crf``)
so the compression damage is real.

Which stills (per enrolled person, by the yaw ratio ``facetrack.quality.landmark_geometry`` of the
largest confident face of each query image): the ``--turned`` query images of highest |yaw|
(the second one only when its |yaw| >= ``MIN_SECOND_TURNED_YAW``), plus, for every
``FRONTAL_EVERY``-th person, its most frontal query image (|yaw| < ``FRONTAL_MAX_YAW``); and every
stranger (single-image person), who must come back unknown, plus ``EXTRA_STRANGERS`` (a profile).

Each still becomes a *segment*: the face region (detection box enlarged ``ENLARGE`` times, a
feathered elliptical mask, so hair, neck and some background come along) shown for
``--segment-seconds`` at a face size drawn from ``FACE_PX`` (shorter side of the detection box,
pixels), drifting 60-140 px and scaling by +-20 % over the segment, fading in and out over
``FADE_FRAMES`` frames. Segments run in ``GRID`` cells of the frame (several faces at once, no
overlap between cells), one after another in each cell with a ``--gap-seconds`` pause (longer
than the tracker's default ``lost_track_seconds`` of 1 s, so a cell's next person starts a new
track), the cells staggered in time.

Ground truth (``<name>.json`` next to the video): per segment the person, role (``enrolled`` /
``stranger``), pose (``turned`` / ``frontal`` / ``stranger``), the source image, its yaw ratio
and face size, the first and last frame, and the face's box (the still's detection box carried
through the same scale and translation, ``[x1, y1, x2, y2]`` pixels, clipped to the frame) on
every frame of the segment. Deterministic for a given ``--seed`` (and OpenCV / ffmpeg build).

Usage::

    PYTHONPATH=addon .venv/bin/python benchmarks/compose_clip.py --out /tmp/turned_clip

The engine (detector, yaw ratio) and OpenCV are imported only inside the functions that need them,
so the pure helpers (:func:`iou`, :func:`plan_segments`) can be imported by a parent process
that must stay small.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA

BACKGROUND = Path("debian_opencv-doc/examples/data/vtest.avi")
#: Face region pasted: the detection box's longer side times this (a square patch).
ENLARGE = 2.2
#: Shorter side of the pasted face's detection box in the clip, pixels (uniform draw).
FACE_PX = (80, 160)
#: Frames of alpha ramp when a face appears and disappears (1/4, 2/4, 3/4).
FADE_FRAMES = 3
#: Cells of the frame, (columns, rows): one face at a time per cell.
GRID = (3, 2)
#: A second turned image of a person is used only when it is at least this turned (|yaw| ratio).
MIN_SECOND_TURNED_YAW = 0.1
#: Every FRONTAL_EVERY-th enrolled person (sorted by name) also appears in its most frontal query
#: image, when that image's |yaw| is below FRONTAL_MAX_YAW.
FRONTAL_EVERY = 3
FRONTAL_MAX_YAW = 0.1
#: Extra strangers beyond labels.csv: scikit-image's ``camera.png`` is a man in profile (|yaw|
#: ratio about 0.67, detector score 0.89), none of the labelled people: a turned stranger, the
#: hard case for "accept no stranger" that the labelled stills (|yaw| <= 0.27) do not have.
EXTRA_STRANGERS = (("skimage_wheel/skimage/data/camera.png", "skimage_cameraman"),)
#: A face must score at least this to be the still's face (FaceRecognizer's enrolment score).
CONFIDENT_SCORE = 0.9


@dataclass(frozen=True, slots=True)
class Source:
    """A still whose face becomes a segment.

    ``box`` is the face's detection box in the still, ``[x1, y1, x2, y2]`` pixels; ``yaw`` the
    signed yaw ratio of that detection (0 frontal, about +-0.5 profile).
    """

    person: str
    role: str  # "enrolled" or "stranger"
    pose: str  # "turned", "frontal" or "stranger"
    path: str  # relative to the data folder
    box: tuple[float, float, float, float]
    yaw: float


@dataclass(frozen=True, slots=True)
class Plan:
    """Where and when a :class:`Source` is shown: ``cell`` index, first and last frame (inclusive),
    face size (px), start centre and drift (px, over the segment), scale at the end (at the start 1)."""

    source: Source
    cell: int
    first: int
    last: int
    face_px: float
    start: tuple[float, float]
    drift: tuple[float, float]
    end_scale: float


# ---- pure helpers -----------------------------------------------------------------------------


def iou(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes (0 when either is empty)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def plan_segments(
    sources: list[Source],
    *,
    fps: float,
    width: int,
    height: int,
    segment_seconds: float,
    gap_seconds: float,
    seed: int,
    grid: tuple[int, int] = GRID,
) -> tuple[list[Plan], int]:
    """Deal ``sources`` (shuffled with ``seed``) to the cells, each to the cell free first;
    ``(plans, total frames)``.

    Cell ``k`` starts ``k * 0.6 s`` late so that faces do not all appear at once. A person is never
    on screen twice at once: a cell takes the next source whose person is not shown (nor in the
    pause after) at that time, or waits.
    """
    rng = random.Random(seed)
    remaining = list(sources)
    rng.shuffle(remaining)
    cols, rows = grid
    cw, ch = width / cols, height / rows
    seg = max(round(segment_seconds * fps), 1)
    gap = round(gap_seconds * fps)
    next_free = [round(k * 0.6 * fps) for k in range(cols * rows)]
    plans: list[Plan] = []
    while remaining:
        cell = min(range(len(next_free)), key=lambda k: (next_free[k], k))
        first = next_free[cell]
        busy = {p.source.person for p in plans if p.last + gap >= first}
        src = next((x for x in remaining if x.person not in busy), None)
        if src is None:  # everyone left is on screen: this cell waits a frame
            next_free[cell] += 1
            continue
        remaining.remove(src)
        next_free[cell] = first + seg + gap
        face = rng.uniform(*FACE_PX)
        cx0, cy0 = (cell % cols) * cw, (cell // cols) * ch
        start = (cx0 + cw * rng.uniform(0.35, 0.65), cy0 + ch * rng.uniform(0.4, 0.6))
        dist = rng.uniform(60, 140)
        angle = rng.uniform(0, 2 * math.pi)
        drift = (dist * math.cos(angle), dist * math.sin(angle) * 0.5)
        plans.append(Plan(src, cell, first, first + seg - 1, face, start, drift, rng.uniform(0.8, 1.2)))
    total = max((p.last for p in plans), default=-1) + 1 + gap
    return plans, total


def patch_geometry(box: tuple[float, float, float, float], enlarge: float = ENLARGE) -> tuple[float, float, float]:
    """``(centre x, centre y, side)`` of the square patch around a detection box (still pixels)."""
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2, enlarge * max(x2 - x1, y2 - y1)


def frame_placement(plan: Plan, frame: int) -> tuple[int, int, int, float]:
    """``(left, top, side, alpha)`` of ``plan``'s patch in ``frame`` (integer pixels)."""
    n = max(plan.last - plan.first, 1)
    t = (frame - plan.first) / n
    x1, y1, x2, y2 = plan.source.box
    _, _, side0 = patch_geometry(plan.source.box)
    face_short = min(x2 - x1, y2 - y1)
    scale = 1.0 + (plan.end_scale - 1.0) * t
    side = max(round(side0 * plan.face_px / face_short * scale), 8)
    cx = plan.start[0] + plan.drift[0] * t
    cy = plan.start[1] + plan.drift[1] * t
    k_in = frame - plan.first + 1
    k_out = plan.last - frame + 1
    alpha = min(1.0, k_in / (FADE_FRAMES + 1), k_out / (FADE_FRAMES + 1))
    return round(cx - side / 2), round(cy - side / 2), side, alpha


def gt_box(plan: Plan, frame: int, width: int, height: int) -> list[float]:
    """The face's box in ``frame``: the still's detection box through the patch's placement,
    clipped to the frame, ``[x1, y1, x2, y2]`` pixels (1 decimal)."""
    left, top, side, _ = frame_placement(plan, frame)
    pcx, pcy, pside = patch_geometry(plan.source.box)
    k = side / pside
    x1, y1, x2, y2 = plan.source.box
    out = [
        left + (x1 - (pcx - pside / 2)) * k,
        top + (y1 - (pcy - pside / 2)) * k,
        left + (x2 - (pcx - pside / 2)) * k,
        top + (y2 - (pcy - pside / 2)) * k,
    ]
    out = [
        min(max(out[0], 0.0), width),
        min(max(out[1], 0.0), height),
        min(max(out[2], 0.0), width),
        min(max(out[3], 0.0), height),
    ]
    return [round(v, 1) for v in out]


# ---- engine-side helpers (import OpenCV and facetrack) ----------------------------------------


def _default_backend() -> Any:
    from facetrack.config import parse_config
    from facetrack.inference import create_backend

    cfg = parse_config({})
    opts: dict[str, Any] = {
        "detector_input_size": cfg.detector_input_size,
        "score_threshold": cfg.detection_score_threshold,
        "nms_threshold": cfg.nms_threshold,
    }
    try:
        return create_backend(cfg.backend, threads=1, **opts)
    except TypeError:  # an engine tree without the threads option
        return create_backend(cfg.backend, **opts)


def still_face(backend: Any, image: Any) -> Any | None:
    """The still's face: the largest detection scoring >= ``CONFIDENT_SCORE`` (else the largest), or None."""
    dets = backend.detect(image)
    if not dets:
        return None
    confident = [d for d in dets if d.score >= CONFIDENT_SCORE] or dets
    return max(confident, key=lambda d: d.size)


def select_sources(data: Path, turned: int = 2, backend: Any = None) -> list[Source]:
    """The stills of the clip (see the module docstring), by the suggested split."""
    from facetrack.images import read_image
    from facetrack.quality import landmark_geometry
    from threshold_curve import load_labels, suggested_split

    backend = backend or _default_backend()
    enrol, queries, strangers = suggested_split(load_labels(data))

    def measure(path: str) -> tuple[tuple[float, float, float, float], float] | None:
        det = still_face(backend, read_image(data / path))
        if det is None:
            return None
        box = tuple(float(v) for v in det.box)
        return (box[0], box[1], box[2], box[3]), float(landmark_geometry(det)[0])

    by_person: dict[str, list[tuple[str, tuple[float, float, float, float], float]]] = {}
    for path, person in queries:
        m = measure(path)
        if m is not None:
            by_person.setdefault(person, []).append((path, m[0], m[1]))
    out: list[Source] = []
    for i, person in enumerate(sorted(enrol)):
        imgs = sorted(by_person.get(person, []), key=lambda x: (-abs(x[2]), x[0]))
        for j, (path, box, yaw) in enumerate(imgs[:turned]):
            if j == 0 or abs(yaw) >= MIN_SECOND_TURNED_YAW:
                out.append(Source(person, "enrolled", "turned", path, box, yaw))
        frontal = min(imgs, key=lambda x: (abs(x[2]), x[0]), default=None)
        if (
            i % FRONTAL_EVERY == 0
            and frontal is not None
            and abs(frontal[2]) < FRONTAL_MAX_YAW
            and all(s.path != frontal[0] for s in out)
        ):
            out.append(Source(person, "enrolled", "frontal", frontal[0], frontal[1], frontal[2]))
    for path, person in [*strangers, *((p, q) for p, q in EXTRA_STRANGERS if (data / p).is_file())]:
        m = measure(path)
        if m is not None:
            out.append(Source(person, "stranger", "stranger", path, m[0], m[1]))
    return out


def _patch_and_mask(image: Any, box: tuple[float, float, float, float], side: int) -> tuple[Any, Any]:
    """The square face patch of ``image`` resized to ``side`` px and its feathered elliptical alpha
    mask (0 where the patch leaves the still), ``((side, side, 3) uint8, (side, side) float32)``."""
    import cv2
    import numpy as np

    cx, cy, s = patch_geometry(box)
    k = side / s
    # Affine map still -> patch: scale k around the patch's top-left corner.
    m = np.array([[k, 0.0, -(cx - s / 2) * k], [0.0, k, -(cy - s / 2) * k]], dtype=np.float64)
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    patch = cv2.warpAffine(image, m, (side, side), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    # Outside the still there is nothing to paste (a reflected border would add mirrored faces).
    inside = cv2.warpAffine(
        np.ones(image.shape[:2], np.float32), m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    ellipse = np.zeros((side, side), np.float32)
    cv2.ellipse(ellipse, (side // 2, side // 2), (int(side * 0.40), int(side * 0.46)), 0, 0, 360, 1.0, -1)
    kz = max(int(side * 0.12) | 1, 3)
    mask = cv2.GaussianBlur(ellipse * inside, (kz, kz), 0)
    return patch, mask


def background_frames(data: Path, width: int, height: int) -> Any:
    """Endless generator of vtest.avi frames (looping), centre-cropped to ``width:height`` and scaled."""
    import cv2

    while True:
        cap = cv2.VideoCapture(str(data / BACKGROUND))
        got = False
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            got = True
            h, w = frame.shape[:2]
            ch = min(h, round(w * height / width))
            cw = min(w, round(ch * width / height))
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            yield cv2.resize(frame[y0 : y0 + ch, x0 : x0 + cw], (width, height), interpolation=cv2.INTER_LINEAR)
        cap.release()
        if not got:
            raise RuntimeError(f"cannot read background video {data / BACKGROUND}")


def compose(
    out_dir: Path,
    data: Path = DATA,
    *,
    sources: list[Source] | None = None,
    name: str = "turned_clip",
    width: int = 1280,
    height: int = 720,
    fps: float = 10.0,
    segment_seconds: float = 2.5,
    gap_seconds: float = 1.5,
    crf: int = 23,
    seed: int = 15,
    turned: int = 2,
) -> tuple[Path, Path]:
    """Compose the clip into ``out_dir``; ``(video path, ground-truth JSON path)``.

    Raises:
        RuntimeError: no source still, or ffmpeg / the background video failed.
    """
    import cv2
    import numpy as np

    from facetrack.images import read_image

    if sources is None:
        sources = select_sources(data, turned)
    if not sources:
        raise RuntimeError("no source still with a face")
    plans, total = plan_segments(
        sources,
        fps=fps,
        width=width,
        height=height,
        segment_seconds=segment_seconds,
        gap_seconds=gap_seconds,
        seed=seed,
    )
    stills = {p.source.path: read_image(data / p.source.path) for p in plans}
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"{name}.mp4"
    gt_path = out_dir / f"{name}.json"
    cmd = [
        "ffmpeg", "-y", "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
        "-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-threads", "1", "-movflags", "+faststart", str(video),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    boxes: dict[int, list[list[float]]] = {i: [] for i in range(len(plans))}
    bg = background_frames(data, width, height)
    try:
        for f in range(total):
            frame = next(bg).astype(np.float32)
            for i, p in enumerate(plans):
                if not p.first <= f <= p.last:
                    continue
                left, top, side, alpha = frame_placement(p, f)
                patch, mask = _patch_and_mask(stills[p.source.path], p.source.box, side)
                x0, y0 = max(left, 0), max(top, 0)
                x1, y1 = min(left + side, width), min(top + side, height)
                if x1 > x0 and y1 > y0:
                    a = (mask[y0 - top : y1 - top, x0 - left : x1 - left] * alpha)[..., None]
                    src = patch[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
                    frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - a) + src * a
                boxes[i].append(gt_box(p, f, width, height))
            proc.stdin.write(np.clip(frame + 0.5, 0, 255).astype(np.uint8).tobytes())
        proc.stdin.close()
    finally:
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed (exit {proc.returncode}): {' '.join(cmd)}")
    gt = {
        "video": video.name,
        "width": width,
        "height": height,
        "fps": fps,
        "frames": total,
        "crf": crf,
        "seed": seed,
        "background": str(BACKGROUND),
        "opencv": cv2.__version__,
        "segments": [
            {
                "id": i,
                "person": p.source.person,
                "role": p.source.role,
                "pose": p.source.pose,
                "source": p.source.path,
                "source_yaw": round(p.source.yaw, 4),
                "source_abs_yaw": round(abs(p.source.yaw), 4),
                "face_px": round(p.face_px, 1),
                "cell": p.cell,
                "first_frame": p.first,
                "last_frame": p.last,
                "boxes": boxes[i],
            }
            for i, p in enumerate(plans)
        ],
        "sources": [asdict(s) for s in sources],
    }
    gt_path.write_text(json.dumps(gt, indent=1) + "\n", encoding="utf-8")
    return video, gt_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench/turned_clip"), help="output folder")
    ap.add_argument("--data", type=Path, default=DATA, help="shared/data folder")
    ap.add_argument("--name", default="turned_clip", help="file stem of the video and its JSON")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--segment-seconds", type=float, default=2.5)
    ap.add_argument("--gap-seconds", type=float, default=1.5)
    ap.add_argument("--crf", type=int, default=23, help="libx264 CRF (23: ffmpeg's default quality)")
    ap.add_argument("--turned", type=int, default=2, help="turned query images per enrolled person (max)")
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args(argv)
    video, gt = compose(
        args.out, args.data, name=args.name, width=args.width, height=args.height, fps=args.fps,
        segment_seconds=args.segment_seconds, gap_seconds=args.gap_seconds, crf=args.crf, seed=args.seed,
        turned=args.turned,
    )  # fmt: skip
    meta = json.loads(gt.read_text())
    print(f"{video}: {meta['frames']} frames at {meta['fps']:g} fps, {len(meta['segments'])} segments; truth {gt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
