"""The engine's MQTT outbox against a real Mosquitto: what a broker outage keeps and drops.

The client (facetrack.comms.mqtt.MqttClient) reaches the broker through a mqtt_helpers.Gate, so
that after a broker restart the test's subscriber is subscribed again before the client may
reconnect and send what it kept. Payloads here are the test's own (a ``seq`` number and padding),
so the subscriber's schema check of the ``alert`` topic is not asserted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from facetrack.comms.mqtt import PAHO_WINDOW, MqttClient, topic_problem
from facetrack.config.service import MQTTConfig
from mqtt_helpers import Broker, Gate, Received, Subscriber, free_port, wait_subscribed

pytestmark = pytest.mark.timeout(300)

PREFIX = "ft"
LIMIT = 64 << 10  # the smallest mqtt.outbox_limit_bytes the configuration accepts
PAD = 1000  # payload padding: each message is about 1 KB


def wait_until(pred: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    if b.proc is not None and b.proc.poll() is None:
        b.stop()


@pytest.fixture
def gate(broker: Broker) -> Iterator[Gate]:
    g = Gate(broker.port)
    g.open()
    yield g
    g.stop()


@pytest.fixture
def sub(broker: Broker) -> Iterator[Subscriber]:
    s = Subscriber(broker.port, prefix=PREFIX).start()
    wait_subscribed(s)
    yield s
    s.stop()


@pytest.fixture
def client(gate: Gate) -> Iterator[MqttClient]:
    cfg = MQTTConfig(
        host="127.0.0.1", port=gate.port, client_id=f"outbox-{free_port()}", topic_prefix=PREFIX,
        outbox_limit_bytes=LIMIT,
    )  # fmt: skip
    c = MqttClient(cfg, reconnect_max_seconds=1)
    c.start()
    assert c.connected.wait(60)
    yield c
    c.stop()


def publish(client: MqttClient, seq: int, kind: str) -> None:
    """``kind``: ``alert`` (door/alert), ``event`` (door/event) or ``state`` (door/state, retained)."""
    retain = kind == "state"
    client.publish_json(client.topic("door", kind), {"seq": seq, "pad": "x" * PAD}, qos=1, retain=retain)


def size(client: MqttClient, seq: int, kind: str) -> int:
    """Bytes a message of :func:`publish` counts against the limit (topic + JSON payload)."""
    payload = json.dumps({"seq": seq, "pad": "x" * PAD}, separators=(",", ":"))
    return len(client.topic("door", kind)) + len(payload)


def outage(broker: Broker, gate: Gate, client: MqttClient) -> None:
    """Stop the broker; return once the client knows it is disconnected."""
    gate.close()
    broker.stop()
    wait_until(lambda: not client.connected.is_set(), what="the client to notice the outage")


def recover(broker: Broker, gate: Gate, sub: Subscriber) -> None:
    """Restart the broker; let the client back once the subscriber is subscribed again."""
    broker.start()
    wait_subscribed(sub)
    gate.open()


def seq(m: Received) -> int:
    """The ``seq`` of a test message (the subscriber parses only the topics it has schemas for)."""
    body = m.payload if isinstance(m.payload, dict) else json.loads(m.payload)
    return int(body["seq"])


def received(sub: Subscriber, kind: str) -> list[int]:
    return [seq(m) for m in sub.find(f"door/{kind}")]


def door_stream(sub: Subscriber) -> list[int]:
    """The ``seq`` of every test message received, in arrival order."""
    return [seq(m) for m in sub.find("", lambda m: m.topic.startswith(f"{PREFIX}/door/"))]


def drained(client: MqttClient, sub: Subscriber, marker_seq: int) -> None:
    """Wait until the client sent everything, then until a marker published after it arrived
    (one publisher's QoS 1 messages arrive in order: nothing sent before it is still on the way)."""
    wait_until(lambda: client.outbox_stats()["queued_messages"] == 0, 120, "the outbox to drain")
    publish(client, marker_seq, "event")
    sub.wait_for("door/event", lambda m: seq(m) == marker_seq, timeout=60)


def test_full_outbox_drops_the_oldest_non_alerts_and_delivers_every_alert(
    broker: Broker, gate: Gate, sub: Subscriber, client: MqttClient
) -> None:
    outage(broker, gate, client)
    # 200 messages of about 1 KB during the outage, three times the limit; every 5th an alert.
    kinds = {seq: "alert" if seq % 5 == 0 else "event" for seq in range(200)}
    for seq, kind in kinds.items():
        publish(client, seq, kind)
    stats = client.outbox_stats()
    assert stats["queued_bytes"] <= LIMIT < sum(size(client, s, k) for s, k in kinds.items())
    recover(broker, gate, sub)
    drained(client, sub, marker_seq=1000)

    alerts = [s for s, k in kinds.items() if k == "alert"]
    events = [s for s, k in kinds.items() if k == "event"]
    got_alerts, got_events = received(sub, "alert"), received(sub, "event")[:-1]  # (without the marker)
    assert got_alerts == alerts  # every alert, once, in order
    # The events that arrived are the newest ones, in order, once: the oldest were dropped.
    assert got_events == events[len(events) - len(got_events) :]
    dropped = events[: len(events) - len(got_events)]
    assert dropped, "the outbox was over its limit: something must have been dropped"
    # No more was dropped than needed: the survivors fit, one more event would not have.
    kept = sum(size(client, s, kinds[s]) for s in alerts + got_events)
    assert kept <= LIMIT < kept + size(client, dropped[-1], "event")
    # Nothing arrived twice, and the whole stream kept its order.
    seqs = door_stream(sub)
    assert seqs == sorted(set(seqs))
    # The counters say what was dropped.
    stats = client.outbox_stats()
    assert stats["dropped_messages"] == len(dropped) and stats["dropped_alerts"] == 0
    assert stats["dropped_bytes"] == sum(size(client, s, "event") for s in dropped)
    assert stats["queued_messages"] == 0 and stats["limit_bytes"] == LIMIT


def test_superseded_retained_state_is_dropped_before_any_event(
    broker: Broker, gate: Gate, sub: Subscriber, client: MqttClient
) -> None:
    outage(broker, gate, client)
    # 40 retained states of one topic, 40 events and 20 alerts, interleaved: 100 KB for 64 KiB.
    kinds = {seq: ("state", "event", "state", "event", "alert")[seq % 5] for seq in range(100)}
    for seq, kind in kinds.items():
        publish(client, seq, kind)
    recover(broker, gate, sub)
    drained(client, sub, marker_seq=1000)

    states = [s for s, k in kinds.items() if k == "state"]
    assert received(sub, "alert") == [s for s, k in kinds.items() if k == "alert"]
    assert received(sub, "event")[:-1] == [s for s, k in kinds.items() if k == "event"]  # none dropped
    got_states = received(sub, "state")
    assert got_states[-1] == states[-1]  # the newest state is never dropped while an older one is queued
    assert got_states == states[len(states) - len(got_states) :]  # the oldest ones went first
    stats = client.outbox_stats()
    assert stats["dropped_messages"] == len(states) - len(got_states) > 0
    assert stats["dropped_alerts"] == 0


def test_messages_in_flight_when_the_broker_dies_are_sent_again_first_and_once(
    broker: Broker, gate: Gate, sub: Subscriber, client: MqttClient
) -> None:
    # A frozen broker: the client is still connected and hands a window of messages to paho,
    # which waits for acknowledgements that never come; the rest waits in the outbox.
    assert broker.proc is not None
    broker.proc.send_signal(19)  # SIGSTOP
    n = PAHO_WINDOW + 15
    for seq in range(n):
        publish(client, seq, "alert" if seq % 3 == 0 else "event")
    wait_until(lambda: client.outbox_stats()["queued_messages"] == n, what="all messages queued")
    broker.proc.kill()  # dies with the window unacknowledged
    broker.proc.wait()
    broker.proc = None
    gate.close()
    wait_until(lambda: not client.connected.is_set(), what="the client to notice the outage")
    recover(broker, gate, sub)
    drained(client, sub, marker_seq=1000)
    seqs = door_stream(sub)
    assert seqs == [*range(n), 1000]  # paho's window first, then the outbox: in order, once
    assert client.outbox_stats()["dropped_messages"] == 0


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        (f"{PREFIX}/response/x\n", "U+000A"),  # the request id of the incident
        (f"{PREFIX}/response/a\x00b", "U+0000"),
        (f"{PREFIX}/response/\x7f", "U+007F"),
        (f"{PREFIX}/response/\x85", "U+0085"),
        (f"{PREFIX}/response/\ufffe", "U+FFFE"),
        (f"{PREFIX}/response/\U0010ffff", "U+10FFFF"),
        (f"{PREFIX}/response/\ud800", "U+D800"),  # a lone surrogate: not valid UTF-8
        (f"{PREFIX}/response/+", "wildcard"),
        (f"{PREFIX}/response/#", "wildcard"),
        (f"{PREFIX}/response/" + "a" * 65535, "longer than 65535 bytes"),
    ],
)
def test_malformed_topics_are_refused_and_the_connection_stays(
    topic: str, reason: str, broker: Broker, sub: Subscriber, client: MqttClient
) -> None:
    problem = topic_problem(topic)
    assert problem is not None and reason in problem
    client.publish_json(topic, {"request_id": "x", "ok": False}, qos=1)
    client.publish_json(topic, {"request_id": "x", "ok": False}, qos=0)
    assert client.outbox_stats()["refused_messages"] == 2
    # The connection is untouched: a message after it arrives, with no reconnection between.
    client.publish_json(client.topic("door", "event"), {"seq": 1, "name": "lone \ud800 surrogate"}, qos=1)
    got = json.loads(sub.wait_for("door/event", timeout=60)[0].payload)
    assert got == {"seq": 1, "name": "lone \ud800 surrogate"}  # escaped in the JSON, not an exception
    assert client.connections == 1 and client.connected.is_set()
    assert "malformed packet" not in broker.log.read_text()  # what Mosquitto logs when it drops one


def test_valid_topics_pass(client: MqttClient) -> None:
    for topic in ("ft/door/alert", "ft/response/r-1_A", "ft/seen/9f1e", "ft/caf\u00e9/state", "a" * 65535):
        assert topic_problem(topic) is None, topic
    assert client.is_alert_topic("ft/door/alert")
    assert not any(map(client.is_alert_topic, ("ft/alert", "ft/door/clip", "ft/a/b/alert", "x/door/alert")))


def test_the_limit_comes_from_the_configuration() -> None:
    from facetrack.config.service import parse_service_config
    from facetrack.errors import ConfigError

    base = {"db_path": "/tmp/x.lance", "cameras": [{"name": "door", "source": "x.mp4"}]}
    assert parse_service_config(base).mqtt.outbox_limit_bytes == 16 << 20
    cfg = parse_service_config({**base, "mqtt": {"outbox_limit_bytes": 1 << 20}})
    assert MqttClient(cfg.mqtt).outbox_stats()["limit_bytes"] == 1 << 20
    with pytest.raises(ConfigError, match="outbox_limit_bytes"):
        parse_service_config({**base, "mqtt": {"outbox_limit_bytes": 1000}})
