"""A hanging RTSP camera beside healthy ones: restart gaps of the healthy cameras and shutdown time.

Runs the real ``facetrack serve`` against a real Mosquitto on loopback with two file cameras
replaying a 1.5 s clip (ffmpeg's test pattern, 320x240, 25 fps), so each restarts every couple of
seconds: state ``offline`` ("source ended"), a 1 s retry delay, reopen, ``online``. Scenarios:

- ``healthy``: the two file cameras alone.
- ``hanging``: plus an ``rtsp://`` camera on 127.0.0.1 that accepts the TCP connection and never
  answers (tests/test_camera_sources.FakeCamera), retried with ``reconnect_max_seconds: 2``.

Figures per scenario: the healthy cameras' restart gaps (receive time of ``offline`` -> the next
``online``, s: median, p90, max) and restarts per minute over ``--seconds``; then SIGTERM while
the engine runs (for ``hanging``: while the stuck camera has a connection attempt open) and the
seconds until the process exits. ``--engine`` picks the engine code (e.g. an untouched copy of
main's ``addon`` folder) by putting it first on the engine's ``PYTHONPATH``.

Usage: .venv/bin/python benchmarks/bench_hanging_source.py [--seconds 90] [--engine PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

HEALTHY = ("door", "yard")


def gaps(messages: list[Any], camera: str) -> list[float]:
    """Seconds from each ``offline`` state of ``camera`` to its next ``online`` state."""
    out, down = [], None
    for m in messages:
        if not m.topic.endswith(f"/{camera}/state") or not isinstance(m.payload, dict):
            continue
        state = m.payload.get("state")
        if state == "offline" and down is None:
            down = m.at
        elif state == "online" and down is not None:
            out.append(m.at - down)
            down = None
    return out


def run(scenario: str, seconds: float, clip: Path, work: Path) -> dict[str, Any]:
    from mqtt_helpers import Broker, Subscriber
    from test_camera_sources import FakeCamera
    from test_service_e2e import Engine

    work.mkdir(parents=True)
    broker = Broker(work)
    broker.start()
    sub = Subscriber(broker.port).start()
    stuck = FakeCamera("hang")
    cameras: list[dict[str, Any]] = [{"name": n, "source": str(clip)} for n in HEALTHY]
    if scenario == "hanging":
        cameras.append({"name": "stuck", "source": stuck.url("admin")})
    engine = Engine(work, broker.port, work / "no-library", clip, cameras=cameras).start()
    try:
        sub.wait_for("facetrack/status", lambda m: m.payload == "online", timeout=120)
        start = time.time()
        time.sleep(seconds)
        if scenario == "hanging":  # stop while an attempt of the stuck camera is open
            stuck.wait(lambda c: bool(c) and c[-1].accepted > time.time() - 5, timeout=120)
        assert engine.proc is not None
        t0 = time.monotonic()
        engine.proc.send_signal(signal.SIGTERM)
        rc = engine.proc.wait(timeout=300)
        shutdown = time.monotonic() - t0
        with sub.cond:
            msgs = [m for m in sub.messages if m.at >= start]
        result: dict[str, Any] = {"scenario": scenario, "exit_code": rc, "shutdown_s": round(shutdown, 2)}
        for cam in HEALTHY:
            g = sorted(gaps(msgs, cam))
            result[cam] = {
                "restarts_per_min": round(len(g) * 60 / seconds, 1),
                "gap_median_s": round(statistics.median(g), 2) if g else None,
                "gap_p90_s": round(g[int(0.9 * (len(g) - 1))], 2) if g else None,
                "gap_max_s": round(g[-1], 2) if g else None,
            }
        result["stuck_attempts"] = len(stuck.connections) if scenario == "hanging" else 0
        return result
    finally:
        engine.kill()
        stuck.close()
        sub.stop()
        broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="measured run per scenario")
    ap.add_argument("--engine", help="folder holding the facetrack package to run (default: this tree)")
    ap.add_argument("--scenarios", default="healthy,hanging")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.engine:
        os.environ["PYTHONPATH"] = os.pathsep.join([args.engine, os.environ.get("PYTHONPATH", "")])
    from _common import environment, markdown_table, write_json
    from test_camera_sources import _make_clip

    work = Path(tempfile.mkdtemp(prefix="bench_hanging_"))
    clip = _make_clip(work / "short.mp4", 1.5)
    results = [run(s, args.seconds, clip, work / s) for s in args.scenarios.split(",")]
    rows = [
        [r["scenario"], cam, r[cam]["restarts_per_min"], r[cam]["gap_median_s"], r[cam]["gap_p90_s"],
         r[cam]["gap_max_s"], r["stuck_attempts"], r["shutdown_s"], r["exit_code"]]
        for r in results for cam in HEALTHY
    ]  # fmt: skip
    print(f"engine: {args.engine or ROOT / 'addon'}; {args.seconds:g} s per scenario; load {os.getloadavg()[0]:.1f}")
    print(
        markdown_table(
            ["scenario", "camera", "restarts/min", "gap median s", "gap p90 s", "gap max s", "stuck attempts",
             "shutdown s", "exit"],
            rows,
        )
    )  # fmt: skip
    write_json(args.json, {"environment": environment(), "engine": args.engine, "results": results})
    if not args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
