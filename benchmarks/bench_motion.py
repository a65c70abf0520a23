#!/usr/bin/env python
"""Motion-gated detection (issue 16): recall with and without the gate, and an idle camera's CPU.

1. Recall. Each shared clip (``facenet_pytorch/examples/video.mp4``, ``vtest.avi``, the three MOT
   clips, the clip ``compose_clip.py`` composes: enrolled people and strangers pasted over
   vtest.avi, and ``stillfaces``: a still street where faces arrive, stand still, fade in and pop
   in, the cases the gate and its idle stride must not miss) runs through
   ``facetrack.pipeline.run_pipeline`` (what ``facetrack track`` runs, every frame) twice in one
   worker process, ``motion_gate`` off then on (default ``detect_fps``), with a
   library of the dev people enrolled (the suggested split of ``shared/data/README.md``) so tracks
   get identities. Per run: frames, frames the detector ran on, tracks (``track_started``), named
   tracks and the names, CPU ms per frame. Then the gated run's tracks are matched to the ungated
   run's (same start frame within ``START_TOLERANCE`` frames and IoU >= 0.5 of the first box):
   unmatched tracks on either side and tracks whose final identity differs are listed.
   ``--motion-detect-fps 5`` runs each clip gated with that ``motion_detect_fps`` too.
2. Idle camera. A still 1280x720 scene (the first vtest.avi frame, scaled, with sensor-like noise
   of sigma 2 grey levels added to every frame, libx264) at 10 frames/s, played in real time by a
   ``CameraRunner`` (as ``serve`` does) for ``--idle-seconds``; CPU % of one core (process user +
   system time over wall time, all threads, decoding included) with the gate and without, and the
   decoding alone (the floor any camera pays).

The gated idle camera runs once per ``--idle-detect-fps`` value (the periodic detections are
most of what an idle camera costs beyond decoding).

``--before OLD/addon`` runs the idle camera (and, with ``--before-clips``, the recall clips) on
another engine tree too (its default configuration, no gate keys), for a side-by-side in the same
run. ``--record`` runs the gated idle cameras (and ``--before``) again with the clip recorder
``serve`` attaches (its pre-roll ring encodes frames as JPEG).

Usage::

    PYTHONPATH=addon .venv/bin/python benchmarks/bench_motion.py [--json OUT] [--before OLD/addon]
        [--clips video,vtest,...] [--idle-seconds 60] [--idle-detect-fps 1,0] [--record]
        [--motion-detect-fps 5]

Several minutes of one core (the ungated idle run alone is ``--idle-seconds`` of detection at
10 frames/s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, emit_result, environment, markdown_table, run_worker, write_json

CLIPS: dict[str, str] = {
    "video": "facenet_pytorch/examples/video.mp4",
    "vtest": "debian_opencv-doc/examples/data/vtest.avi",
    "mot17_13": "dlib/dlib/test/ffmpeg_data/MOT17-13-SDP-raw.h265",
    "mot20_05": "dlib/dlib/test/ffmpeg_data/MOT20-05-raw_even_shorter.mp4",
    "mot20_08": "dlib/dlib/test/ffmpeg_data/MOT20-08-raw_shorter.h264",
}
#: A gated track matches an ungated one when it starts within this many frames of it.
START_TOLERANCE = 3
MATCH_IOU = 0.5
IDLE_SIZE = (1280, 720)
IDLE_FPS = 10


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def tracks_of(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per track id: first frame, first box and final identity (the last ``identity`` event's person)."""
    out: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev["type"] == "track_started":
            out[ev["track_id"]] = {"start": ev["frame"], "box": ev["bbox"], "person": None}
        elif ev["type"] == "identity" and ev["track_id"] in out:
            out[ev["track_id"]]["person"] = ev["person"]
    return out


def compare(ref: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """Match ``other``'s tracks to ``ref``'s (start within :data:`START_TOLERANCE`, box IoU)."""
    a, b = tracks_of(ref), tracks_of(other)
    free = dict(b)
    matched: list[tuple[int, int]] = []
    missing: list[int] = []
    for tid, t in sorted(a.items(), key=lambda kv: kv[1]["start"]):
        best = max(
            ((k, _iou(t["box"], u["box"])) for k, u in free.items() if abs(u["start"] - t["start"]) <= START_TOLERANCE),
            key=lambda kv: kv[1],
            default=None,
        )
        if best is None or best[1] < MATCH_IOU:
            missing.append(tid)
            continue
        matched.append((tid, best[0]))
        del free[best[0]]
    names = [(a[i]["person"], b[j]["person"]) for i, j in matched]
    return {
        "matched": len(matched),
        "missing": [{"track": i, **a[i]} for i in missing],
        "extra": [{"track": j, **b[j]} for j in free],
        "identity_changed": [{"ref": x, "gated": y} for x, y in names if x != y],
        "max_start_shift": max((abs(a[i]["start"] - b[j]["start"]) for i, j in matched), default=0),
    }


# ---- workers ----------------------------------------------------------------------------------


def _backend(cfg: Any) -> Any:
    from facetrack.inference import create_backend

    opts: dict[str, Any] = {
        "detector_input_size": cfg.detector_input_size,
        "score_threshold": cfg.detection_score_threshold,
        "nms_threshold": cfg.nms_threshold,
    }
    try:
        return create_backend(cfg.backend, threads=1, **opts)
    except TypeError:  # an engine tree without the threads option
        return create_backend(cfg.backend, **opts)


def worker_library(spec: dict[str, Any]) -> dict[str, Any]:
    """Enrol the dev people (suggested split) into ``spec['db']``."""
    from facetrack.config import parse_config
    from facetrack.library import FaceLibrary
    from facetrack.recognizer import FaceRecognizer
    from threshold_curve import load_labels, suggested_split

    data = Path(spec["data"])
    enrol, _, _ = suggested_split(load_labels(data))
    cfg = parse_config({"db_path": spec["db"]})
    backend = _backend(cfg)
    lib = FaceLibrary(cfg.db_path, backend.model_id, backend.embedding_dim)
    rec = FaceRecognizer(backend, cfg, lib)
    for person, paths in enrol.items():
        rec.enroll(person, [str(data / p) for p in paths])
    return {"people": len(enrol)}


def worker_compose(spec: dict[str, Any]) -> dict[str, Any]:
    from compose_clip import compose

    video, gt = compose(Path(spec["out"]), Path(spec["data"]))
    return {"video": str(video), "truth": str(gt)}


def worker_clip(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one clip through the pipeline with each gate setting of ``spec['gates']``."""
    import resource
    import shutil
    import tempfile
    import time

    import facetrack
    from facetrack.config import parse_config
    from facetrack.library import FaceLibrary
    from facetrack.pipeline import run_pipeline

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_motion_") as tmp:
        db = Path(tmp) / "faces.lance"
        shutil.copytree(spec["db"], db)  # a private copy: the library is never written, but be safe
        for gate in spec["gates"]:
            # a gate setting: None (the engine's defaults), a bool (motion_gate) or a number
            # (motion_gate on with that motion_detect_fps)
            keys: dict[str, Any] = {}
            if isinstance(gate, bool):
                keys = {"motion_gate": gate}
            elif gate is not None:
                keys = {"motion_gate": True, "motion_detect_fps": gate}
            cfg = parse_config({"db_path": str(db), **keys})
            backend = _backend(cfg)
            lib = FaceLibrary(cfg.db_path, backend.model_id, backend.embedding_dim)
            events: list[dict[str, Any]] = []
            detected = [0]

            def on_frame(index: int, result: Any, detected: list[int] = detected) -> None:
                detected[0] += bool(getattr(result, "detected", True))

            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu0 = ru.ru_utime + ru.ru_stime
            t0 = time.perf_counter()
            summary = run_pipeline(
                spec["video"], backend, lib, cfg, lambda ev, out=events: out.append(ev.to_json()), on_frame=on_frame
            )
            wall = time.perf_counter() - t0
            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu = ru.ru_utime + ru.ru_stime - cpu0
            tracks = tracks_of(events)
            runs.append(
                {
                    "gate": gate,
                    "frames": summary.frames,
                    "detected": detected[0],
                    "tracks": len(tracks),
                    "named": sorted(str(t["person"]) for t in tracks.values() if t["person"]),
                    "cpu_ms_per_frame": cpu / max(summary.frames, 1) * 1000,
                    "wall_s": wall,
                    "events": events,
                }
            )
    return {"engine_path": str(Path(facetrack.__file__).parent), "runs": runs}


def _street(data: Path) -> Any:
    """The first vtest.avi frame at :data:`IDLE_SIZE`, ``(720, 1280, 3) float32`` BGR."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(data / CLIPS["vtest"]))
    ok, first = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError("cannot read vtest.avi")
    return cv2.resize(first, IDLE_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def _x264(out: Path) -> Any:
    """An ffmpeg process encoding raw BGR frames of :data:`IDLE_SIZE` from its stdin to ``out``
    (libx264, :data:`IDLE_FPS`, CRF 23)."""
    import subprocess

    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = IDLE_SIZE
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}"]
    cmd += ["-r", str(IDLE_FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23"]
    cmd += ["-pix_fmt", "yuv420p", "-g", str(2 * IDLE_FPS), str(out)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE)


def worker_still(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the idle camera's still-scene clip (1280x720, 10 frames/s, noisy, libx264)."""
    import numpy as np

    base = _street(Path(spec["data"]))
    out = Path(spec["out"])
    frames = int(spec["seconds"] * IDLE_FPS)
    proc = _x264(out)
    assert proc.stdin is not None
    rng = np.random.default_rng(16)
    for _ in range(frames):
        noisy = np.clip(base + rng.normal(0.0, 2.0, base.shape), 0, 255).astype(np.uint8)
        proc.stdin.write(noisy.tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg failed")
    return {"video": str(out), "frames": frames}


def worker_stillfaces(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the still-street clip with faces that arrive and stay (the gate's hard cases).

    1280x720, 10 frames/s, 42 s, libx264, sensor-like noise (sigma 2) on every frame, over the
    first vtest.avi frame; 150-px face chips from dlib's "johns" (the last photo of each, a query
    image of the dev split, not an enrolled one): John Salley slides in (4-6.5 s), stands still
    for 6 s (absorbed into the motion background after about 3 s), slides out; after 5 still
    seconds John Savage fades in slowly (19-22 s: a few grey levels per frame) and stands 6 s,
    then vanishes at once; John Schneider pops in (33 s) and stands until the end."""
    import cv2
    import numpy as np

    data = Path(spec["data"])
    w = IDLE_SIZE[0]
    bg = _street(data)
    johns = data / "dlib/examples/johns"
    chip = {
        name: cv2.resize(cv2.imread(str(sorted((johns / name).iterdir())[-1])), (150, 150)).astype(np.float32)
        for name in ("John_Salley", "John_Savage", "John_Schneider")
    }
    out = Path(spec["out"])
    proc = _x264(out)
    assert proc.stdin is not None
    rng = np.random.default_rng(17)

    def paste(f: Any, face: Any, x: int, y: int, alpha: float = 1.0) -> None:
        x0, x1 = max(x, 0), min(x + 150, w)
        if x1 > x0:
            part = face[:, x0 - x : x1 - x]
            f[y : y + 150, x0:x1] = alpha * part + (1 - alpha) * f[y : y + 150, x0:x1]

    frames = 42 * IDLE_FPS
    for i in range(frames):
        t = i / IDLE_FPS
        f = bg.copy()
        if 4.0 <= t < 19.0:  # slides in to x=300 by 6.5 s, stands until 12.5 s, slides out by 15 s
            x = -150 + 180 * min(t - 4.0, 2.5) if t < 12.5 else 300 - 200 * (t - 12.5)
            paste(f, chip["John_Salley"], int(x), 250)
        if 19.0 <= t < 28.0:
            paste(f, chip["John_Savage"], 800, 200, min(1.0, (t - 19.0) / 3.0))
        if t >= 33.0:
            paste(f, chip["John_Schneider"], 550, 300)
        proc.stdin.write(np.clip(f + rng.normal(0.0, 2.0, f.shape), 0, 255).astype(np.uint8).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg failed")
    return {"video": str(out), "frames": frames}


def worker_idle(spec: dict[str, Any]) -> dict[str, Any]:
    """CPU of one camera on the still scene, real time; ``gate`` ``"decode"``: decoding only."""
    import resource
    import tempfile
    import time

    from facetrack.camera.source import open_source

    def cpu_now() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    gate = spec["gate"]
    if gate == "decode":
        t0, c0 = time.perf_counter(), cpu_now()
        n = 0
        threads = {"decode_threads": spec["threads"]} if spec.get("threads") is not None else {}
        with open_source(spec["video"], **threads) as video:
            for _, ts, _ in video.frames():
                ahead = ts - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                n += 1
        wall, cpu = time.perf_counter() - t0, cpu_now() - c0
        return {"frames": n, "detected": 0, "wall_s": wall, "cpu_s": cpu, "cpu_pct": 100 * cpu / wall}

    from facetrack.camera.runner import CameraRunner, FrameSink
    from facetrack.config import parse_config
    from facetrack.library import FaceLibrary

    class Count(FrameSink):
        def __init__(self) -> None:
            self.detected = 0

        def frame(self, f: Any) -> None:
            self.detected += bool(getattr(f.result, "detected", True))

    with tempfile.TemporaryDirectory(prefix="bench_motion_idle_") as tmp:
        keys: dict[str, Any] = {} if gate is None else {"motion_gate": gate}
        if spec.get("detect_fps") is not None:
            keys["detect_fps"] = spec["detect_fps"]
        cfg = parse_config({"db_path": f"{tmp}/faces.lance", **keys})
        backend = _backend(cfg)
        lib = FaceLibrary(cfg.db_path, backend.model_id, backend.embedding_dim)
        sink = Count()
        sinks: list[Any] = [sink]
        if spec.get("record"):  # as serve records: the clip recorder's pre-roll ring (2 s of 10)
            from facetrack.record.clips import ClipRecorder, RecorderSink
            from facetrack.record.storage import StorageConfig, create_storage

            storage = create_storage(StorageConfig(path=f"{tmp}/clips"))
            sinks.append(RecorderSink(ClipRecorder("idle", storage, 10.0, 2.0, spool_dir=f"{tmp}/spool")))
        runner = CameraRunner("idle", spec["video"], backend, lib, cfg, sinks, fps_cap=IDLE_FPS, realtime=True)
        t0, c0 = time.perf_counter(), cpu_now()
        summary = runner.run()
        wall, cpu = time.perf_counter() - t0, cpu_now() - c0
    return {
        "frames": summary.frames,
        "detected": sink.detected,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / wall,
    }


WORKERS = {
    "library": worker_library,
    "compose": worker_compose,
    "clip": worker_clip,
    "still": worker_still,
    "stillfaces": worker_stillfaces,
    "idle": worker_idle,
}


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared/data folder")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-motion"), help="library, clips")
    ap.add_argument("--clips", default=",".join([*CLIPS, "composed", "stillfaces"]), help="comma-separated clip keys")
    ap.add_argument("--idle-seconds", type=float, default=60.0, help="length of each idle-camera run, s")
    ap.add_argument(
        "--idle-detect-fps",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[1.0, 0.5, 0.0],
        help="detect_fps values of the gated idle runs (comma-separated)",
    )
    ap.add_argument(
        "--motion-detect-fps",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[],
        help="also run each recall clip gated with these motion_detect_fps values (comma-separated)",
    )
    ap.add_argument("--before", type=Path, default=None, help="another engine tree (its addon folder)")
    ap.add_argument("--record", action="store_true", help="also run each idle camera with a clip recorder")
    ap.add_argument("--before-clips", action="store_true", help="also run the recall clips on --before")
    ap.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        emit_result(WORKERS[spec["kind"]](spec))
        return 0

    env = environment()
    print(f"# bench_motion  ({env['cpu']}, {env['cores']} cores, load {env['loadavg_1m_at_start']:.2f})\n")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    db = work / "dev_library" / "faces.lance"
    if not db.exists():
        run_worker(__file__, {"kind": "library", "data": str(args.data), "db": str(db)})
    before_env = {"PYTHONPATH": str(args.before.resolve())} if args.before else None
    # The worker scripts import this checkout's benchmark helpers; the engine is PYTHONPATH's.
    here_env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "addon")}

    clip_rows: list[list[Any]] = []
    clips_out: dict[str, Any] = {}
    for key in [k for k in args.clips.split(",") if k]:
        if key == "composed":
            video = work / "composed" / "turned_clip.mp4"
            if not video.exists():
                run_worker(__file__, {"kind": "compose", "out": str(work / "composed"), "data": str(args.data)})
        elif key == "stillfaces":
            video = work / "stillfaces_720p_10fps.mp4"
            if not video.exists() or os.environ.get("BENCH_MOTION_REMAKE"):
                run_worker(__file__, {"kind": "stillfaces", "out": str(video), "data": str(args.data)})
        else:
            video = args.data / CLIPS[key]
        gates: list[Any] = [False, True, *args.motion_detect_fps]
        res = run_worker(__file__, {"kind": "clip", "video": str(video), "db": str(db), "gates": gates}, here_env)
        runs = res["runs"]
        if before_env and args.before_clips:
            runs += [
                {**r, "gate": "before"}
                for r in run_worker(
                    __file__, {"kind": "clip", "video": str(video), "db": str(db), "gates": [None]}, before_env
                )["runs"]
            ]
        vs = {_gate_label(r["gate"]): compare(runs[0]["events"], r["events"]) for r in runs[1:]}
        clips_out[key] = {"video": str(video), "runs": runs, "gated_vs_ungated": vs["on"], "vs_ungated": vs}
        for r in runs:
            same = "-" if r["gate"] is False else _verdict(vs[_gate_label(r["gate"])])
            clip_rows.append(
                [key, _gate_label(r["gate"]), r["frames"], r["detected"],
                 r["tracks"], len(r["named"]), r["cpu_ms_per_frame"], same]
            )  # fmt: skip
        print(f"{key}: done ({runs[1]['detected']}/{runs[1]['frames']} frames detected with the gate)", flush=True)

    still = work / "still_720p_10fps.mp4"
    if args.idle_seconds > 0 and (not still.exists() or os.environ.get("BENCH_MOTION_REMAKE")):
        run_worker(__file__, {"kind": "still", "data": str(args.data), "out": str(still), "seconds": args.idle_seconds})
    idle: dict[str, Any] = {}
    plan: list[tuple[str, Any, float | None, dict[str, str] | None]] = [
        ("decode only", "decode", None, here_env),  # FFmpeg's threads (one per core), as `track` decodes
        ("decode only, 1 thread", "decode", 1, here_env),  # as a real-time camera decodes a file
    ]
    plan += [(f"gate on, detect_fps {f:g}", True, f, here_env) for f in args.idle_detect_fps]
    plan += [("gate off", False, None, here_env)]
    if before_env:
        plan += [("before", None, None, before_env)]
    runs = [(label, gate, dfps, env_, False) for label, gate, dfps, env_ in plan]
    if args.record:  # the gated cameras and the before tree's again, with serve's clip recorder (pre-roll)
        runs += [(f"{r[0]}, recording", *r[1:4], True) for r in runs if r[1] is True or r[0] == "before"]
    if args.idle_seconds <= 0:  # the recall clips only
        runs = []
    for label, gate, dfps, env_, record in runs:
        spec = {"kind": "idle", "video": str(still), "gate": gate, "detect_fps": dfps, "record": record}
        if gate == "decode":
            spec.update(detect_fps=None, threads=dfps)
        idle[label] = run_worker(__file__, spec, env_)
        print(f"idle {label}: {idle[label]['cpu_pct']:.1f} % of a core", flush=True)
    load_end = os.getloadavg()[0]

    print("\n## Recall and cost per clip (motion gate off / on)\n")
    print(
        markdown_table(
            ["clip", "gate", "frames", "detected", "tracks", "named", "CPU ms/frame", "vs gate off"], clip_rows
        )
    )
    print(f"\n## Idle camera: still 1280x720 scene, {IDLE_FPS} frames/s, {args.idle_seconds:.0f} s, real time\n")
    print(
        markdown_table(
            ["run", "frames", "detected", "CPU s", "wall s", "% of a core"],
            [[k, v["frames"], v["detected"], v["cpu_s"], v["wall_s"], v["cpu_pct"]] for k, v in idle.items()],
        )
    )
    print(f"\nload average (1 min): {env['loadavg_1m_at_start']:.2f} at start, {load_end:.2f} at end")
    for c in clips_out.values():  # the events are long; keep the comparison and the summaries
        for r in c["runs"]:
            r.pop("events")
    write_json(
        args.json,
        {"environment": {**env, "loadavg_1m_at_end": load_end}, "clips": clips_out, "idle": idle,
         "before": str(args.before) if args.before else None},
    )  # fmt: skip
    return 0


def _gate_label(gate: Any) -> str:
    if isinstance(gate, bool) or gate == "before":
        return {False: "off", True: "on", "before": "before"}[gate]
    return f"on, motion_detect_fps {gate:g}"


def _verdict(c: dict[str, Any]) -> str:
    if not c["missing"] and not c["extra"] and not c["identity_changed"]:
        return f"same ({c['matched']} tracks, start shift <= {c['max_start_shift']})"
    return f"{len(c['missing'])} missing, {len(c['extra'])} extra, {len(c['identity_changed'])} renamed"


if __name__ == "__main__":
    sys.exit(main())
