"""Hostile images against the running engine: peak RSS and time, before vs after (issue 17).

Each case runs on a fresh ``facetrack serve`` (real Mosquitto, HTTP server with the ingress
listener, one disabled camera), started from one engine source tree per column:

- ``bomb_0.4MB``: MQTT ``enroll`` with ``image_base64`` of a 20000 x 20000 grey PNG (0.39 MB);
- ``bomb_0.9MB``: the same with a 30000 x 30000 grey PNG (0.87 MB);
- ``uploads_3x20x10MB``: three parallel uploads through the web page (``POST /api/enroll``), each
  of 20 JPEG photos of about 9 MB (a real portrait upscaled to 24 MP with sensor-like noise).

Per case: the answer (error code, or photo statuses), the wall time from sending to the last
answer, the engine's peak RSS over its baseline (sampled every 20 ms with psutil; the baseline is
taken after one ordinary enrolment warmed the models), a ``list`` command sent right behind the
bombs and when it was answered, and the RSS 10 s after the last answer ("given back").

Usage::

    .venv/bin/python benchmarks/bench_hostile_images.py                      # both columns
    .venv/bin/python benchmarks/bench_hostile_images.py --before /tmp/facetrack-orig/addon \\
        --cases bomb_0.4MB --json benchmarks/results/hostile_images.json

``--before`` is the source tree of the engine before the change (its ``addon`` folder; default
``/tmp/facetrack-orig/addon``, skipped when missing); ``after`` is this checkout. Figures are
wall-clock and only as good as the machine was idle (the 1-minute load is recorded).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared")).resolve() / "data"
PORTRAIT = DATA / "deepface" / "tests" / "unit" / "dataset" / "img1.jpg"
VIDEO = DATA / "facenet_pytorch" / "examples" / "video.mp4"
CASES = ("bomb_0.4MB", "bomb_0.9MB", "uploads_3x20x10MB")
MB = 1e6


def big_photo(work: Path) -> bytes:
    """A 9-10 MB JPEG: the portrait upscaled to 24 MP with noise (one face, enrollable)."""
    import cv2
    import numpy as np

    img = cv2.imread(str(PORTRAIT))
    scale = (24e6 / (img.shape[0] * img.shape[1])) ** 0.5
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    noisy = np.clip(img.astype(np.int16) + rng.normal(0, 9, img.shape).astype(np.int16), 0, 255).astype(np.uint8)
    for q in range(97, 60, -2):
        data = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
        if len(data) <= 9.9 * 2**20:
            (work / "big.jpg").write_bytes(data)
            return data
    raise RuntimeError("could not make a 10 MB photo")


def upload(url: str, name: str, photos: list[bytes]) -> dict[str, Any]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'.encode()]
    for i, data in enumerate(photos):
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p{i}.jpg"\r\n'
        parts.append(head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Requested-With": "facetrack"}
    req = urllib.request.Request(f"{url}/api/enroll", data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=1800) as r:  # the engine before the change is slow
        result: dict[str, Any] = json.loads(r.read())
        return result


def run_case(case: str, addon: Path, work: Path, bombs: dict[str, bytes], photo: bytes) -> dict[str, Any]:
    from mqtt_helpers import Broker, Subscriber
    from webui_helpers import PeakRSS, WebEngine

    work.mkdir(parents=True)
    broker = Broker(work)
    broker.start()
    sub = Subscriber(broker.port).start()
    os.environ["PYTHONPATH"] = str(addon)  # the engine subprocess imports this tree's facetrack
    cams = [{"name": "door", "source": str(VIDEO), "enabled": False}]
    engine = WebEngine(work, broker.port, None, VIDEO, cameras=cams)
    row: dict[str, Any] = {"case": case}
    try:
        engine.start(timeout=180)
        assert engine.proc is not None

        def ask(verb: str, rid: str, **body: Any) -> None:
            sub.publish(f"facetrack/command/{verb}", {"request_id": rid, **body})

        def answer(rid: str) -> tuple[Any, float]:
            m = sub.wait_for(f"/response/{rid}", timeout=1800)[0]
            return m.payload, m.at

        ask("enroll", "warm", name="Warm", image_base64=base64.b64encode(PORTRAIT.read_bytes()).decode())
        answer("warm")
        time.sleep(2)
        with PeakRSS(engine.proc.pid) as rss:
            t0 = time.time()
            if case.startswith("bomb"):
                ask("enroll", "bomb", name="Bomb", image_base64=base64.b64encode(bombs[case]).decode())
                ask("list", "next")
                reply, at = answer("bomb")
                _, nxt_at = answer("next")
                row["answer"] = reply["error"]["code"] if not reply["ok"] else "ok"
                row["message"] = (reply.get("error") or {}).get("message", "")[:160]
                row["list_answered_after_s"] = round(nxt_at - t0, 2)
                end = max(at, nxt_at)
            else:
                with concurrent.futures.ThreadPoolExecutor(3) as pool:
                    futures = [pool.submit(upload, engine.ingress, f"Person {i}", [photo] * 20) for i in range(3)]
                    time.sleep(0.5)
                    ask("list", "next")
                    results = [f.result() for f in futures]
                _, nxt_at = answer("next")
                statuses: dict[str, int] = {}
                for res in results:
                    for r in res["results"]:
                        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
                row["answer"] = statuses
                row["list_answered_after_s"] = round(nxt_at - t0, 2)
                end = time.time()
            row["seconds"] = round(end - t0, 2)
            row["baseline_rss_mb"] = round(rss.baseline / MB)
            row["peak_rss_mb"] = round(rss.peak / MB)
            row["peak_rise_mb"] = round((rss.peak - rss.baseline) / MB)
            time.sleep(10)
            row["rss_10s_after_mb"] = round(rss.now() / MB)
        leftovers = list((work / "uploads").glob("upload-*")) if (work / "uploads").is_dir() else []
        row["upload_folders_left"] = len(leftovers)
    finally:
        engine.stop()
        sub.stop()
        broker.stop()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="/tmp/facetrack-orig/addon", help="engine source tree before the change")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--columns", default="before,after")
    ap.add_argument("--json")
    args = ap.parse_args()
    from test_image_limits import png_bomb

    work = Path(tempfile.mkdtemp(prefix="bench_hostile_"))
    print("building the bombs and the photo...", flush=True)
    bombs = {"bomb_0.4MB": png_bomb(20000, 20000), "bomb_0.9MB": png_bomb(30000, 30000)}
    photo = big_photo(work)
    trees = {"before": Path(args.before), "after": ROOT / "addon"}
    out: dict[str, Any] = {
        "load_at_start": os.getloadavg()[0],
        "bomb_bytes": {k: len(v) for k, v in bombs.items()},
        "photo_bytes": len(photo),
        "rows": [],
    }
    try:
        for case in args.cases.split(","):
            for column in args.columns.split(","):
                tree = trees[column]
                if not (tree / "facetrack").is_dir():
                    print(f"skip {column}: no engine at {tree}", flush=True)
                    continue
                row = {"column": column, **run_case(case, tree, work / f"{case}-{column}", bombs, photo)}
                out["rows"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'case':<20} {'column':<7} {'answer':<38} {'s':>7} {'base MB':>8} {'peak MB':>8} {'rise':>6} {'+10s':>6}")
    for r in out["rows"]:
        ans = r["answer"] if isinstance(r["answer"], str) else ",".join(f"{k}:{v}" for k, v in r["answer"].items())
        print(
            f"{r['case']:<20} {r['column']:<7} {ans:<38} {r['seconds']:>7} {r['baseline_rss_mb']:>8} "
            f"{r['peak_rss_mb']:>8} {r['peak_rise_mb']:>6} {r['rss_10s_after_mb']:>6}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
