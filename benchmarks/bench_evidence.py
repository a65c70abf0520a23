"""CPU cost of evidence per camera: clip recording, and the live stream watched or not.

One camera (the 720p demo clip at 25 fps, real-time pacing), the real ``facetrack serve`` and a
real Mosquitto on loopback; for each mode the CPU time of the engine and every process it or the
publisher started (ffmpeg encoders) over ``--seconds``, as % of one core:

- ``baseline``: no HTTP server, no clips;
- ``stream not watched``: HTTP server on, nobody watching;
- ``MJPEG watched``: one client reading the MJPEG stream;
- ``RTSP watched``: the on-demand publisher (``python -m facetrack.record.rtsp``) pushing H.264 to
  a listening RTSP peer (ffmpeg, which only receives; its CPU is not counted);
- ``clips``: a clip for every alert (ON_ALL, cooldown 0: about 4 alerts per 10.4 s replay).

Usage: .venv/bin/python benchmarks/bench_evidence.py [--seconds 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
sys.path.insert(0, str(ROOT / "tests"))


def cpu_split(engine: psutil.Process, others: list[psutil.Process]) -> tuple[float, float, float]:
    """CPU seconds so far of (the engine process itself, its children such as clip encoders,
    ``others`` such as the RTSP publisher). Children that ended are counted through
    ``cpu_times().children_*`` of the engine (reaped processes)."""
    t = engine.cpu_times()
    own = t.user + t.system
    children = t.children_user + t.children_system
    for c in engine.children(recursive=True):
        try:
            ct = c.cpu_times()
            children += ct.user + ct.system
        except psutil.NoSuchProcess:
            pass
    other = 0.0
    for p in others:
        try:
            pt = p.cpu_times()
            other += pt.user + pt.system
        except psutil.NoSuchProcess:
            pass
    return own, children, other


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=12.0)
    ap.add_argument(
        "--modes",
        default="baseline,stream not watched,MJPEG watched,RTSP watched,clips",
        help="comma list of the modes to run",
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    import compose

    from mqtt_helpers import Broker, Subscriber, free_port

    work = Path(tempfile.mkdtemp(prefix="bench_evidence_"))
    clip = work / "demo.mp4"
    compose.compose(clip)
    broker = Broker(work)
    broker.start()
    results = []
    try:
        for mode in args.modes.split(","):
            http_port = free_port()
            cfg = {
                "db_path": str(work / f"db-{len(results)}" / "faces.lance"),
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": f"ev-{len(results)}"},
                "alerts": {"alert_mode": "ON_ALL", "cooldown_seconds": 0},
                "cameras": [{"name": "door", "source": str(clip)}],
                "http": {"enabled": mode != "baseline" and mode != "clips", "host": "127.0.0.1", "port": http_port},
                "clips": {"enabled": mode == "clips", "storage": {"path": str(work / "clips")}},
            }
            if mode == "clips":
                cfg["http"] = {"enabled": True, "host": "127.0.0.1", "port": http_port}
            path = work / "cfg.yaml"
            path.write_text(yaml.safe_dump(cfg))
            sub = Subscriber(broker.port).start()
            engine = subprocess.Popen([sys.executable, "-m", "facetrack", "serve", "--config", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            extra: list[subprocess.Popen[bytes]] = []
            stop = threading.Event()
            try:
                state = sub.wait_for("door/state", lambda m: m.payload["state"] == "online", timeout=60)[-1].payload
                if mode == "MJPEG watched":

                    def reader(url: str = state["mjpeg_url"], stop: threading.Event = stop) -> None:
                        with urllib.request.urlopen(url, timeout=30) as r:
                            while not stop.is_set():
                                r.read(65536)

                    threading.Thread(target=reader, daemon=True).start()
                if mode == "RTSP watched":
                    port = free_port()
                    extra.append(
                        subprocess.Popen(
                            [
                                "ffmpeg",
                                "-loglevel",
                                "error",
                                "-rtsp_flags",
                                "listen",
                                "-i",
                                f"rtsp://127.0.0.1:{port}/door",
                                "-c",
                                "copy",
                                "-f",
                                "null",
                                "-",
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
                    time.sleep(0.5)
                    extra.append(subprocess.Popen(
                        [sys.executable, "-m", "facetrack.record.rtsp", "--config", str(path), "--camera", "door",
                         "--rtsp-url", f"rtsp://127.0.0.1:{port}/door"]))  # fmt: skip
                time.sleep(args.warmup)
                eng = psutil.Process(engine.pid)
                others = [psutil.Process(p.pid) for p in extra[1:]]
                c0, t0 = cpu_split(eng, others), time.monotonic()
                n0 = len(sub.find("door/clip"))
                time.sleep(args.seconds)
                c1, t1 = cpu_split(eng, others), time.monotonic()
                pct = [round(100 * (b - a) / (t1 - t0), 1) for a, b in zip(c0, c1, strict=True)]
                row = {"mode": mode, "engine_cpu_pct": pct[0], "clip_encoders_cpu_pct": pct[1],
                       "rtsp_publisher_cpu_pct": pct[2], "total_cpu_pct": round(sum(pct), 1),
                       "clips_stored": len(sub.find("door/clip")) - n0}  # fmt: skip
                results.append(row)
                print(row, flush=True)
            finally:
                stop.set()
                for p in extra[::-1]:
                    p.terminate()
                engine.terminate()
                engine.wait(30)
                for p in extra:
                    p.wait(10)
                sub.stop()
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
