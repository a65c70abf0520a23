"""Face library: cost of the damage checks and backups (issue 17).

Builds a library of ``--embeddings`` embeddings (``--batch`` per commit, 6 KB crops like the
enrolment crops) and measures, each in a child process: the time of one enrolment commit (with
the integrity record and the ``latest`` backup), and the time to open the library (which verifies
every table file's SHA-256). ``--engine PATH`` runs the children with another copy of the engine
first on ``sys.path`` (e.g. an untouched checkout, to compare).

    .venv/bin/python benchmarks/bench_library_open.py
    .venv/bin/python benchmarks/bench_library_open.py --embeddings 300 --engine /tmp/facetrack-orig/addon
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, statistics, sys, time
import numpy as np
from facetrack.library import FaceLibrary
db, n, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
lib = FaceLibrary(db, "bench", 128)
commits = []
for i in range(0, n, batch):
    e = rng.standard_normal((batch, 128)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    t = time.perf_counter()
    lib.enroll(f"P{i // batch}", e, [rng.bytes(6000) for _ in range(batch)], ["bench"] * batch)
    commits.append(time.perf_counter() - t)
opens = []
for _ in range(repeats):
    t = time.perf_counter()
    again = FaceLibrary(db, "bench", 128)
    opens.append(time.perf_counter() - t)
    assert len(again) == n
print(json.dumps({
    "engine": __import__("facetrack").__file__, "embeddings": n, "commits": len(commits),
    "commit_ms_median": 1000 * statistics.median(commits), "open_ms_median": 1000 * statistics.median(opens),
    "open_ms_min": 1000 * min(opens),
}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embeddings", type=int, default=300)
    p.add_argument("--batch", type=int, default=3, help="embeddings per enrolment commit")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--engine", help="engine folder put first on sys.path (default: this checkout)")
    args = p.parse_args()
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = args.engine or str(root / "addon")
    work = Path(tempfile.mkdtemp(prefix="bench-library-"))
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(work / "faces.lance"), str(args.embeddings), str(args.batch),
             str(args.repeats)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        result = json.loads(out)
        result["load_1min"] = os.getloadavg()[0]
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(str(work / "faces.lance") + ".backups", ignore_errors=True)


if __name__ == "__main__":
    main()
