"""End-to-end pipeline benchmark: frames/s, CPU per frame, stage costs, embedding rate, peak RSS.

Streams: the 1920x1080 25-fps multi-face clip of shared/data (``facenet_pytorch/examples/video.mp4``)
as it is ("1080p") and an ffmpeg-scaled 1280x720 H.264 copy ("720p"), each looped ``--loops`` times
(ffmpeg concat, no re-encode). The engine detects on every frame; each run goes through
``facetrack.pipeline.run_pipeline`` exactly as ``facetrack track`` does, with timing wrappers around
the backend and the library, against a library with a couple of enrolled people.

Each configuration runs in its own child process (peak RSS per run). See benchmarks/README.md.

    .venv/bin/python benchmarks/bench_pipeline.py [--loops 3] [--json out.json] [--before OLD/addon]

``--before`` runs each configuration a second time on another engine tree (e.g. ``git archive`` of
the commit before a change, extracted to /tmp/facetrack-orig: ``--before /tmp/facetrack-orig/addon``),
just before this checkout's run, for a side-by-side in the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA,
    DEFAULT_WORKDIR,
    Clock,
    current_rss_mb,
    emit_result,
    environment,
    hwm_rss_mb,
    markdown_table,
    peak_rss_mb,
    run_worker,
    rusage_cpu_s,
    stats_ms,
    write_json,
)

CLIP = DATA / "facenet_pytorch" / "examples" / "video.mp4"
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
#: reid_expiration_frames per mode: the default backoff cap, and 1 = embed every frame.
MODES = {"backoff": None, "every-frame": 1}
DEFAULT_PEOPLE = ("angelina_jolie", "deepface_p02")


# ---- inputs -----------------------------------------------------------------------------------


def _ffmpeg(args: list[str], out: Path) -> None:
    tmp = out.with_name(out.stem + ".part" + out.suffix)
    subprocess.run(["ffmpeg", "-y", "-hide_banner", "-loglevel", "error", *args, str(tmp)], check=True)
    tmp.replace(out)


def prepare_streams(workdir: Path, loops: int, names: list[str]) -> dict[str, Path]:
    """The benchmark streams, made once and cached in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in names:
        w, h = RESOLUTIONS[name]
        if (w, h) == (1920, 1080):
            base = CLIP  # the clip itself
        else:
            base = workdir / f"video_{name}.mp4"
            if not base.exists():
                print(f"making {base} (ffmpeg scale {w}x{h}, libx264 crf 20)", file=sys.stderr)
                _ffmpeg(
                    [
                        "-i",
                        str(CLIP),
                        "-map",
                        "0:v:0",
                        "-vf",
                        f"scale={w}:{h}:flags=bicubic",
                        "-c:v",
                        "libx264",
                        "-preset",
                        "medium",
                        "-crf",
                        "20",
                        "-pix_fmt",
                        "yuv420p",
                        "-movflags",
                        "+faststart",
                    ],
                    base,
                )
        if loops == 1:
            out[name] = base
            continue
        looped = workdir / f"video_{name}_x{loops}.mp4"
        if not looped.exists():
            lst = workdir / f"concat_{name}_x{loops}.txt"
            lst.write_text("".join(f"file '{base}'\n" for _ in range(loops)), encoding="utf-8")
            _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(lst), "-map", "0:v:0", "-c", "copy"], looped)
        out[name] = looped
    return out


def enrolment_images(people: list[str], per_person: int) -> dict[str, list[Path]]:
    """First ``per_person`` photos (sorted by path) of each person in deepface's unit dataset."""
    chosen: dict[str, set[str]] = {p: set() for p in people}
    with (DATA / "labels.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["person"] in chosen and not row["note"] and row["path"].startswith("deepface/tests/unit/"):
                chosen[row["person"]].add(row["path"])
    missing = [p for p, paths in chosen.items() if not paths]
    if missing:
        raise SystemExit(f"no enrolment photos for {missing} in {DATA / 'labels.csv'}")
    return {p: [DATA / x for x in sorted(paths)[:per_person]] for p, paths in chosen.items()}


def build_library(
    db: Path, people: list[str], per_person: int, detector_input_size: int | None
) -> list[dict[str, Any]]:
    """A fresh library at ``db`` with ``people`` enrolled from their photos."""
    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.recognizer import FaceRecognizer

    shutil.rmtree(db, ignore_errors=True)
    cfg = parse_config({"db_path": str(db)}, detector_input_size=detector_input_size)
    backend = create_backend(
        cfg.backend,
        detector_input_size=cfg.detector_input_size,
        score_threshold=cfg.detection_score_threshold,
        nms_threshold=cfg.nms_threshold,
    )
    lib = FaceLibrary(db, backend.model_id, backend.embedding_dim)
    rec = FaceRecognizer(backend, cfg, lib)
    out = []
    for name, paths in enrolment_images(people, per_person).items():
        r = rec.enroll(name, [str(p) for p in paths])
        out.append({"person": name, "enrolled": r.enrolled, "skipped": r.skipped})
    if len(lib) == 0:
        raise SystemExit("enrolment produced an empty library")
    return out


# ---- instrumentation --------------------------------------------------------------------------


class _Acc:
    """Accumulated wall/CPU seconds, calls and items of one operation."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.calls = self.items = 0

    def add(self, clock: Clock, items: int = 1) -> None:
        w, c = clock.since()
        self.wall += w
        self.cpu += c
        self.calls += 1
        self.items += items

    def to_json(self) -> dict[str, Any]:
        per = max(self.items, 1)
        return {
            "calls": self.calls,
            "items": self.items,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "wall_ms_per_item": 1000 * self.wall / per if self.items else float("nan"),
            "cpu_ms_per_item": 1000 * self.cpu / per if self.items else float("nan"),
        }


class TimedBackend:
    """Delegates to a backend and times detect / aligned_crop / embed(_crops)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.model_id = inner.model_id
        self.embedding_dim = inner.embedding_dim
        self.detect_wall: list[float] = []
        self.detect_cpu: list[float] = []
        self.crop = _Acc()
        self.embed_acc = _Acc()

    def detect(self, frame: Any) -> Any:
        c = Clock.now()
        r = self._inner.detect(frame)
        w, cpu = c.since()
        self.detect_wall.append(w)
        self.detect_cpu.append(cpu)
        return r

    def aligned_crop(self, frame: Any, det: Any) -> Any:
        c = Clock.now()
        r = self._inner.aligned_crop(frame, det)
        self.crop.add(c)
        return r

    def embed(self, frame: Any, dets: Any) -> Any:
        c = Clock.now()
        r = self._inner.embed(frame, dets)
        self.embed_acc.add(c, len(dets))
        return r

    def embed_crops(self, crops: Any) -> Any:
        c = Clock.now()
        r = self._inner.embed_crops(crops)
        self.embed_acc.add(c, len(crops))
        return r

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedLibrary:
    """Delegates to a FaceLibrary and times ``match``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.match_acc = _Acc()

    def match(self, probes: Any, threshold: float) -> Any:
        c = Clock.now()
        r = self._inner.match(probes, threshold)
        self.match_acc.add(c, len(r))
        return r

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# ---- workers (child processes) ----------------------------------------------------------------


def worker_decode(spec: dict[str, Any]) -> dict[str, Any]:
    """Decode-only: read every frame of the stream (OpenCV FFmpeg backend, BGR out), nothing else."""
    from facetrack.camera import open_source

    walls: list[float] = []
    cpus: list[float] = []
    with open_source(spec["path"]) as v:
        info = {"width": v.width, "height": v.height, "fps": v.fps}
        it = v.frames()
        start = Clock.now()
        while True:
            c = Clock.now()
            try:
                next(it)
            except StopIteration:
                break
            w, cpu = c.since()
            walls.append(w)
            cpus.append(cpu)
        total_wall, total_cpu = start.since()
    n = len(walls)
    return {
        **info,
        "frames": n,
        "wall_s": total_wall,
        "cpu_s": total_cpu,
        "fps_decoded": n / total_wall if total_wall > 0 else float("nan"),
        "wall_ms_per_frame": stats_ms(walls),
        "cpu_ms_per_frame": 1000 * sum(cpus) / max(n, 1),
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": hwm_rss_mb(),
    }


def worker_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of run_pipeline on the stream with the given config overrides, instrumented."""
    import cv2
    import numpy as np

    import facetrack.pipeline as pipeline_mod
    from facetrack.camera import open_source
    from facetrack.config import parse_config
    from facetrack.inference import create_backend
    from facetrack.library import FaceLibrary
    from facetrack.track import FaceTracker

    cfg = parse_config({"db_path": spec["db"]}, **spec["overrides"])
    inner = create_backend(
        cfg.backend,
        detector_input_size=cfg.detector_input_size,
        score_threshold=cfg.detection_score_threshold,
        nms_threshold=cfg.nms_threshold,
    )
    lib = FaceLibrary(cfg.db_path, inner.model_id, inner.embedding_dim)

    # Warm-up outside the measurement: first inferences allocate buffers / pick kernels.
    with open_source(spec["path"]) as v:
        _, _, frame = next(v.frames())
    for d in inner.detect(frame)[:2] or []:
        inner.embed_crops([inner.aligned_crop(frame, d)])
    inner.detect(frame)
    inner.embed_crops([np.zeros((112, 112, 3), np.uint8)] * 2)
    rss_ready = current_rss_mb()

    backend = TimedBackend(inner)
    library = TimedLibrary(lib)
    per_frame: dict[str, list[float]] = {"wall": [], "cpu": [], "faces": [], "emb": [], "dets": []}
    holder: dict[str, Any] = {}

    class RecordingTracker(FaceTracker):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            holder["tracker"] = self

        def process(self, frame_bgr: Any, frame_index: int, ts: float) -> Any:
            c = Clock.now()
            res = super().process(frame_bgr, frame_index, ts)
            w, cpu = c.since()
            per_frame["wall"].append(w)
            per_frame["cpu"].append(cpu)
            per_frame["faces"].append(len(res.faces))
            per_frame["emb"].append(res.embeddings)
            per_frame["dets"].append(res.detections)
            return res

    events: dict[str, int] = {}

    def on_event(ev: Any) -> None:
        events[ev.type] = events.get(ev.type, 0) + 1

    try:  # the engine's one frame loop since issue 13; before it, facetrack.pipeline's own loop
        import facetrack.camera.runner as loop_mod
    except ImportError:
        loop_mod = pipeline_mod  # type: ignore[assignment]
    loop_mod.FaceTracker = RecordingTracker  # type: ignore[misc]
    ru0 = rusage_cpu_s()
    start = Clock.now()
    summary = pipeline_mod.run_pipeline(spec["path"], backend, library, cfg, on_event)  # type: ignore[arg-type]
    e2e_wall, e2e_cpu = start.since()
    e2e_cpu_ru = rusage_cpu_s() - ru0

    fps = holder["tracker"].fps
    n = len(per_frame["wall"])
    proc_wall = np.array(per_frame["wall"])
    proc_cpu = np.array(per_frame["cpu"])
    det_wall = np.array(backend.detect_wall)
    det_cpu = np.array(backend.detect_cpu)
    te_wall = proc_wall - det_wall
    te_cpu = proc_cpu - det_cpu
    face_frames = int(sum(per_frame["faces"]))
    face_seconds = face_frames / fps
    embeddings = int(sum(per_frame["emb"]))
    return {
        "frames": n,
        "summary": summary.to_json(),
        "source_fps": fps,
        "detector_input_size": cfg.detector_input_size,
        "reid_expiration_frames": cfg.reid_expiration_frames,
        "library_embeddings": len(lib),
        "e2e": {
            "wall_s": e2e_wall,
            "cpu_s": e2e_cpu,
            "cpu_s_rusage": e2e_cpu_ru,
            "fps": n / e2e_wall,
            "cpu_ms_per_frame": 1000 * e2e_cpu / n,
            "wall_ms_per_frame": 1000 * e2e_wall / n,
        },
        # decode + loop overhead inside run_pipeline = end-to-end minus tracker.process
        "outside_process": {
            "wall_ms_per_frame": 1000 * (e2e_wall - proc_wall.sum()) / n,
            "cpu_ms_per_frame": 1000 * (e2e_cpu - proc_cpu.sum()) / n,
        },
        "process": {"wall_ms": stats_ms(proc_wall), "cpu_ms_per_frame": 1000 * proc_cpu.mean()},
        "detect": {"wall_ms": stats_ms(det_wall), "cpu_ms_per_frame": 1000 * det_cpu.mean()},
        "track_embed": {"wall_ms": stats_ms(te_wall), "cpu_ms_per_frame": 1000 * te_cpu.mean()},
        "aligned_crop": backend.crop.to_json(),
        "embed": backend.embed_acc.to_json(),
        "match": library.match_acc.to_json(),
        "detections": int(sum(per_frame["dets"])),
        "tracked_face_frames": face_frames,
        "tracked_face_seconds": face_seconds,
        "embeddings": embeddings,
        "embeddings_per_face_second": embeddings / face_seconds if face_seconds else float("nan"),
        "events": events,
        "opencv_threads": cv2.getNumThreads(),
        "rss_before_run_mb": rss_ready,
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": hwm_rss_mb(),
    }


def _wc(wall_ms: float, cpu_ms: float) -> str:
    """``"wall (cpu)"`` in ms, one decimal."""
    return f"{wall_ms:.1f} ({cpu_ms:.1f})"


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", type=int, default=3, help="play the 4.2 s clip this many times (default 3)")
    ap.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="scaled/looped streams, library")
    ap.add_argument("--resolutions", default="720p,1080p", help="comma list of 720p,1080p")
    ap.add_argument(
        "--modes",
        default="backoff,every-frame",
        help="comma list: backoff (default config), every-frame (reid_expiration_frames=1)",
    )
    ap.add_argument("--detector-input-size", type=int, default=None, help="override the config default")
    ap.add_argument("--people", default=",".join(DEFAULT_PEOPLE), help="persons (labels.csv) to enrol")
    ap.add_argument("--photos-per-person", type=int, default=2)
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="also run each pipeline configuration on this engine source tree (its addon folder), row by row",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        work = {
            "decode": worker_decode,
            "pipeline": worker_pipeline,
            "enrol": lambda s: {
                "enrolled": build_library(Path(s["db"]), s["people"], s["per_person"], s["detector_input_size"])
            },
        }
        emit_result(work[spec["kind"]](spec))
        return 0

    if args.loops < 1:
        ap.error("--loops must be >= 1")
    names = [s.strip() for s in args.resolutions.split(",") if s.strip()]
    modes = [s.strip() for s in args.modes.split(",") if s.strip()]
    for n in names:
        if n not in RESOLUTIONS:
            ap.error(f"unknown resolution {n!r}")
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")

    env = environment()
    print(
        f"# bench_pipeline  ({env['cpu']}, {env['cores']} cores, load {env['loadavg_1m_at_start']:.2f}, "
        f"OpenCV {env['opencv']})\n"
    )
    streams = prepare_streams(args.workdir, args.loops, names)
    db = args.workdir / "pipeline_lib.lance"
    enrolled = run_worker(
        __file__,
        {
            "kind": "enrol",
            "db": str(db),
            "people": [p.strip() for p in args.people.split(",") if p.strip()],
            "per_person": args.photos_per_person,
            "detector_input_size": args.detector_input_size,
        },
    )["enrolled"]
    print("enrolled: " + ", ".join(f"{e['person']} x{e['enrolled']}" for e in enrolled) + "\n")

    decode: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for name in names:
        decode[name] = run_worker(__file__, {"kind": "decode", "path": str(streams[name])})
        for mode in modes:
            overrides: dict[str, Any] = {"detector_input_size": args.detector_input_size}
            if MODES[mode] is not None:
                overrides["reid_expiration_frames"] = MODES[mode]
            spec = {"kind": "pipeline", "path": str(streams[name]), "db": str(db), "overrides": overrides}
            if args.before is not None:  # the same configuration on the tree before the change, just before
                r = run_worker(__file__, spec, env={"PYTHONPATH": str(args.before)})
                runs.append({"stream": name, "mode": f"{mode}, before", **r})
            r = run_worker(__file__, spec)
            runs.append({"stream": name, "mode": mode, **r})

    print(f"## Decode only ({args.loops} loop(s) of the clip)\n")
    print(
        markdown_table(
            ["stream", "frames", "decode fps", "wall ms/frame", "p99 ms", "CPU ms/frame", "peak RSS MB"],
            [
                [
                    n,
                    d["frames"],
                    d["fps_decoded"],
                    d["wall_ms_per_frame"]["mean"],
                    d["wall_ms_per_frame"]["p99"],
                    d["cpu_ms_per_frame"],
                    d["peak_rss_mb"],
                ]
                for n, d in decode.items()
            ],
        )
    )
    print("\n## Pipeline (run_pipeline, detection on every frame)\n")
    print(
        markdown_table(
            [
                "stream",
                "mode",
                "frames",
                "e2e fps",
                "e2e CPU ms/frame",
                "detect ms/frame (CPU)",
                "track+embed ms/frame (CPU)",
                "decode+other ms/frame (CPU)",
                "embeddings",
                "tracked face-s",
                "emb / face-s",
                "peak RSS MB",
            ],
            [
                [
                    r["stream"],
                    f"{r['mode']} (cap {r['reid_expiration_frames']})",
                    r["frames"],
                    r["e2e"]["fps"],
                    r["e2e"]["cpu_ms_per_frame"],
                    _wc(r["detect"]["wall_ms"]["mean"], r["detect"]["cpu_ms_per_frame"]),
                    _wc(r["track_embed"]["wall_ms"]["mean"], r["track_embed"]["cpu_ms_per_frame"]),
                    _wc(r["outside_process"]["wall_ms_per_frame"], r["outside_process"]["cpu_ms_per_frame"]),
                    r["embeddings"],
                    r["tracked_face_seconds"],
                    r["embeddings_per_face_second"],
                    r["peak_rss_mb"],
                ]
                for r in runs
            ],
        )
    )
    print("\nms/frame columns: wall-clock mean (CPU-seconds of all threads, in ms, in brackets).")
    print(
        markdown_table(
            [
                "stream",
                "mode",
                "embed ms/face (CPU)",
                "match ms/call",
                "aligned_crop ms/face",
                "detections",
                "tracks",
                "process p99 ms",
            ],
            [
                [
                    r["stream"],
                    r["mode"],
                    _wc(r["embed"]["wall_ms_per_item"], r["embed"]["cpu_ms_per_item"]),
                    1000 * r["match"]["wall_s"] / max(r["match"]["calls"], 1),
                    r["aligned_crop"]["wall_ms_per_item"],
                    r["detections"],
                    r["summary"]["tracks"],
                    r["process"]["wall_ms"]["p99"],
                ]
                for r in runs
            ],
        )
    )

    write_json(
        args.json,
        {
            "benchmark": "pipeline",
            "environment": env,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
            "streams": {k: str(v) for k, v in streams.items()},
            "enrolled": enrolled,
            "decode": decode,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
