"""The engine's module map, read from its imports: no circle of files, and each layer imports only
what is below it (issue 13).

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a circle a reader
has to untangle is one, whether Python runs into it at import time or not. ``from pkg import mod``
counts as an import of ``pkg.mod`` (the package's ``__init__`` runs first, as for any submodule,
which is not an edge of its own).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "addon" / "facetrack"

#: Layers, lowest first: a module may import its own layer's and lower layers' modules only.
#: (The names are module-name prefixes, the longest match wins; the service, the CLI and the entry
#: point are the top.)
LAYERS: list[tuple[str, ...]] = [
    ("facetrack.errors", "facetrack.config", "facetrack.objectstore", "facetrack.logutil", "facetrack.web.signing",
     "facetrack.pose"),
    ("facetrack.inference", "facetrack.events", "facetrack.quality", "facetrack.images", "facetrack.library",
     "facetrack.matching",
     "facetrack.cluster", "facetrack.alerts"),
    ("facetrack.track", "facetrack.annotate", "facetrack.recognizer", "facetrack.inbox.store"),
    ("facetrack.camera.source", "facetrack.camera.stream", "facetrack.camera.runner"),
    ("facetrack.record", "facetrack.camera", "facetrack.comms", "facetrack.pipeline", "facetrack.findfaces",
     "facetrack.verbs"),
    ("facetrack.alerting", "facetrack.inbox", "facetrack.notify", "facetrack.commands", "facetrack.enrich"),
    ("facetrack.web", "facetrack.inbox.web"),
    ("facetrack.service", "facetrack.cli", "facetrack.__main__"),
]  # fmt: skip


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` (file ``path``) imports, anywhere in it."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        else:
            continue
        for target in targets:
            module = target
            while module and module not in known:  # `import a.b.c` of a non-module name
                module = module.rpartition(".")[0]
            if module and module != name:
                out.add(module)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int:
    if module == "facetrack":  # the package itself: its version and URL, importing nothing
        return 0
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


def test_the_checker_sees_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_circle_of_files() -> None:
    graph = _graph()
    assert len(graph) > 40  # the package was found
    assert _cycles(graph) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in _graph() if _layer(m) < 0] == []


@pytest.mark.parametrize("low", ["facetrack.config", "facetrack.track", "facetrack.camera.runner"])
def test_lower_layers_import_nothing_above_them(low: str) -> None:
    graph = _graph()
    bad = {
        m: sorted(d for d in deps if _layer(d) > _layer(m))
        for m, deps in graph.items()
        if m == low or m.startswith(low + ".")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_layers_are_respected_everywhere() -> None:
    graph = _graph()
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m))
    assert upward == []


def test_the_rtsp_publisher_loads_no_engine() -> None:
    """MediaMTX starts the publisher on demand and gives it 15 s (runOnDemandStartTimeout): its
    imports must not load the tracker, the library or the HTTP server (they took ~30 s on a
    loaded 2-core machine when ``facetrack.web`` imported its submodules eagerly)."""
    code = (
        "import sys, facetrack.record.rtsp, facetrack.web.signing, facetrack.config.service\n"
        "print(sorted(m for m in ('lancedb', 'aiohttp', 'facetrack.track', 'facetrack.library')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
