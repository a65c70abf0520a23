"""The CLI loads only what a command uses (issue 16): ``--version`` no engine part, and ``detect``
and ``verify`` OpenCV and the models but never the face library's LanceDB/pyarrow, nor MinIO,
Apprise, aiohttp, paho or the tracker; checked in a fresh interpreter, as a user's call would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Never loaded by ``--version``, ``detect`` or ``verify``.
HEAVY = ("lancedb", "pyarrow", "lance", "minio", "apprise", "aiohttp", "paho", "supervision", "trackers")


def _loaded_after(*argvs: list[str]) -> list[str]:
    """Run ``facetrack.cli.main(argv)`` for each ``argv`` in one fresh interpreter; the modules then loaded."""
    code = (
        "import json, sys\n"
        "from facetrack.cli import main\n"
        f"for argv in {argvs!r}:\n"
        "    try:\n"
        "        code = main(argv)\n"
        "    except SystemExit as done:\n"
        "        code = done.code\n"
        "    assert code == 0, (argv, code)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    path = os.pathsep.join(filter(None, [str(ROOT / "addon"), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=True,
        timeout=300,
    )
    return list(json.loads(done.stdout.splitlines()[-1]))


def _matching(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in names))


def test_version_loads_no_engine_part() -> None:
    loaded = _loaded_after(["--version"])
    assert "facetrack.cli" in loaded
    assert not _matching(loaded, (*HEAVY, "cv2", "numpy", "PIL", "yaml", "voluptuous")), "--version"
    assert _matching(loaded, ("facetrack",)) == ["facetrack", "facetrack.cli", "facetrack.errors"]


def test_detect_and_verify_load_no_library_nor_service_parts(data_dir: Path) -> None:
    d = data_dir / "deepface/tests/unit/dataset"
    loaded = _loaded_after(["detect", str(d / "img1.jpg")], ["verify", str(d / "img1.jpg"), str(d / "img2.jpg")])
    assert {"cv2", "facetrack.inference.opencv", "facetrack.recognizer"} <= set(loaded)  # the work was done
    assert not _matching(loaded, HEAVY)
    assert not _matching(loaded, ("facetrack.track.face_tracker", "facetrack.record", "facetrack.comms"))
