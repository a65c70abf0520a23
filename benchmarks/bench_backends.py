"""OpenCV vs DeGirum (ONNX/CPU) backends side by side: frames/s and CPU-seconds per frame.

Each backend runs in its own fresh process over the multi-face clip (1920x1080, 105 frames): per
frame, detection of every face and the embedding of every face (the work of a tracker that embeds
every face every frame: the worst case). Two modes: ``frame`` (``detect`` + ``embed`` one frame at
a time, as the engine's camera loop does) and, for DeGirum, ``batch`` (``detect_batch`` over
``--batch`` frames then their crops, i.e. ``predict_batch`` with several inferences in flight,
which is how an accelerator or AI server is kept busy). CPU time is the process's user + system
time over all threads (the PySDK runs inference in its own threads).

    .venv/bin/python benchmarks/bench_backends.py --json benchmarks/results/backends.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, Clock, emit_result, environment, markdown_table, run_worker, write_json

VIDEO = DATA / "facenet_pytorch" / "examples" / "video.mp4"


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from facetrack.camera import open_source
    from facetrack.config import parse_config
    from facetrack.inference import backend_from_config

    backend = backend_from_config(parse_config({"backend": spec["backend"]}))
    with open_source(str(VIDEO)) as video:
        frames = [f for _, _, f in video.frames()][: spec["frames"]]
    # Warm-up (model load, first-inference allocations) outside the measurement.
    backend.embed(frames[0], backend.detect(frames[0]))
    faces = 0
    clock = Clock.now()
    if spec["mode"] == "frame":
        for f in frames:
            dets = backend.detect(f)
            emb = backend.embed(f, dets)
            faces += len(emb)
    else:
        bs = spec["batch"]
        for i in range(0, len(frames), bs):
            chunk = frames[i : i + bs]
            per_frame = backend.detect_batch(chunk)  # type: ignore[attr-defined]
            crops = [backend.aligned_crop(f, d) for f, dets in zip(chunk, per_frame, strict=True) for d in dets]
            if crops:
                faces += len(backend.embed_crops(crops))  # type: ignore[attr-defined]
    wall, cpu = clock.since()
    n = len(frames)
    return {
        "backend": spec["backend"],
        "mode": spec["mode"],
        "frames": n,
        "faces": faces,
        "fps": n / wall,
        "cpu_s_per_frame": cpu / n,
        "ms_per_frame": 1000 * wall / n,
        "faces_per_frame": faces / n,
        "checksum": float(np.round(faces, 0)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=105)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        emit_result(_worker(json.loads(args.worker)))
        return
    runs = [
        {"backend": "opencv", "mode": "frame"},
        {"backend": "degirum", "mode": "frame"},
        {"backend": "degirum", "mode": "batch"},
    ]
    results = [run_worker(__file__, {**r, "frames": args.frames, "batch": args.batch}) for r in runs]
    rows = [
        [r["backend"], r["mode"], r["frames"], r["faces_per_frame"], r["fps"], r["ms_per_frame"], r["cpu_s_per_frame"]]
        for r in results
    ]
    print(markdown_table(["backend", "mode", "frames", "faces/frame", "frames/s", "ms/frame", "CPU-s/frame"], rows))
    write_json(args.json, {"environment": environment(), "batch": args.batch, "results": results})


if __name__ == "__main__":
    main()
