"""A stand-in for the Home Assistant Supervisor's HTTP API, enough for the app's service scripts.

bashio calls ``http://supervisor/<resource>`` with ``Authorization: Bearer $SUPERVISOR_TOKEN``
(``bashio::api.supervisor``). This answers what FaceTrack's scripts call, in the Supervisor's
envelope (``{"result": "ok", "data": ...}``):

- ``GET /services/mqtt``: the broker the check started (``bashio::services mqtt ...``);
- ``POST /discovery``: records the announcement, answers a ``uuid`` (``bashio::discovery``);
- ``GET /addons/self/options/config``: the app's options (``bashio::config`` reads them here),
  from ``--options``, the ``/data/options.json`` the container gets;
- ``GET /addons/self/info``, ``GET /info``: minimal app / host info;
- anything else: 404, as the Supervisor answers an unknown resource.

Every request is appended to ``--record`` as one JSON line (method, path, whether the token was
right, JSON body), for ``verify.py`` to check. A wrong token gets 401 like the real Supervisor.

Usage: ``python supervisor.py --bind 172.30.32.2 --port 80 --token T --mqtt-port 1883
--mqtt-username U --mqtt-password P --record requests.jsonl --options options.json``
"""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--token", required=True)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--mqtt-username", required=True)
    parser.add_argument("--mqtt-password", required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--options", type=Path, required=True, help="the app's /data/options.json")
    args = parser.parse_args()
    lock = threading.Lock()

    routes: dict[tuple[str, str], Any] = {
        ("GET", "/services/mqtt"): {
            "host": args.mqtt_host,
            "port": args.mqtt_port,
            "ssl": False,
            "protocol": "3.1.1",
            "username": args.mqtt_username,
            "password": args.mqtt_password,
        },
        ("GET", "/addons/self/options/config"): json.loads(args.options.read_text(encoding="utf-8")),
        ("GET", "/addons/self/info"): {"name": "FaceTrack", "slug": "local_facetrack", "state": "started"},
        ("GET", "/info"): {"supervisor": "stand-in", "arch": "amd64", "machine": "qemux86-64"},
    }

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            authorised = self.headers.get("Authorization") == f"Bearer {args.token}"
            with lock, args.record.open("a", encoding="utf-8") as f:
                record = {"method": method, "path": self.path, "authorised": authorised, "body": body}
                f.write(json.dumps(record) + "\n")
            if not authorised:
                self._send(401, {"result": "error", "message": "Unauthorized"})
            elif method == "POST" and self.path == "/discovery":
                self._send(200, {"result": "ok", "data": {"uuid": uuid.uuid4().hex}})
            elif (method, self.path) in routes:
                self._send(200, {"result": "ok", "data": routes[(method, self.path)]})
            else:
                self._send(404, {"result": "error", "message": f"{self.path} not found"})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are in --record

    ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
