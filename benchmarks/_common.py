"""Helpers shared by the benchmark scripts (not a test module; not imported by the engine).

Every measured configuration runs in a fresh child process (``run_worker``) so that its peak RSS
belongs to that configuration alone. Linux carries the parent's RSS high-water mark into a child's
``ru_maxrss`` across fork/exec, so the parent process must stay small: it never imports OpenCV,
LanceDB or the engine (all of that happens in workers), and the workers also report ``VmHWM``
(the high-water mark of their own address space) as a cross-check.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared")).resolve() / "data"
DEFAULT_WORKDIR = Path("/tmp/bench")
_RESULT_TAG = "BENCH_RESULT "


# ---- clocks and memory ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clock:
    """A reading of wall time (``perf_counter``) and process CPU time (all threads)."""

    wall: float
    cpu: float

    @staticmethod
    def now() -> Clock:
        return Clock(time.perf_counter(), time.process_time())

    def since(self) -> tuple[float, float]:
        """``(wall_s, cpu_s)`` elapsed since this reading."""
        n = Clock.now()
        return n.wall - self.wall, n.cpu - self.cpu


def rusage_cpu_s() -> float:
    """User + system CPU seconds of this process, all threads (``getrusage(RUSAGE_SELF)``)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (``ru_maxrss`` is KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _proc_status_mb(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def current_rss_mb() -> float:
    """Current resident set size, MB (``/proc/self/status`` VmRSS; NaN where unavailable)."""
    return _proc_status_mb("VmRSS")


def hwm_rss_mb() -> float:
    """Peak RSS of this process image, MB (``/proc/self/status`` VmHWM; NaN where unavailable)."""
    return _proc_status_mb("VmHWM")


def stats_ms(samples_s: list[float] | np.ndarray) -> dict[str, float]:
    """Mean / p50 / p99 / max of durations given in seconds, returned in milliseconds."""
    import numpy as np

    a = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {"n": 0, "mean": float("nan"), "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


# ---- environment ------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Machine and library versions, and the load average (was the machine quiet?).

    Versions come from package metadata: the parent process must not import them (see above).
    """
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_1m_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "opencv": ver("opencv-python"),
        "numpy": ver("numpy"),
        "lancedb": ver("lancedb"),
        "pylance": ver("pylance"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


# ---- child processes --------------------------------------------------------------------------


def run_worker(script: str | Path, spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --worker SPEC_JSON`` in a fresh interpreter and return its result dict.

    The child prints its result as one ``BENCH_RESULT {json}`` line on stdout; its stderr (logs,
    errors) is passed through. ``env`` entries are added to the child's environment.
    """
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG) :])
    raise RuntimeError(f"benchmark worker failed (exit {proc.returncode}) for {spec}:\n{proc.stdout[-2000:]}")


def emit_result(result: dict[str, Any]) -> None:
    """Print a worker's result for :func:`run_worker`."""
    print(_RESULT_TAG + json.dumps(result), flush=True)


# ---- output -----------------------------------------------------------------------------------


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats get 3 significant-ish decimals."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            if abs(v) >= 100:
                return f"{v:.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            if abs(v) >= 0.1:
                return f"{v:.2f}"
            return f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    """Write the figures to ``path`` (if given), pretty-printed."""
    if path is None:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"\nfigures written to {p}")
