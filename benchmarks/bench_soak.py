"""Soak: does the service's memory stay flat? Two cameras replaying real clips (the street clip,
with many short tracks, and the demo clip) for ``--minutes``, every alert with its clip (alert
mode ON_ALL, cooldown 0); the engine's RSS is sampled every 10 s and a least-squares slope is
fitted over the second half (after warm-up).

``--engine OLD/addon`` runs another engine tree (the "before" of a comparison; run both at once,
one soak each, so they share the machine's load); ``--fps`` caps every camera (default: the
clips' own rates).

Usage: .venv/bin/python benchmarks/bench_soak.py [--minutes 10] [--engine OLD/addon] [--fps 10]
       [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "demo"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--engine", type=Path, help="run this engine source tree (an addon folder) instead")
    ap.add_argument("--fps", type=float, help="fps cap of both cameras")
    ap.add_argument("--json")
    args = ap.parse_args()
    import compose

    from bench_service import start_engine, stop
    from mqtt_helpers import Broker, Subscriber

    work = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    clip = work / "demo.mp4"
    compose.compose(clip)
    street = SHARED / "data/facenet_pytorch/examples/video.mp4"
    broker = Broker(work)
    broker.start()
    sub = Subscriber(broker.port).start()
    cams: list[dict[str, object]] = [{"name": "street", "source": str(street)}, {"name": "demo", "source": str(clip)}]
    for cam in cams:
        if args.fps:
            cam["fps"] = args.fps
    proc = start_engine(work, broker.port, work / "faces.lance", cams, args.engine)
    ps = psutil.Process(proc.pid)
    samples: list[tuple[float, float]] = []
    t0 = time.time()
    try:
        while time.time() - t0 < args.minutes * 60:
            time.sleep(10)
            samples.append((time.time() - t0, ps.memory_info().rss / 2**20))
            print(f"{samples[-1][0]:7.0f} s  RSS {samples[-1][1]:.1f} MB", flush=True)
    finally:
        stop(proc)
        sub.stop()
        broker.stop()
    tracks = len([m for m in sub.find("/track") if m.payload["type"] == "track_started"])
    alerts = len(sub.find("/alert"))
    clips = len(sub.find("/clip"))
    half = samples[len(samples) // 2 :]
    t, r = np.array([s[0] for s in half]), np.array([s[1] for s in half])
    slope = float(np.polyfit(t, r, 1)[0]) * 3600 if len(half) > 2 else float("nan")
    result = {
        "engine": str(args.engine or ROOT / "addon"),
        "minutes": args.minutes,
        "load_at_end": os.getloadavg()[0],
        "tracks_started": tracks,
        "alerts": alerts,
        "clips_stored": clips,
        "rss_mb_first": round(samples[0][1], 1),
        "rss_mb_last": round(samples[-1][1], 1),
        "rss_mb_max": round(max(s[1] for s in samples), 1),
        "slope_mb_per_hour_second_half": round(slope, 1),
        "rss_mb_samples": [round(r, 1) for _, r in samples],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
