"""Camera-loop cost of clip recording: how long the camera thread spends handing frames to a clip.

The figure ``tests/test_clips.py`` used to assert (now tested as a property, without a clock): with
an encoder slowed to ``--write-ms`` per frame (a slow disk), a camera loop hands ``--frames``
frames of ``--size`` to a recorder that is recording a clip of ``--clip`` frames, as fast as it
can. Reported: the wall time of that hand-over (the camera thread's cost; frames beyond the
encoder's queue are dropped, not waited for), the cost of :meth:`ClipRecorder.start_clip` (it
creates the clip's spool folder and journal on the camera thread), and the frames the clip kept
and dropped. Median of ``--repeat`` runs. No shared data needed; ffmpeg on the PATH.

Usage: .venv/bin/python benchmarks/bench_clips.py [--frames 200] [--clip 150] [--write-ms 20]
       [--size 1280x720] [--repeat 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))


def run_once(frames: int, clip_frames: int, write_ms: float, size: tuple[int, int]) -> dict[str, float]:
    import numpy as np

    from facetrack.record import clips as clips_mod
    from facetrack.record.clips import ClipRecorder
    from facetrack.record.storage import StorageConfig, create_storage, new_clip_id

    original = clips_mod.VideoWriter.write

    def slow(self: Any, f: Any) -> None:
        time.sleep(write_ms / 1000.0)  # a slow disk
        original(self, f)

    clips_mod.VideoWriter.write = slow  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-clips-") as tmp:
            storage = create_storage(StorageConfig(path=f"{tmp}/clips"))
            done = threading.Event()
            kept: dict[str, int] = {}

            def stored(c: Any) -> None:
                kept.update(frames=c.frames, dropped=c.dropped_frames)
                done.set()

            # Frames handed over at 25 frames/s: seconds = frames / 25.
            rec = ClipRecorder("door", storage, clip_frames / 25, 5 / 25, on_stored=stored, spool_dir=f"{tmp}/spool")
            w, h = size
            pictures = [np.full((h, w, 3), i % 255, np.uint8) for i in range(8)]
            rec.add_frame(0, 0.0, pictures[0], [], 25.0)
            t0 = time.perf_counter()
            rec.start_clip(new_clip_id(1795300000.0, "ef" * 16))
            t1 = time.perf_counter()
            for i in range(1, frames):
                rec.add_frame(i, i / 25, pictures[i % 8], [], 25.0)
            t2 = time.perf_counter()
            done.wait(600)
            rec.close()
    finally:
        clips_mod.VideoWriter.write = original  # type: ignore[method-assign]
    return {
        "start_clip_ms": (t1 - t0) * 1000,
        "handover_s": t2 - t1,
        "per_frame_us": (t2 - t1) / max(1, frames - 1) * 1e6,
        "kept_frames": kept.get("frames", 0),
        "dropped_frames": kept.get("dropped", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--clip", type=int, default=150)
    ap.add_argument("--write-ms", type=float, default=20.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    load = os.getloadavg()[0]
    runs = [run_once(args.frames, args.clip, args.write_ms, (w, h)) for _ in range(args.repeat)]
    result = {
        "load_1min_at_start": round(load, 2),
        "frames": args.frames,
        "clip_frames": args.clip,
        "write_ms": args.write_ms,
        "size": args.size,
        **{k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
