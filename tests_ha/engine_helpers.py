"""What the end-to-end tests need beside Home Assistant: free loopback ports, a real Mosquitto on
one of them, and the tail of a log for failure messages."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if there is none)."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def mosquitto_path() -> str | None:
    """The mosquitto binary (Debian's package puts it in /usr/sbin), or None."""
    return next((c for c in (shutil.which("mosquitto"), "/usr/sbin/mosquitto") if c and Path(c).exists()), None)


@contextlib.contextmanager
def mosquitto(folder: Path) -> Iterator[int]:
    """Mosquitto on a free 127.0.0.1 port (as tests/mqtt_helpers.Broker), its files in ``folder``;
    yields the port once it accepts connections, stops it after.

    Raises:
        RuntimeError: it did not listen within 10 s (its log is in the message).
    """
    binary = mosquitto_path()
    assert binary is not None, "mosquitto is not installed"
    port = free_port()
    conf = folder / "mosquitto.conf"
    # As root, mosquitto drops to user "mosquitto", who cannot read pytest's private tmp dirs.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{user}")
    log = folder / "mosquitto.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start:\n{log_tail(log)}") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
