"""Face-library benchmark: enrolment time, reopen (load) time, match latency and peak RSS by size.

For each size (default 1k, 10k, 100k embeddings) a fresh LanceDB library in a temp directory gets
random L2-normalised 128-d embeddings enrolled over ``--persons`` persons through the public API
(one ``FaceLibrary.enroll`` call, i.e. one Lance commit, per person), each embedding with a crop
the size of a real JPEG face chip (~9 KB; distinct per embedding, see ``_crops``). A second, fresh
process then reopens the library from disk (``FaceLibrary(...)``) and times ``match`` for single
probes and for batches of 8 probes: its peak RSS is what a running pipeline holding that library
costs. Enrolment and query each run in their own child process, so each has its own peak RSS.

    .venv/bin/python benchmarks/bench_match.py [--sizes 1000,10000,100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA,
    Clock,
    current_rss_mb,
    emit_result,
    environment,
    hwm_rss_mb,
    markdown_table,
    peak_rss_mb,
    run_worker,
    stats_ms,
    write_json,
)

#: A real aligned face chip (150x150 JPEG, ~9 KB): the kind of crop stored with every embedding.
CROP_FILE = DATA / "dlib" / "examples" / "johns" / "John_Salley" / "000179_02159509.jpg"
#: Bytes of the chip kept in every synthetic crop: everything up to the start of the scan data.
_CROP_HEADER = 623
DIM = 128
N_PROBES = 1024


def _dir_size_mb(path: Path) -> tuple[float, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20, len(files)


def _unit_rows(rng: Any, n: int) -> Any:
    import numpy as np

    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _crops(rng: Any, k: int, mode: str) -> list[bytes]:
    """``k`` crops. ``chip``: the real chip's JPEG header followed by random (incompressible, like
    JPEG entropy-coded data) bytes up to the chip's size, different for every embedding: Lance
    stores identical blobs deduplicated/compressed, which would understate the disk and I/O of a
    real library. ``none``: empty crops."""
    if mode == "none":
        return [b""] * k
    chip = CROP_FILE.read_bytes()
    head = chip[:_CROP_HEADER]
    return [head + rng.bytes(len(chip) - len(head)) for _ in range(k)]


def _time_calls(fn: Any, n_min: int, seconds: float) -> tuple[list[float], float]:
    """Call ``fn(i)`` at least ``n_min`` times and for at least ``seconds``; returns the per-call wall
    seconds and the mean CPU seconds (all threads) per call."""
    for i in range(20):  # warm-up
        fn(i)
    walls: list[float] = []
    start = Clock.now()
    i = 0
    while len(walls) < n_min or start.since()[0] < seconds:
        c = Clock.now()
        fn(i)
        walls.append(c.since()[0])
        i += 1
    _, cpu = start.since()
    return walls, cpu / len(walls)


# ---- workers (child processes) ----------------------------------------------------------------


def worker_build(spec: dict[str, Any]) -> dict[str, Any]:
    """Enrol ``size`` random embeddings over ``persons`` persons, one ``enroll`` call per person."""
    import numpy as np

    from facetrack.inference.opencv import SFACE_MODEL_ID  # a constant; no model is loaded
    from facetrack.library import FaceLibrary

    size, persons = int(spec["size"]), min(int(spec["persons"]), int(spec["size"]))
    db = Path(spec["db"])
    rng = np.random.default_rng(spec["seed"])
    crop_bytes = len(_crops(rng, 1, spec["crop"])[0])
    rss_start = current_rss_mb()
    lib = FaceLibrary(db, SFACE_MODEL_ID, DIM)
    per_person = [size // persons + (1 if p < size % persons else 0) for p in range(persons)]
    walls: list[float] = []
    start = Clock.now()
    for p, k in enumerate(per_person):
        emb = _unit_rows(rng, k)
        crops = _crops(rng, k, spec["crop"])
        c = Clock.now()
        lib.enroll(f"person {p:06d}", emb, crops, [f"bench/{p}"] * k)
        walls.append(c.since()[0])
        if (p + 1) % max(1, persons // 10) == 0:
            print(
                f"  size {size}: {p + 1}/{persons} persons enrolled, {start.since()[0]:.0f} s, "
                f"last call {1000 * walls[-1]:.0f} ms",
                file=sys.stderr,
                flush=True,
            )
    wall, cpu = start.since()
    if len(lib) != size:
        raise RuntimeError(f"library holds {len(lib)} embeddings, expected {size}")
    disk_mb, disk_files = _dir_size_mb(db)
    tenth = max(1, persons // 10)
    return {
        "size": size,
        "persons": persons,
        "crop_bytes": crop_bytes,
        "wall_s": wall,
        "cpu_s": cpu,
        "embeddings_per_s": size / wall,
        "call_ms": stats_ms(walls),
        "first_10pct_call_ms": 1000 * float(np.mean(walls[:tenth])),
        "last_10pct_call_ms": 1000 * float(np.mean(walls[-tenth:])),
        "disk_mb": disk_mb,
        "disk_files": disk_files,
        "rss_start_mb": rss_start,
        "rss_end_mb": current_rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": hwm_rss_mb(),
    }


def worker_query(spec: dict[str, Any]) -> dict[str, Any]:
    """Reopen the library ``loads`` times (timed), then time single and 8-probe matches."""
    import gc

    import numpy as np

    from facetrack.config.schema import DEFAULT_COSINE_THRESHOLD
    from facetrack.inference.opencv import SFACE_MODEL_ID
    from facetrack.library import FaceLibrary

    db = Path(spec["db"])
    rss_start = current_rss_mb()
    loads: list[float] = []
    lib = None
    for _ in range(int(spec["loads"])):
        del lib
        gc.collect()
        c = Clock.now()
        lib = FaceLibrary(db, SFACE_MODEL_ID, DIM)
        loads.append(c.since()[0])
    assert lib is not None
    n = len(lib)
    rss_loaded = current_rss_mb()

    probes = _unit_rows(np.random.default_rng(spec["seed"] + 1), N_PROBES)
    thr = DEFAULT_COSINE_THRESHOLD
    single, single_cpu = _time_calls(lambda i: lib.match(probes[i % N_PROBES], thr), spec["min_calls"], spec["seconds"])
    starts = range(0, N_PROBES - 8 + 1, 8)
    batch, batch_cpu = _time_calls(
        lambda i: lib.match(probes[starts[i % len(starts)] : starts[i % len(starts)] + 8], thr),
        spec["min_calls"],
        spec["seconds"],
    )
    return {
        "embeddings": n,
        "load_s": {"first": loads[0], "min": min(loads), "all": loads},
        "match_single_ms": stats_ms(single),
        "match_single_cpu_ms": 1000 * single_cpu,
        "match_batch8_ms": stats_ms(batch),
        "match_batch8_cpu_ms": 1000 * batch_cpu,
        "rss_start_mb": rss_start,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": hwm_rss_mb(),
    }


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma list of library sizes (embeddings)")
    ap.add_argument("--persons", type=int, default=1000, help="persons the embeddings are spread over")
    ap.add_argument("--crop", choices=["chip", "none"], default="chip", help="~9 KB distinct crops, or b''")
    ap.add_argument("--loads", type=int, default=3, help="times the library is reopened (first and min shown)")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum time per match measurement")
    ap.add_argument("--min-calls", type=int, default=500, help="minimum match calls per measurement")
    ap.add_argument("--blas-threads", type=int, default=None, help="OPENBLAS/OMP threads for match (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="parent of the temp libraries (default: /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the libraries (default: deleted after each size)")
    ap.add_argument("--json", metavar="OUT", help="also write all figures to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        emit_result(worker_build(spec) if spec["kind"] == "build" else worker_query(spec))
        return 0

    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    env = environment()
    print(
        f"# bench_match  ({env['cpu']}, {env['cores']} cores, load {env['loadavg_1m_at_start']:.2f}, "
        f"LanceDB {env['lancedb']}, crops: {args.crop}, BLAS threads: {args.blas_threads or 'default'})\n"
    )
    child_env = None
    if args.blas_threads:
        t = str(args.blas_threads)
        child_env = {"OPENBLAS_NUM_THREADS": t, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t}
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_match_", dir=args.workdir))
    results = []
    try:
        for size in sizes:
            db = tmp / f"lib_{size}.lance"
            common = {"db": str(db), "seed": args.seed}
            print(f"size {size}: enrolling over {min(args.persons, size)} persons...", file=sys.stderr, flush=True)
            build = run_worker(
                __file__, {**common, "kind": "build", "size": size, "persons": args.persons, "crop": args.crop}
            )
            query = run_worker(
                __file__,
                {
                    **common,
                    "kind": "query",
                    "loads": max(1, args.loads),
                    "seconds": args.seconds,
                    "min_calls": args.min_calls,
                },
                env=child_env,
            )
            results.append({"size": size, "build": build, "query": query})
            if not args.keep:
                shutil.rmtree(db, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        markdown_table(
            [
                "embeddings",
                "persons",
                "enrol s",
                "enrol ms/call first→last 10%",
                "disk MB",
                "load s first / min",
                "match 1 mean ms",
                "match 1 p99 ms",
                "match 8 mean ms",
                "match 8 p99 ms",
                "peak RSS MB query / enrol",
            ],
            [
                [
                    r["size"],
                    r["build"]["persons"],
                    r["build"]["wall_s"],
                    f"{r['build']['first_10pct_call_ms']:.1f} → {r['build']['last_10pct_call_ms']:.1f}",
                    r["build"]["disk_mb"],
                    f"{r['query']['load_s']['first']:.3f} / {r['query']['load_s']['min']:.3f}",
                    r["query"]["match_single_ms"]["mean"],
                    r["query"]["match_single_ms"]["p99"],
                    r["query"]["match_batch8_ms"]["mean"],
                    r["query"]["match_batch8_ms"]["p99"],
                    f"{r['query']['peak_rss_mb']:.0f} / {r['build']['peak_rss_mb']:.0f}",
                ]
                for r in results
            ],
        )
    )
    if args.keep:
        print(f"\nlibraries kept in {tmp}")
    write_json(
        args.json,
        {
            "benchmark": "match",
            "environment": env,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
