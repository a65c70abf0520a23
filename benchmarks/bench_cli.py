#!/usr/bin/env python
"""Start-up of the ``facetrack`` CLI as a user calls it (issue 16): wall time of whole commands.

Each command runs in a fresh interpreter (``python -m facetrack ...``, what the ``facetrack``
console script runs), ``--repeats`` times; the median wall time is reported, with the child's peak
RSS (``wait4`` rusage of that child alone). Commands:

- ``--version``;
- ``verify IMG1 IMG2`` on two dev photos (``deepface .../img1.jpg`` and ``img2.jpg``, one person);
- ``detect IMG`` on ``img1.jpg``;
- enrolling the dev people of the suggested split (``threshold_curve.suggested_split``: the first
  2 photos of each person with >= 4, 1 for people with 2-3) into a new library: in ONE call
  (``enroll --person NAME=PATH ...``) and with one call per person (``enroll --name NAME PATH...``);
  the wall time of the whole enrolment, a new library each repeat.

``--before PATH`` also runs every command with another engine tree first on ``PYTHONPATH`` (e.g.
``/tmp/facetrack-before/addon``), alternating before/after runs so both see the same machine
load. A tree without multi-person enrolment (``--person``) gets only the one-call-per-person row.

Bytecode: the children run with ``PYTHONPYCACHEPREFIX`` under ``--workdir`` and without
``PYTHONDONTWRITEBYTECODE``, as an installed package (pip compiles it) runs; one untimed warm-up
call per command and tree (the first call of a multi-call case) fills that cache and the page cache.

    .venv/bin/python benchmarks/bench_cli.py --before /tmp/facetrack-before/addon \\
        --json benchmarks/results/cli_issue16.json

The parent imports neither OpenCV nor the engine (``benchmarks/_common.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import DATA, ROOT, environment, markdown_table, write_json

#: The two verify photos and the detect photo (one person, one face each).
PHOTOS = DATA / "deepface/tests/unit/dataset"
VERIFY = (PHOTOS / "img1.jpg", PHOTOS / "img2.jpg")
DETECT = PHOTOS / "img1.jpg"

_SPLIT = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from threshold_curve import load_labels, suggested_split\n"
    "print(json.dumps(suggested_split(load_labels(Path(sys.argv[1])))[0]))\n"
)


def dev_people(data: Path) -> dict[str, list[str]]:
    """``{person: [absolute photo path, ...]}`` of the suggested split, from threshold_curve itself.

    Run in a child: ``threshold_curve`` imports numpy and the engine, which the parent must not.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT / "addon")])}
    out = subprocess.run(
        [sys.executable, "-c", _SPLIT, str(data)], env=env, capture_output=True, text=True, check=True
    ).stdout
    return {person: [str(data / p) for p in paths] for person, paths in json.loads(out).items()}


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, int, str]:
    """``(wall_s, cpu_s, peak_rss_mb, exit code, stdout)`` of ``python -m facetrack ARGV`` in a fresh process.

    ``cpu_s`` is the child's user + system CPU time, all threads: unlike the wall time, it hardly
    moves with the load of other processes on the machine.
    """
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "facetrack", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode, out


def child_env(engine: Path, workdir: Path) -> dict[str, str]:
    """The environment of a measured call: ``engine`` first on the path, bytecode cached outside it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(engine)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def supports_many(env: dict[str, str]) -> bool:
    """Does this engine tree's ``enroll`` take ``--person NAME=PATH``?"""
    return (
        "--person"
        in subprocess.run(
            [sys.executable, "-m", "facetrack", "enroll", "--help"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    )


class Case:
    """One measured command: how to run it once (fresh library where it writes one)."""

    def __init__(self, name: str, calls: list[list[str]], db: bool = False, check: bool = True) -> None:
        self.name = name
        self.calls = calls  # argv lists; ``{db}`` is replaced with a fresh library path
        self.db = db
        self.check = check

    def once(self, env: dict[str, str], workdir: Path) -> dict[str, Any]:
        db = workdir / "faces.lance"
        if self.db:
            shutil.rmtree(db, ignore_errors=True)
        wall = cpu = peak = 0.0
        enrolled = 0
        people = 0
        for call in self.calls:
            argv = [str(db) if a == "{db}" else a for a in call]
            w, c, rss, code, out = run(argv, env)
            wall += w
            cpu += c
            peak = max(peak, rss)
            if self.check and code != 0:
                raise RuntimeError(f"{self.name}: exit {code} for {' '.join(argv[:6])} ...\n{out[-1000:]}")
            if argv[0] == "enroll":
                results = [json.loads(line) for line in out.splitlines() if line.strip()]
                enrolled += sum(int(r.get("enrolled", 0)) for r in results)
                people += sum(1 for r in results if r.get("enrolled"))
        row: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "calls": len(self.calls)}
        if self.db:
            row |= {"people": people, "embeddings": enrolled}
        return row


def cases(people: dict[str, list[str]]) -> list[Case]:
    one_call = ["enroll", "--db", "{db}", "--person"]
    for person, paths in people.items():
        one_call += [f"{person}={p}" for p in paths]
    return [
        Case("version", [["--version"]]),
        Case("verify", [["verify", str(VERIFY[0]), str(VERIFY[1])]]),
        Case("detect", [["detect", str(DETECT)]]),
        # Exit 1 would mean someone got nothing: every dev person has a usable enrolment photo.
        Case("enroll-one-call", [one_call], db=True),
        Case(
            "enroll-per-person",
            [["enroll", "--db", "{db}", "--name", person, *paths] for person, paths in people.items()],
            db=True,
        ),
    ]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    out = {
        "wall_s_median": statistics.median(walls),
        "wall_s_min": min(walls),
        "wall_s_max": max(walls),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "repeats": len(runs),
        "calls": runs[0]["calls"],
    }
    if "people" in runs[0]:
        out |= {"people": runs[0]["people"], "embeddings": runs[0]["embeddings"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="fresh-process runs per command (median)")
    p.add_argument("--enrol-repeats", type=int, help="runs of each enrolment (default: --repeats)")
    p.add_argument("--only", nargs="+", help="cases to run: version verify detect enroll-one-call enroll-per-person")
    p.add_argument("--engine", default=str(ROOT / "addon"), help="the 'after' engine tree (default: this checkout)")
    p.add_argument("--before", help="also run this engine tree (e.g. /tmp/facetrack-before/addon)")
    p.add_argument("--data", default=str(DATA), help="shared data folder (labels.csv)")
    p.add_argument("--workdir", default="/tmp/bench-cli", help="scratch: libraries, bytecode cache")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    trees = {"after": Path(args.engine)} | ({"before": Path(args.before)} if args.before else {})
    envs = {label: child_env(tree, workdir / label) for label, tree in trees.items()}
    many = {label: supports_many(env) for label, env in envs.items()}
    people = dev_people(Path(args.data))
    todo = [c for c in cases(people) if not args.only or c.name in args.only]
    env_info = environment()
    print(f"{len(people)} dev people, {sum(map(len, people.values()))} photos; load {os.getloadavg()}", flush=True)

    results: dict[str, dict[str, Any]] = {label: {} for label in trees}
    for case in todo:
        labels = [label for label in trees if many[label] or case.name != "enroll-one-call"]
        warm_up = Case(case.name, case.calls[:1], case.db)  # bytecode and page cache: one call is enough
        for label in labels:
            warm_up.once(envs[label], workdir / label)
        repeats = args.enrol_repeats if case.db and args.enrol_repeats else args.repeats
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
        for _ in range(repeats):
            for label in labels:  # interleaved: both trees see the same load
                runs[label].append(case.once(envs[label], workdir / label))
        for label in labels:
            results[label][case.name] = summarise(runs[label])
            s = results[label][case.name]
            print(
                f"{label:6} {case.name:18} {s['wall_s_median']:7.2f} s wall {s['cpu_s_median']:7.2f} s CPU "
                f"{s['peak_rss_mb_max']:6.0f} MB",
                flush=True,
            )

    rows = []
    for case in todo:
        row: list[Any] = [case.name]
        for label in trees:
            s = results[label].get(case.name)
            row += [s["wall_s_median"], s["cpu_s_median"], s["peak_rss_mb_max"]] if s else ["n/a"] * 3
        rows.append(row)
    headers = ["command"] + [f"{label} {what}" for label in trees for what in ("wall s", "CPU s", "peak RSS MB")]
    print()
    print(markdown_table(headers, rows))
    write_json(
        args.json,
        {
            "benchmark": "bench_cli",
            "environment": env_info | {"loadavg_1m_at_end": os.getloadavg()[0]},
            "engines": {label: str(tree) for label, tree in trees.items()},
            "bytecode_cache": True,
            "repeats": args.repeats,
            "photos": {"verify": [str(v) for v in VERIFY], "detect": str(DETECT)},
            "dev_people": {person: len(paths) for person, paths in people.items()},
            "results": results,
            "parent_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        },
    )


if __name__ == "__main__":
    main()
