"""Run inside a private network namespace (``unshare -n``): a DeGirum AI server plus engine clients.

``degirum server start`` has no bind-address option: it listens on every interface. In a fresh
network namespace the only interface is loopback, so nothing outside this machine can reach it.
The probe brings ``lo`` up, starts the AI server on the bundled zoo (YuNet + SFace on ONNX/CPU),
then runs two engine backends against it at once (two instances sharing one AI server, as in
docs/scale-out.md) and one in-process backend on the same photos, and prints the comparison as JSON.

Usage: ``python degirum_server_probe.py PORT PHOTO...``
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from facetrack.inference.degirum import DeGirumBackend, DeGirumOptions, bundled_zoo_path, onnxruntime_library


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"degirum server exited with {proc.returncode}")  # its log: $TMPDIR/ort-*/server.log
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"degirum server did not listen on {port} within {timeout:g} s")


def _run(backend: DeGirumBackend, images: list[np.ndarray]) -> list[dict[str, object]]:
    out = []
    for image in images:
        dets = backend.detect(image)
        emb = backend.embed(image, dets) if dets else np.zeros((0, backend.embedding_dim), np.float32)
        out.append({"boxes": [np.asarray(d.box).tolist() for d in dets], "emb": emb.tolist()})
    return out


def main() -> int:
    port = int(sys.argv[1])
    images = [cv2.imread(p) for p in sys.argv[2:]]
    if any(i is None for i in images):
        raise SystemExit("unreadable photo")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    lib = onnxruntime_library()
    env = dict(os.environ)
    libdir = Path(tempfile.mkdtemp(prefix="ort-"))
    if lib is not None:
        # The server process loads DeGirum's ONNX plugin, which needs ORT 1.20.1 under its SONAME
        # libonnxruntime.so.1 (the wheel only has libonnxruntime.so.1.20.1).
        (libdir / "libonnxruntime.so.1").symlink_to(lib)
        env["LD_LIBRARY_PATH"] = f"{libdir}:{env.get('LD_LIBRARY_PATH', '')}"
    degirum = Path(sys.executable).with_name("degirum")
    server = subprocess.Popen(
        [str(degirum), "server", "start", "--zoo", str(bundled_zoo_path()), "--port", str(port), "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=(libdir / "server.log").open("wb"),
    )  # fmt: skip
    try:
        _wait_for_port(port, server)
        local = _run(DeGirumBackend(DeGirumOptions(device="ONNX/CPU")), images)
        remote: dict[int, list[dict[str, object]]] = {}
        errors: list[str] = []

        def client(i: int) -> None:
            try:
                remote[i] = _run(DeGirumBackend(DeGirumOptions(device="ONNX/CPU", host=f"127.0.0.1:{port}")), images)
            except Exception as err:  # reported in the JSON, the test fails on it
                errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        unreachable = DeGirumBackend(DeGirumOptions(device="ONNX/CPU", host=f"127.0.0.1:{port + 1}"))
        try:
            unreachable.load()
            unreachable_error = ""
        except Exception as err:
            unreachable_error = f"{type(err).__name__}: {err}"
        print(json.dumps({"local": local, "remote": [remote.get(i) for i in range(2)], "errors": errors,
                          "unreachable_error": unreachable_error}))  # fmt: skip
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    raise SystemExit(main())
