"""MQTT outbox benchmark: alerts raised vs delivered when a broker outage fills the outbox.

The engine's MQTT client (``facetrack.comms.mqtt.MqttClient``, default limit) is cut off a real
Mosquitto (stopped, then restarted); meanwhile it publishes ``--messages`` QoS 1 messages: every
``--alert-every``-th an alert (``<prefix>/door/alert``, ~700 B, like a real one), the others
non-alerts of ``--pad`` bytes (like ``clip`` / ``inbox`` payloads, on ``<prefix>/door/note``).
After the restart a subscriber counts what arrives. Run it against another engine checkout to
compare, e.g. today's main:

    PYTHONPATH=/tmp/facetrack-orig/addon .venv/bin/python benchmarks/bench_mqtt_outbox.py
    .venv/bin/python benchmarks/bench_mqtt_outbox.py --json benchmarks/results/mqtt_outbox.json

No wall-clock figure is measured: only counts (raised, delivered, duplicated, dropped).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--alert-every", type=int, default=25)
    ap.add_argument("--pad", type=int, default=4000, help="non-alert payload padding, bytes")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import facetrack
    from facetrack.comms.mqtt import MqttClient
    from facetrack.config.service import MQTTConfig
    from mqtt_helpers import Broker, Gate, Subscriber, wait_subscribed

    with tempfile.TemporaryDirectory() as tmp:
        # Mosquitto keeps at most 1000 messages per slow subscriber by default: lift that here so
        # the counts are the engine's alone.
        broker = Broker(Path(tmp), extra_conf="max_queued_messages 0\n")
        broker.start()
        gate = Gate(broker.port)
        gate.open()
        sub = Subscriber(broker.port, prefix="bench").start()
        wait_subscribed(sub)
        client = MqttClient(MQTTConfig(port=gate.port, client_id="bench-outbox", topic_prefix="bench"), None, None, 1)
        client.start()
        wait_until(client.connected.is_set, 60, "the connection")
        gate.close()
        broker.stop()
        wait_until(lambda: not client.connected.is_set(), 60, "the outage")
        alerts = nonalerts = 0
        for seq in range(args.messages):
            if seq % args.alert_every == 0:
                alerts += 1
                body = {"seq": seq, "alert_id": f"{seq:032x}", "camera": "door", "pad": "a" * 500}
                client.publish_json("bench/door/alert", body, qos=1)
            else:
                nonalerts += 1
                # (a topic the test subscriber has no schema for: it would spend its time validating)
                client.publish_json("bench/door/note", {"seq": seq, "pad": "x" * args.pad}, qos=1)
        broker.start()
        wait_subscribed(sub)
        gate.open()
        wait_until(client.connected.is_set, 120, "the reconnection")
        # A marker after everything kept (again every 5 s: a full paho queue refuses it).
        for _ in range(120):
            client.publish_json("bench/door/marker", {"seq": args.messages}, qos=1)
            try:
                sub.wait_for("door/marker", timeout=5)
                break
            except AssertionError:
                continue
        got = [json.loads(m.payload) if isinstance(m.payload, str) else m.payload for m in sub.find("door/alert")]
        clips = sub.find("door/note")
        stats = client.outbox_stats() if hasattr(client, "outbox_stats") else None
        client.stop()
        sub.stop()
        gate.stop()
        broker.stop()
    seqs = [a["seq"] for a in got]
    result = {
        "engine": str(Path(facetrack.__file__).parent),
        "messages": args.messages,
        "outbox_limit_bytes": getattr(MQTTConfig(), "outbox_limit_bytes", None),
        "alerts_raised": alerts,
        "alerts_delivered": len(set(seqs)),
        "alerts_duplicated": len(seqs) - len(set(seqs)),
        "alerts_in_order": seqs == sorted(seqs),
        "nonalerts_raised": nonalerts,
        "nonalerts_delivered": len(clips),
        "outbox_stats": stats,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
