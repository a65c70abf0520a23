"""``facetrack.config`` is the bottom layer: reading a configuration loads no engine part.

``comms/mqtt.py`` needs :class:`~facetrack.config.service.MQTTConfig` and the HA app's option
mapping runs before the engine starts, so neither may pay for LanceDB, MinIO, OpenCV or Apprise.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "addon" / "facetrack" / "config"
#: What ``facetrack.config`` modules may import from the package.
ALLOWED = ("facetrack.config", "facetrack.errors", "facetrack.objectstore")
#: Third-party and engine modules that must stay unloaded by reading a configuration.
HEAVY = ("lancedb", "minio", "aiohttp", "apprise", "cv2", "numpy", "paho", "facetrack.inbox", "facetrack.record")


def _facetrack_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``facetrack`` import in ``path``, lazy ones included."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "facetrack"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package of the file
                base = ["facetrack", "config"][: max(0, 3 - node.level)]
                out.append((node.lineno, ".".join([*base, *filter(None, [node.module])])))
            elif node.module == "facetrack":  # from facetrack import x
                out += [(node.lineno, f"facetrack.{a.name}") for a in node.names]
            elif node.module and node.module.split(".")[0] == "facetrack":
                out.append((node.lineno, node.module))
    return out


def test_config_imports_nothing_above_it() -> None:
    files = sorted(CONFIG.rglob("*.py"))
    assert files
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files
        for line, module in _facetrack_imports(path)
        if not any(module == a or module.startswith(a + ".") for a in ALLOWED)
    ]
    assert not bad, "facetrack.config imports a higher layer:\n" + "\n".join(bad)


def test_reading_a_configuration_loads_no_engine_part() -> None:
    code = (
        "import json, sys\n"
        "import facetrack.config.service, facetrack.config.addon\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    path = os.pathsep.join(filter(None, [str(ROOT / "addon"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    loaded = json.loads(done.stdout)
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not heavy, f"importing facetrack.config loads {heavy}"
    assert "facetrack.config.service" in loaded
