"""Service benchmark: alert latency over MQTT, and how many 720p cameras at 10 frames/s one
machine sustains. Runs the real ``facetrack serve`` against a real Mosquitto on loopback.

- Latency: the demo clip (720p, 25 fps, paced in real time) replayed for ``--seconds``; every
  alert's latency = the subscriber's receive time - the alert's ``ts`` (the capture time of the
  frame that decided it; camera buffering excluded). Cooldown 0, so each replay alerts again.
- Capacity: N cameras (N = 1, 2, ...) each playing the clip with ``fps: 10``; after a warm-up,
  each camera's processed frames/s from its retained ``state``; N is sustained when every camera
  keeps >= 9.5 frames/s. Also the engine's CPU (% of one core) and RSS.

Usage: .venv/bin/python benchmarks/bench_service.py [--seconds 60] [--max-cameras 6] [--json OUT] [--engine OLD/addon]
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

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
sys.path.insert(0, str(ROOT / "tests"))


def start_engine(
    work: Path,
    port: int,
    db: Path,
    cameras: list[dict[str, object]],
    engine: Path | None = None,
    env: dict[str, str] | None = None,
    alerts: dict[str, object] | None = None,
) -> subprocess.Popen[bytes]:
    """``facetrack serve`` on ``cameras``; ``engine``: run that engine source tree (its ``addon``
    folder) instead of this checkout's; ``env``: extra environment variables (``MALLOC_ARENA_MAX``);
    ``alerts``: the alert settings (default: every track alerts, with a clip: ON_ALL, cooldown 0)."""
    cfg = {
        "db_path": str(db),
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": f"bench-{port}"},
        "alerts": alerts if alerts is not None else {"alert_mode": "ON_ALL", "alert_once": True, "cooldown_seconds": 0},
        "reconnect_max_seconds": 2,
        "cameras": cameras,
        "http": {"host": "127.0.0.1", "port": 0},
        "clips": {"storage": {"path": str(work / "clips")}},
    }
    path = work / "facetrack.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = (work / "engine.log").open("ab")
    extra = {**(env or {}), **({"PYTHONPATH": str(engine)} if engine is not None else {})}
    cmd = [sys.executable, "-m", "facetrack", "serve", "--config", str(path)]
    return subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, **extra} if extra else None)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="latency run length")
    ap.add_argument("--max-cameras", type=int, default=6)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--measure", type=float, default=20.0)
    ap.add_argument("--json")
    ap.add_argument("--engine", type=Path, help="run this engine source tree (an addon folder) instead")
    args = ap.parse_args()

    import compose

    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.recognizer import FaceRecognizer
    from mqtt_helpers import Broker, Subscriber

    work = Path(tempfile.mkdtemp(prefix="bench_service_"))
    clip = work / "demo.mp4"
    compose.compose(clip)
    db = work / "faces.lance"
    backend = create_backend()
    rec = FaceRecognizer(backend, parse_config({}), FaceLibrary(db, backend.model_id, backend.embedding_dim))
    compose.enrol_demo_people(rec)
    broker = Broker(work)
    broker.start()
    results: dict[str, object] = {"load_at_start": os.getloadavg()[0], "engine": str(args.engine or ROOT / "addon")}
    try:
        # ---- alert latency ------------------------------------------------------------------
        sub = Subscriber(broker.port).start()
        proc = start_engine(work, broker.port, db, [{"name": "door", "source": str(clip)}], args.engine)
        time.sleep(args.seconds)
        stop(proc)
        sub.stop()
        lat = sorted((m.at - m.payload["ts"]) * 1000 for m in sub.find("door/alert"))
        if lat:
            q = statistics.quantiles(lat, n=20) if len(lat) > 1 else [lat[0]] * 19
            results["alert_latency_ms"] = {
                "n": len(lat),
                "p50": round(statistics.median(lat), 1),
                "p95": round(q[18], 1),
                "max": round(lat[-1], 1),
            }
        print("alert latency (capture -> subscriber):", results.get("alert_latency_ms"), flush=True)

        # ---- capacity -------------------------------------------------------------------------
        capacity = []
        for n in range(1, args.max_cameras + 1):
            sub = Subscriber(broker.port).start()
            cams = [{"name": f"cam{i}", "source": str(clip), "fps": 10} for i in range(n)]
            proc = start_engine(work, broker.port, db, cams, args.engine)
            ps = psutil.Process(proc.pid)
            time.sleep(args.warmup)
            ps.cpu_percent(None)
            t0 = time.time()
            rss = 0
            while time.time() - t0 < args.measure:
                time.sleep(1)
                rss = max(rss, ps.memory_info().rss)
            cpu = ps.cpu_percent(None)
            fps = {}
            for i in range(n):
                states = sub.find(f"cam{i}/state", lambda m, t0=t0: m.at >= t0 and m.payload["state"] == "online")
                fps[f"cam{i}"] = states[-1].payload["fps"] if states else 0.0
            stop(proc)
            sub.stop()
            ok = all(v >= 9.5 for v in fps.values())
            row = {
                "cameras": n,
                "fps": fps,
                "min_fps": min(fps.values()),
                "cpu_percent": round(cpu, 1),
                "rss_mb": round(rss / 2**20),
                "sustained": ok,
            }
            capacity.append(row)
            print(row, flush=True)
            if not ok:
                break
        results["capacity"] = capacity
        results["max_cameras_at_10fps"] = max((r["cameras"] for r in capacity if r["sustained"]), default=0)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
