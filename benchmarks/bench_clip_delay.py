"""Clip storage delay: from an alert to its clip being stored (the ``clip`` message), with the
clip settings in seconds (defaults: 10 s clips, 2 s pre-roll).

The real ``facetrack serve`` on the demo clip (720p, 25 fps, real-time pacing; ``--cameras`` of
them, to load the machine with the engine's own work), every face alerting (ON_ALL, cooldown 0:
each replay alerts again), a real Mosquitto on loopback. For every alert: the time from the alert
to the ``clip`` message of the clip that holds it (its own, or the one it joined: the clip id in
its ``clip_url``), and for the alerts that started their clip, how long after their post-roll
(8 s with the defaults) that was: the clip's last frames, encoding and storing. ``--stress N``
runs ``stress-ng --cpu N`` beside it (if installed).

Usage: .venv/bin/python benchmarks/bench_clip_delay.py [--seconds 90] [--cameras 1] [--stress 0]
       [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The default clip (10 s) minus its default pre-roll (2 s).
POST_ROLL_S = 8.0
sys.path.insert(0, str(ROOT / "demo"))
sys.path.insert(0, str(ROOT / "tests"))


def _summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    values = sorted(values)
    return {
        "n": len(values),
        "min": round(values[0], 2),
        "p50": round(statistics.median(values), 2),
        "max": round(values[-1], 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--stress", type=int, default=0, help="stress-ng --cpu N beside the engine (0: none)")
    ap.add_argument("--json")
    args = ap.parse_args()

    import compose

    from bench_service import start_engine, stop
    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.recognizer import FaceRecognizer
    from mqtt_helpers import Broker, Subscriber

    work = Path(tempfile.mkdtemp(prefix="bench_clip_delay_"))
    clip = work / "demo.mp4"
    compose.compose(clip)
    db = work / "faces.lance"
    backend = create_backend()
    rec = FaceRecognizer(backend, parse_config({}), FaceLibrary(db, backend.model_id, backend.embedding_dim))
    compose.enrol_demo_people(rec)
    broker = Broker(work)
    broker.start()
    stress = None
    if args.stress:
        if shutil.which("stress-ng") is None:
            print("stress-ng is not installed: no extra load", flush=True)
        else:
            stress = subprocess.Popen(
                ["stress-ng", "--cpu", str(args.stress), "--timeout", f"{int(args.seconds) + 60}s"]
            )
    results: dict[str, Any] = {"cameras": args.cameras, "stress_cpu": args.stress if stress else 0}
    sub = Subscriber(broker.port).start()
    # The clip defaults: 10 s, 2 s pre-roll.
    proc = start_engine(work, broker.port, db, [{"name": f"cam{i}", "source": str(clip)} for i in range(args.cameras)])
    loads = []
    try:
        t0 = time.time()
        while time.time() - t0 < args.seconds:
            time.sleep(5)
            loads.append(os.getloadavg()[0])
        # The clips of the last alerts: let them finish (10 s + encoding).
        last_alert = max((m.at for m in sub.find("", lambda m: m.topic.endswith("/alert"))), default=0.0)
        while time.time() < last_alert + 40 and proc.poll() is None:
            time.sleep(1)
    finally:
        stop(proc)
        if stress is not None:
            stress.terminate()
            stress.wait(10)
        sub.stop()
        broker.stop()
    clips = {m.payload["clip_id"]: m for m in sub.find("", lambda m: m.topic.endswith("/clip"))}
    delays, after_end, missing = [], [], 0
    for m in sub.find("", lambda m: m.topic.endswith("/alert")):
        a = m.payload
        clip_id = a["clip_url"].split("?")[0].split("/")[-2] if a["clip_url"] else None
        stored = clips.get(clip_id) if clip_id else None
        if stored is None:
            missing += 1
            continue
        delay = stored.at - m.at
        delays.append(delay)
        if stored.payload["alert_id"] == a["alert_id"]:
            after_end.append(delay - POST_ROLL_S)
    fps = [m.payload["fps"] for m in sub.find("", lambda m: m.topic.endswith("/state")) if m.payload["fps"]]
    results.update(
        alerts=len(delays) + missing,
        alerts_without_stored_clip=missing,
        clips=len(clips),
        alert_to_clip_stored_s=_summary(delays),
        stored_after_post_roll_s=_summary(after_end),
        clip_duration_s=_summary([m.payload["duration_s"] for m in clips.values()]),
        clip_frames=_summary([float(m.payload["frames"]) for m in clips.values()]),
        processing_fps=_summary(fps),
        load_1min=_summary(loads),
        cpu_count=os.cpu_count(),
    )
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
