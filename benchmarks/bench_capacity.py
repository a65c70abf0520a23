"""Capacity: how many 720p cameras at 10 frames/s one machine sustains with realistic content.

Most cameras of a home watch nothing most of the time, so the mix is mostly idle cameras and a
few busy ones, all 1280x720 played in real time with ``fps: 10``:

- idle, pedestrians: the shared ``vtest.avi`` (OpenCV's sample, people walking far away, faces
  too small to detect), upscaled to 720p;
- idle, still scene: ``demo/background.jpg`` as a 720p video with light temporal noise (a real
  sensor is never perfectly still);
- busy: the demo clip (``demo/compose.py``: enrolled people and a stranger walking by).

Alerts (each with its clip) as the app's defaults: ON_UNKNOWNS, cooldown 60 s; ``--stress-alerts``:
every track of every camera alerts with a clip (ON_ALL, cooldown 0: two libx264 encoders per clip).

For N = ``--start`` .. ``--max`` cameras (``--busy`` of them busy, the others alternating the two
idle kinds), one ``facetrack serve`` per N (real Mosquitto on loopback, HTTP and local clips on):
after ``--warmup`` s, every camera's processed frames/s (its retained ``state``), the engine's CPU
(% of one core) and peak RSS over ``--measure`` s. N is sustained when every camera keeps
>= 9.5 frames/s; the run stops at the first N that is not (unless ``--all``).

Engine options go to every camera with ``--camera-option KEY=VALUE`` (the value is YAML), e.g. the
motion gate's settings, so the same content runs with and without it.

Usage: .venv/bin/python benchmarks/bench_capacity.py [--start 2] [--max 12] [--busy 2]
       [--camera-option detect_fps=2 ...] [--engine OLD/addon] [--json OUT]
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
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "demo"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

VTEST = SHARED / "data/debian_opencv-doc/examples/data/vtest.avi"
#: A camera is sustained at this many processed frames/s or more (of 10).
SUSTAINED_FPS = 9.5


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True)


def make_idle_clips(work: Path) -> dict[str, Path]:
    """The two idle sources as 720p H.264 files in ``work``: ``pedestrians``, ``still``."""
    pedestrians = work / "vtest_720p.mp4"
    _ffmpeg("-i", str(VTEST), "-vf", "scale=1280:720", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "23", "-pix_fmt", "yuv420p", "-an", str(pedestrians))  # fmt: skip
    still = work / "still_720p.mp4"
    _ffmpeg("-loop", "1", "-framerate", "10", "-t", "20", "-i", str(ROOT / "demo" / "background.jpg"),
            "-vf", "scale=1280:720,noise=alls=3:allf=t", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "23", "-pix_fmt", "yuv420p", str(still))  # fmt: skip
    return {"pedestrians": pedestrians, "still": still}


def camera_mix(n: int, busy: int, sources: dict[str, Path], options: dict[str, object]) -> list[dict[str, object]]:
    """``n`` camera configurations: ``busy`` busy ones first, then idle ones alternating the kinds."""
    cams: list[dict[str, object]] = []
    idle = ["pedestrians", "still"]
    for i in range(n):
        kind = "busy" if i < busy else idle[(i - busy) % 2]
        cams.append({"name": f"{kind}{i}", "source": str(sources[kind]), "fps": 10, **options})
    return cams


def parse_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings (YAML values) as a dict."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--camera-option wants KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


#: The app's default alert settings (addon/config.yaml).
APP_ALERTS = {"alert_mode": "ON_UNKNOWNS", "alert_once": True, "cooldown_seconds": 60}


def run_n(
    work: Path,
    port: int,
    db: Path,
    cams: list[dict[str, object]],
    engine: Path | None,
    warmup: float,
    measure: float,
    alerts: dict[str, object] | None = None,
) -> dict[str, object]:
    """One ``facetrack serve`` with ``cams``: frames/s per camera, CPU, peak RSS."""
    from bench_service import start_engine, stop
    from mqtt_helpers import Subscriber

    sub = Subscriber(port).start()
    proc = start_engine(work, port, db, cams, engine, alerts=alerts)
    ps = psutil.Process(proc.pid)
    try:
        time.sleep(warmup)
        ps.cpu_percent(None)
        t0 = time.time()
        rss = 0
        while time.time() - t0 < measure:
            time.sleep(1)
            rss = max(rss, ps.memory_info().rss)
            if proc.poll() is not None:
                raise RuntimeError(f"the engine exited ({proc.returncode}); see {work / 'engine.log'}")
        cpu = ps.cpu_percent(None)
        fps: dict[str, float] = {}
        for cam in cams:
            name = str(cam["name"])
            states = sub.find(f"{name}/state", lambda m, t0=t0: m.at >= t0 and m.payload["state"] == "online")
            fps[name] = float(states[-1].payload["fps"]) if states else 0.0
        alerts_seen, clips = len(sub.find("/alert")), len(sub.find("/clip"))
    finally:
        stop(proc)
        sub.stop()
    by_kind: dict[str, float] = {}
    for name, v in fps.items():
        kind = name.rstrip("0123456789")
        by_kind[kind] = min(by_kind.get(kind, v), v)
    return {
        "cameras": len(cams),
        "min_fps": min(fps.values()),
        "min_fps_by_kind": by_kind,
        "fps": fps,
        "cpu_percent": round(cpu, 1),
        "rss_mb": round(rss / 2**20),
        "alerts": alerts_seen,
        "clips": clips,
        "sustained": min(fps.values()) >= SUSTAINED_FPS,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=int, default=2)
    ap.add_argument("--max", type=int, default=12)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--busy", type=int, default=2, help="busy cameras among the N")
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--measure", type=float, default=20.0)
    ap.add_argument("--camera-option", action="append", default=[], help="KEY=VALUE (YAML) for every camera")
    ap.add_argument("--all", action="store_true", help="go on after the first N not sustained")
    ap.add_argument("--engine", type=Path, help="run this engine source tree (an addon folder) instead")
    ap.add_argument("--stress-alerts", action="store_true", help="every track alerts with a clip (ON_ALL, cooldown 0)")
    ap.add_argument("--json")
    args = ap.parse_args()
    options = parse_options(args.camera_option)

    import compose

    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.recognizer import FaceRecognizer
    from mqtt_helpers import Broker

    work = Path(tempfile.mkdtemp(prefix="bench_capacity_"))
    sources = make_idle_clips(work)
    sources["busy"] = work / "demo.mp4"
    compose.compose(sources["busy"])
    db = work / "faces.lance"
    backend = create_backend()
    rec = FaceRecognizer(backend, parse_config({}), FaceLibrary(db, backend.model_id, backend.embedding_dim))
    compose.enrol_demo_people(rec)
    del rec, backend
    broker = Broker(work)
    broker.start()
    results: dict[str, object] = {
        "load_at_start": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "engine": str(args.engine or ROOT / "addon"),
        "camera_options": options,
        "busy": args.busy,
        "alerts": "ON_ALL, cooldown 0" if args.stress_alerts else APP_ALERTS,
    }
    rows: list[dict[str, object]] = []
    try:
        for n in range(args.start, args.max + 1, args.step):
            cams = camera_mix(n, min(args.busy, n), sources, options)
            alerts = None if args.stress_alerts else APP_ALERTS
            row = run_n(work, broker.port, db, cams, args.engine, args.warmup, args.measure, alerts)
            rows.append(row)
            print({k: v for k, v in row.items() if k != "fps"}, flush=True)
            if not row["sustained"] and not args.all:
                break
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["capacity"] = rows
    results["max_cameras_sustained"] = max((int(str(r["cameras"])) for r in rows if r["sustained"]), default=0)
    results["load_at_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
