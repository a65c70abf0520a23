"""A real Mosquitto broker on a free loopback port, and a subscriber that validates payloads."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
#: Waits for engine events are stretched by this factor: the timeouts written in the tests are for
#: an idle 2-core machine; a CI box under load (or a Pi) may take several times as long to start an
#: engine and play a clip. Only a failing test waits longer; nothing asserted depends on it.
WAIT_SCALE = float(os.environ.get("FACETRACK_TEST_WAIT_SCALE", "4"))
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
        # A unique id (a free port number can repeat): two clients with one id push each other off.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:16]}")
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
        """The messages on ``*topic_suffix`` (matching ``pred``) once there are ``count``; waits at
        most ``timeout`` x :data:`WAIT_SCALE` s (a loaded machine), then fails naming what came."""
        deadline = time.monotonic() + timeout * WAIT_SCALE
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


class Gate:
    """A TCP relay on 127.0.0.1:``port`` to a broker's port that a test opens and closes.

    While closed, connections through it are accepted and closed at once (the client sees the
    broker as down and retries), and closing cuts the ones relayed. A test that restarts the
    broker keeps the gate closed until its own subscriber is subscribed again, so that a client
    flushing what it kept during the outage never races the subscriber back onto the broker.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.is_open = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self) -> None:
        self.is_open.set()

    def close(self) -> None:
        self.is_open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def stop(self) -> None:
        self.close()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            if not self.is_open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def wait_subscribed(sub: Subscriber, timeout: float = 60.0) -> None:
    """Block until ``sub`` is (again) subscribed: a probe it publishes comes back to it."""
    probe = f"{sub.prefix}/probe/{uuid.uuid4().hex}"
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(RuntimeError, ValueError):  # not connected (yet): try again
            sub.client.publish(probe, b"probe", qos=1)
        try:
            sub.wait_for(probe, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
