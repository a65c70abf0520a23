"""Memory: where the engine's resident memory goes, per import and per camera, before and after.

- Imports: in a fresh interpreter per engine tree, the modules ``facetrack serve`` loads, imported
  one after the other; each line is the RSS (``/proc/self/status`` VmRSS) they add on top of the
  previous ones (shared dependencies count once, where first imported).
- Cameras: ``facetrack serve`` (real Mosquitto on loopback, HTTP server and local clips on, a clip
  for every alert: cooldown 0) with N cameras each playing the 720p demo clip at ``fps: 10``;
  after ``--warmup`` s, the engine's peak RSS over ``--measure`` s, its CPU (% of one core) and
  every camera's processed frames/s (retained ``state``). Each engine tree (``--before``: an older
  ``addon`` folder; this checkout) and the environment variant (this checkout with glibc's
  default malloc arenas, 8 per core, instead of the 2 it sets) runs the same N in the same run.

Usage: .venv/bin/python benchmarks/bench_memory.py [--before /tmp/facetrack-before/addon]
       [--after addon] [--cameras 1 2 4] [--warmup 20] [--measure 20] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: What ``facetrack serve`` imports, in dependency order (the engine's own modules last).
IMPORTS = (
    "numpy", "cv2", "PIL", "scipy", "supervision", "trackers", "pyarrow", "lancedb", "aiohttp",
    "minio", "paho.mqtt.client", "voluptuous", "yaml", "apprise", "facetrack.library",
    "facetrack.track", "facetrack.record.storage", "facetrack.web.server", "facetrack.service",
)  # fmt: skip

_IMPORT_CODE = r"""
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
rows, prev = [["interpreter", round(rss(), 1)]], rss()
for name in sys.argv[1:]:
    importlib.import_module(name)
    now = rss()
    rows.append([name, round(now - prev, 1)])
    prev = now
rows.append(["total", round(prev, 1)])
print(json.dumps(rows))
"""


def import_breakdown(engine: Path) -> list[list[object]]:
    """``[[module, MB added], ...]`` importing :data:`IMPORTS` in order with ``engine`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(engine)}
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_CODE, *IMPORTS], capture_output=True, text=True, env=env, check=True
    )
    rows: list[list[object]] = json.loads(out.stdout)
    return rows


def serve_run(
    work: Path,
    port: int,
    db: Path,
    clip: Path,
    n: int,
    engine: Path,
    env: dict[str, str],
    warmup: float,
    measure: float,
) -> dict[str, object]:
    """One ``facetrack serve`` with ``n`` cameras on ``clip`` at 10 frames/s: peak RSS, CPU, fps."""
    from bench_service import start_engine, stop
    from mqtt_helpers import Subscriber

    sub = Subscriber(port).start()
    cams = [{"name": f"cam{i}", "source": str(clip), "fps": 10} for i in range(n)]
    proc = start_engine(work, port, db, cams, engine, env)
    ps = psutil.Process(proc.pid)
    try:
        time.sleep(warmup)
        ps.cpu_percent(None)
        t0 = time.time()
        rss = 0
        while time.time() - t0 < measure:
            time.sleep(1)
            rss = max(rss, ps.memory_info().rss)
        cpu = ps.cpu_percent(None)
        fps = {}
        for i in range(n):
            states = sub.find(f"cam{i}/state", lambda m, t0=t0: m.at >= t0 and m.payload["state"] == "online")
            fps[f"cam{i}"] = states[-1].payload["fps"] if states else 0.0
        clips = len(sub.find("/clip"))
    finally:
        stop(proc)
        sub.stop()
    return {
        "cameras": n,
        "rss_mb": round(rss / 2**20),
        "cpu_percent": round(cpu, 1),
        "min_fps": min(fps.values()) if fps else 0.0,
        "clips_stored": clips,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="an older engine tree (its addon folder) run side by side")
    ap.add_argument("--after", type=Path, default=ROOT / "addon", help="the engine tree measured as 'after'")
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--measure", type=float, default=20.0)
    ap.add_argument("--no-arena-variant", action="store_true", help="skip the runs with glibc's default malloc arenas")
    ap.add_argument("--json")
    args = ap.parse_args()

    import compose

    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.recognizer import FaceRecognizer
    from mqtt_helpers import Broker

    variants: list[tuple[str, Path, dict[str, str]]] = []
    if args.before is not None:
        variants.append(("before", args.before.resolve(), {}))
    after = args.after.resolve()
    variants.append(("after", after, {}))
    if not args.no_arena_variant:  # glibc's default: 8 arenas per core (the engine caps them at 2)
        default_arenas = str(8 * (os.cpu_count() or 1))
        variants.append((f"after, MALLOC_ARENA_MAX={default_arenas}", after, {"MALLOC_ARENA_MAX": default_arenas}))
    results: dict[str, object] = {"load_at_start": os.getloadavg()[0], "cpus": os.cpu_count()}
    results["imports_mb"] = {label: import_breakdown(engine) for label, engine, env in variants if not env}
    for label, rows in results["imports_mb"].items():  # type: ignore[attr-defined]
        print(label, "imports:", rows, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    clip = work / "demo.mp4"
    compose.compose(clip)
    db = work / "faces.lance"
    backend = create_backend()
    rec = FaceRecognizer(backend, parse_config({}), FaceLibrary(db, backend.model_id, backend.embedding_dim))
    compose.enrol_demo_people(rec)
    del rec, backend
    broker = Broker(work)
    broker.start()
    runs: dict[str, list[dict[str, object]]] = {}
    try:
        for n in args.cameras:  # the variants side by side for each N
            for label, engine, env in variants:
                row = serve_run(work, broker.port, db, clip, n, engine, env, args.warmup, args.measure)
                runs.setdefault(label, []).append(row)
                print(label, row, flush=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["serve"] = runs
    for label, rows in runs.items():
        by_n = {int(str(r["cameras"])): int(str(r["rss_mb"])) for r in rows}
        if 1 in by_n and len(by_n) > 1:
            top = max(by_n)
            results.setdefault("per_extra_camera_mb", {})[label] = round((by_n[top] - by_n[1]) / (top - 1))  # type: ignore[union-attr]
    results["load_at_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
