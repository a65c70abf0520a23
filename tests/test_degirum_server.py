"""The degirum backend against a real DeGirum AI server (``host: 127.0.0.1:PORT``), on this CPU.

The AI server (``degirum server start``) cannot be told which address to bind: it listens on all
interfaces. The test therefore runs it, and its clients, inside a private network namespace
(``unshare -n``: loopback only), through tests/degirum_server_probe.py. Two backends share the one
server at once (two engine instances, docs/scale-out.md) and must give what in-process ONNX/CPU gives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("degirum")

PROBE = Path(__file__).with_name("degirum_server_probe.py")


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.skipif(not _can_unshare(), reason="needs unshare -n (root) and iproute2 for a private network"),
    pytest.mark.timeout(400),
]


def test_ai_server_matches_in_process_inference(data_dir: Path, labels: list[dict[str, str]]) -> None:
    """Two clients of one AI server get the in-process boxes (< 0.5 px) and embeddings (cosine >= 0.999)."""
    photos = [data_dir / row["path"] for row in labels[:: max(1, len(labels) // 6)][:6]]
    assert len(photos) >= 3
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, str(PROBE), "8778", *map(str, photos)],
        capture_output=True, text=True, timeout=360,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    local = result["local"]
    assert sum(len(r["boxes"]) for r in local) >= 3  # real faces were found
    for remote in result["remote"]:
        assert remote is not None
        for mine, theirs in zip(local, remote, strict=True):
            assert len(mine["boxes"]) == len(theirs["boxes"])
            if not mine["boxes"]:
                continue
            assert np.abs(np.array(mine["boxes"]) - np.array(theirs["boxes"])).max() < 0.5  # pixels
            cos = (np.array(mine["emb"]) * np.array(theirs["emb"])).sum(axis=1)
            assert cos.min() >= 0.999
    # A server that is not there: a clear error naming what to check.
    assert "InferenceUnavailableError" in result["unreachable_error"]
    assert "AI server running" in result["unreachable_error"]
