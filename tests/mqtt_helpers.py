"""A real Mosquitto broker on a free loopback port, and a subscriber that validates payloads."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in SCHEMAS_DIR.glob("*.json")}


def mosquitto_binary() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Mosquitto on 127.0.0.1:``port``; ``restart`` keeps the port. No persistence: a restart loses
    retained messages, so anything retained after it was republished by the engine."""

    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        # As root, mosquitto drops to user "mosquitto", who cannot read pytest's private tmp dirs.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{user}{extra_conf}"
        )
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start; log:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def schema_for(topic: str, prefix: str) -> str | None:
    parts = topic.removeprefix(prefix + "/").split("/")
    if parts[0] in ("info", "persons"):
        return parts[0]
    if parts == ["inbox"]:
        return "inbox"
    if parts == ["library"]:
        return "library"
    if parts == ["inbox", "event"]:
        return "inbox_event"
    if parts[0] in ("response", "seen"):
        return parts[0]
    # command/<verb> are the test's own requests (some deliberately malformed): not validated here.
    if len(parts) == 2 and parts[1] in ("state", "track", "alert", "clip"):
        return parts[1]
    return None


@dataclass
class Received:
    topic: str
    payload: Any
    retain: bool
    qos: int
    at: float


@dataclass
class Subscriber:
    """Subscribes to ``<prefix>/#``; validates every JSON payload against its schema on arrival."""

    port: int
    prefix: str = "facetrack"
    messages: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{free_port()}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{self.prefix}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)

    def start(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        raw = bytes(msg.payload)
        payload: Any = raw.decode(errors="replace")
        name = schema_for(msg.topic, self.prefix)
        if name is not None and raw:
            try:
                payload = json.loads(raw)
                jsonschema.validate(payload, SCHEMAS[name], format_checker=jsonschema.FormatChecker())
            except (json.JSONDecodeError, jsonschema.ValidationError) as err:
                self.errors.append(f"{msg.topic}: {err}")
        with self.cond:
            self.messages.append(Received(msg.topic, payload, bool(msg.retain), msg.qos, time.time()))
            self.cond.notify_all()

    def find(self, topic_suffix: str, pred: Any = None) -> list[Received]:
        with self.cond:
            return [m for m in self.messages if m.topic.endswith(topic_suffix) and (pred is None or pred(m))]

    def wait_for(self, topic_suffix: str, pred: Any = None, timeout: float = 30.0, count: int = 1) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in self.messages if m.topic.endswith(topic_suffix) and (pred is None or pred(m))]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"timed out waiting for {count} x {topic_suffix}; topics seen: {seen}")
                self.cond.wait(left)

    def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.client.publish(topic, data, qos=qos).wait_for_publish(5)
