"""Re-identification budget: embeddings per tracked face-second, with and without backoff.

Counts (not timings, so the machine's load does not matter) on two real clips whose tracks differ
in length, since the backoff's first second (embed on confirmation, then after 1, 2, 4, 8 frames)
costs the same for every track and dominates short ones:

- ``street``: shared/data facenet_pytorch/examples/video.mp4 (1080p, 4.2 s, many people, tracks
  of 0.5-4 s);
- ``demo``: the composed demo clip (demo/compose.py: 720p, 10.4 s, tracks of 4-7 s).

Usage: .venv/bin/python benchmarks/bench_reid.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "demo"))


def run(path: Path, overrides: dict[str, object], workdir: Path) -> dict[str, float]:
    import compose

    from facetrack.camera import open_source
    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.pipeline import run_pipeline
    from facetrack.recognizer import FaceRecognizer

    cfg = parse_config(overrides)
    backend = create_backend()
    db = workdir / "lib"
    shutil.rmtree(db, ignore_errors=True)
    lib = FaceLibrary(db, backend.model_id, backend.embedding_dim)
    rec = FaceRecognizer(backend, cfg, lib)
    compose.enrol_demo_people(rec)
    faces = [0]

    def count(_index: int, result: Any) -> None:
        faces[0] += len(result.faces)

    # The engine's one frame loop (facetrack.camera.runner), as `facetrack track` runs it.
    summary = run_pipeline(str(path), backend, lib, cfg, on_event=lambda _e: None, on_frame=count)
    with open_source(str(path)) as video:
        face_seconds = faces[0] / video.fps
    return {
        "embeddings": summary.embeddings,
        "tracks": summary.tracks,
        "tracked_face_seconds": round(face_seconds, 2),
        "mean_track_seconds": round(face_seconds / max(summary.tracks, 1), 2),
        "embeddings_per_face_second": round(summary.embeddings / face_seconds, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    import compose

    work = Path(tempfile.mkdtemp(prefix="bench_reid_"))
    demo = work / "demo.mp4"
    compose.compose(demo)
    clips = {"street": SHARED / "data/facenet_pytorch/examples/video.mp4", "demo": demo}
    modes = {"backoff (default)": {}, "every frame": {"reid_expiration_frames": 1}}
    rows = []
    print("| clip | mode | tracks | mean track s | tracked face-s | embeddings | embeddings / face-s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for clip, path in clips.items():
        for mode, over in modes.items():
            r = run(path, over, work)
            rows.append({"clip": clip, "mode": mode, **r})
            print(
                f"| {clip} | {mode} | {r['tracks']} | {r['mean_track_seconds']} | {r['tracked_face_seconds']} "
                f"| {r['embeddings']} | {r['embeddings_per_face_second']} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
