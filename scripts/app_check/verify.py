"""Checks a running FaceTrack app container from outside, as Home Assistant would meet it.

Run by ``scripts/check_app_image.sh`` inside its private network namespace, after the container
started. Exit status 0 when every check holds, 1 otherwise (each failure printed). Waits on
events with generous timeouts (a loaded machine may take minutes to load the models); asserts
no durations.

Checks:
1. MQTT (with the credentials the stand-in Supervisor handed out): ``<prefix>/status`` is
   ``online``; the retained ``<prefix>/info`` names the configured camera; the camera's retained
   ``state`` reaches ``online`` with frames per second above zero.
2. The app announced itself: the stand-in Supervisor recorded ``POST /discovery`` with service
   ``facetrack`` and the topic prefix, with the right token; and ``GET /services/mqtt``.
3. Ingress: the page answers the Supervisor's address (172.30.32.2) with the FaceTrack page, and
   refuses any other peer (403).
4. The container log has no error and no traceback.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SUPERVISOR_ADDRESS = "172.30.32.2"


class Watch:
    """Collects the prefix's retained and live messages."""

    def __init__(self, host: str, port: int, username: str, password: str, prefix: str) -> None:
        self.prefix = prefix
        self.latest: dict[str, bytes] = {}
        self.history: dict[str, list[bytes]] = {}
        self.changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="facetrack-app-check")
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.latest[msg.topic] = msg.payload
            self.history.setdefault(msg.topic, []).append(msg.payload)
            self.changed.notify_all()

    def wait_for(self, topic: str, test: Any, timeout: float) -> bytes | None:
        """The first payload of ``topic`` (so far or to come) for which ``test(payload)`` holds, or
        None at timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for payload in self.history.get(f"{self.prefix}/{topic}", []):
                    if test(payload):
                        return payload
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _http_status(url: str, source: str) -> tuple[int, str]:
    """GET ``url`` from the local address ``source``: (status, body)."""
    host, _, port = url.split("/")[2].partition(":")
    with socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0)) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode("utf-8", "replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--mqtt-username", required=True)
    parser.add_argument("--mqtt-password", required=True)
    parser.add_argument("--prefix", default="facetrack")
    parser.add_argument("--camera", required=True)
    parser.add_argument("--requests", type=Path, required=True, help="the stand-in Supervisor's record")
    parser.add_argument("--ingress-port", type=int, default=8100)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the engine")
    args = parser.parse_args()
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    watch = Watch("127.0.0.1", args.mqtt_port, args.mqtt_username, args.mqtt_password, args.prefix)
    status = watch.wait_for("status", lambda p: p == b"online", args.timeout)
    check(status is not None, f"{args.prefix}/status is online (connected with the Supervisor's MQTT credentials)")
    info = watch.wait_for("info", lambda p: _json(p) is not None, args.timeout)
    cameras = (_json(info) or {}).get("cameras", []) if info else []
    names = [c.get("name") if isinstance(c, dict) else c for c in cameras]
    check(args.camera in names, f"{args.prefix}/info lists camera {args.camera!r} (got {names})")
    state = watch.wait_for(
        f"{args.camera}/state",
        lambda p: (_json(p) or {}).get("state") == "online" and (_json(p) or {}).get("fps", 0) > 0,
        args.timeout,
    )
    last = watch.latest.get(f"{args.prefix}/{args.camera}/state", b"")
    check(state is not None, f"{args.camera}/state is online with frames/s > 0 (last: {last.decode(errors='replace')})")

    records = [json.loads(ln) for ln in args.requests.read_text(encoding="utf-8").splitlines() if ln.strip()]
    discovery = [r for r in records if r["method"] == "POST" and r["path"] == "/discovery"]
    check(
        any(
            r["authorised"]
            and isinstance(r["body"], dict)
            and r["body"].get("service") == "facetrack"
            and r["body"].get("config", {}).get("topic_prefix") == args.prefix
            for r in discovery
        ),
        f"the Supervisor received the discovery message (service facetrack, topic_prefix {args.prefix}): {discovery}",
    )
    check(
        any(r["path"] == "/services/mqtt" and r["authorised"] for r in records),
        "the run script asked the Supervisor for the MQTT service with the app's token",
    )
    check(all(r["authorised"] for r in records), "every Supervisor call carried the app's token")

    url = f"http://127.0.0.1:{args.ingress_port}/"
    try:
        code, body = _http_status(url, SUPERVISOR_ADDRESS)
        check(code == 200 and "FaceTrack" in body, f"ingress page answers the Supervisor ({code})")
        code, _ = _http_status(url, "127.0.0.1")
        check(code == 403, f"ingress refuses other peers ({code})")
    except (OSError, ValueError, IndexError, urllib.error.URLError) as err:
        check(False, f"ingress page: {err}")

    watch.client.loop_stop()
    watch.client.disconnect()
    print(f"{len(failures)} failed" if failures else "all app checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
