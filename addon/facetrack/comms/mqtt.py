"""MQTT client for the engine (paho-mqtt 2.x): retained state, events, alerts and commands.

Topics are documented in ``docs/mqtt.md`` (contract version :data:`CONTRACT_VERSION`) with one
JSON Schema per payload in ``docs/schemas/``.

Delivery: QoS 1 messages go through a bounded :class:`Outbox` of our own, and only a small window
of them (:data:`PAHO_WINDOW`) is handed to paho at a time. Paho keeps what it was handed until the
broker acknowledges it and sends it again after a reconnection, so an alert raised during a broker
outage is delivered afterwards; everything beyond the window waits in the outbox, where it can
still be dropped in a chosen order. (Paho's own ``max_queued_messages`` refuses the *newest*
message when full, alerts included.) When the outbox exceeds ``mqtt.outbox_limit_bytes``, it drops
retained messages that a newer one for the same topic supersedes, then the oldest other non-alert
messages, and an alert only when alerts alone fill the limit (logged as an error); every drop is
logged (rate-limited) and counted (:meth:`MqttClient.outbox_stats`, also in ``<prefix>/info``).

A topic Mosquitto would reject as malformed (see :func:`topic_problem`) is never handed to paho:
Mosquitto drops the connection for it and paho sends the same packet again on every reconnection,
which cut an engine off the broker for good. Such publishes are logged and counted instead.

On every (re)connection the service republishes its retained state through
:attr:`MqttClient.on_connected`. Events and alerts are never retained: a replayed "known face" must
never be able to unlock a door.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facetrack.comms.topics import COMMAND, STATUS
from facetrack.config.service import MQTTConfig
from facetrack.logutil import rate_limit_loggers

_LOG = logging.getLogger(__name__)
#: Outbox drops and refused messages, rate limited (:data:`LOG_INTERVAL_SECONDS`).
_NOISY = logging.getLogger(f"{__name__}.outbox")
CONTRACT_VERSION = "1"
#: QoS 1 messages handed to paho at a time (paho's default in-flight limit). Paho keeps them until
#: the broker acknowledges them, so they cannot be dropped any more: keep the window small.
PAHO_WINDOW = 20
#: At most one warning per this many seconds for each kind of drop or refusal.
LOG_INTERVAL_SECONDS = 60.0
#: Longest topic name, bytes (MQTT 3.1.1, 1.5.3: a two-byte length prefix).
MAX_TOPIC_BYTES = 65535
# What Mosquitto's mosquitto_validate_utf8 rejects in a topic (besides invalid UTF-8, caught by
# encoding): NUL and C0 controls, DEL and C1 controls, the non-characters U+FDD0-U+FDEF and U+xFFFE /
# U+xFFFF of every plane; plus lone surrogates (not encodable) and the wildcards + and # (MQTT
# 3.1.1, 3.3.2.1: not allowed in a topic name).
_BAD_TOPIC_CHAR = re.compile(
    "[\x00-\x1f\x7f-\x9f+#\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(p << 16 | 0xFFFE)}{chr(p << 16 | 0xFFFF)}" for p in range(17))
    + "]"
)


def topic_problem(topic: str) -> str | None:
    """Why Mosquitto would treat ``topic`` as malformed (a short reason), or None if it is fine.

    Checked: empty, longer than :data:`MAX_TOPIC_BYTES` bytes in UTF-8, control characters (U+0000 to
    U+001F, U+007F to U+009F), Unicode non-characters, lone surrogates (not valid UTF-8), and the
    wildcards ``+`` and ``#``. Source: MQTT 3.1.1 sections 1.5.3 and 4.7, and Mosquitto's
    ``mosquitto_validate_utf8`` (lib/utf8_mosq.c).
    """
    if not topic:
        return "empty topic"
    bad = _BAD_TOPIC_CHAR.search(topic)
    if bad is not None:
        char = bad.group()
        if char in "+#":
            return f"wildcard {char!r} in topic"
        return f"character U+{ord(char):04X} not allowed in a topic"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"topic longer than {MAX_TOPIC_BYTES} bytes"
    return None


@dataclass(slots=True, eq=False)
class OutMessage:
    """A QoS 1 message waiting to be sent; ``size`` (bytes: topic + payload) counts against the
    outbox limit; ``alert`` marks ``<prefix>/<camera>/alert`` messages, dropped last."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    alert: bool
    label: str = ""  # for the logs: an alert's id
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.topic.encode("utf-8")) + len(self.payload)


class Outbox:
    """QoS 1 messages not yet handed to paho, oldest first, bounded in bytes. Not thread-safe.

    Args:
        limit_bytes: bound on the bytes (topic + payload) of the messages queued here plus those
            handed to paho and not yet acknowledged (:meth:`hold`), which cannot be dropped.

    When a message takes the total over the limit, messages are dropped in this order until it fits:
    retained messages superseded by a newer retained message on the same topic (the broker would
    keep only the newest anyway), then the oldest other non-alerts, then the oldest alerts.
    """

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"outbox limit must be positive, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self._queue: OrderedDict[int, OutMessage] = OrderedDict()
        # Drop order: three disjoint FIFO sets of the keys of _queue.
        self._superseded: OrderedDict[int, None] = OrderedDict()
        self._others: OrderedDict[int, None] = OrderedDict()
        self._alerts: OrderedDict[int, None] = OrderedDict()
        self._latest_retained: dict[str, int] = {}
        self._held: dict[int, int] = {}  # paho message id -> size
        self._next = 0
        self.queued_bytes = 0
        self.dropped_messages = 0
        self.dropped_bytes = 0
        self.dropped_alerts = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def held(self) -> int:
        """Messages handed to paho and not yet acknowledged."""
        return len(self._held)

    @property
    def held_bytes(self) -> int:
        return sum(self._held.values())

    def put(self, msg: OutMessage) -> list[OutMessage]:
        """Queue ``msg`` (newest); return what had to be dropped to stay within the limit, oldest
        first (``[msg]`` itself when it alone is over the limit)."""
        if msg.size > self.limit_bytes:
            self._count_drop(msg)
            return [msg]
        key = self._next
        self._next += 1
        self._queue[key] = msg
        self.queued_bytes += msg.size
        if msg.alert:
            self._alerts[key] = None
        else:
            self._others[key] = None
            if msg.retain:
                older = self._latest_retained.get(msg.topic)
                if older is not None and older in self._others:
                    del self._others[older]
                    self._superseded[older] = None
                self._latest_retained[msg.topic] = key
        dropped = []
        while self._queue and self.queued_bytes + self.held_bytes > self.limit_bytes:
            victims = self._superseded or self._others or self._alerts
            victim = self._remove(next(iter(victims)))
            self._count_drop(victim)
            dropped.append(victim)
        return dropped

    def _count_drop(self, msg: OutMessage) -> None:
        self.dropped_messages += 1
        self.dropped_bytes += msg.size
        self.dropped_alerts += msg.alert

    def pop(self) -> OutMessage | None:
        """Take the oldest message (to hand it to paho), or None if empty."""
        return self._remove(next(iter(self._queue))) if self._queue else None

    def hold(self, mid: int, size: int) -> None:
        """Count a message handed to paho (id ``mid``) until :meth:`release`."""
        self._held[mid] = size

    def release(self, mid: int) -> bool:
        """The broker acknowledged message ``mid``; True if it was held."""
        return self._held.pop(mid, None) is not None

    def held_ids(self) -> set[int]:
        """Paho message ids of the held messages."""
        return set(self._held)

    def _remove(self, key: int) -> OutMessage:
        msg = self._queue.pop(key)
        self.queued_bytes -= msg.size
        for group in (self._superseded, self._others, self._alerts):
            if key in group:
                del group[key]
                break
        if msg.retain and self._latest_retained.get(msg.topic) == key:
            del self._latest_retained[msg.topic]
        return msg


class MqttClient:
    """A connection to the broker under ``config.topic_prefix``.

    Args:
        config: broker address, credentials, TLS, client id, topic prefix, outbox limit
            (``outbox_limit_bytes``, bytes).
        on_command: called (on paho's network thread) with ``(verb, payload_bytes)`` for each
            message on ``<prefix>/command/<verb>``; must not block for long.
        on_connected: called after every successful (re)connection, to republish retained state.
        subscriptions: further topics to subscribe to (QoS 1), each with the handler called (on
            paho's network thread, must not block) with the payload bytes of each message, e.g.
            the shared library topic (``mqtt.library_topic``, ``docs/scale-out.md``).

    The client reconnects by itself (1 s to ``reconnect_max_seconds`` backoff). The last will
    marks ``<prefix>/status`` ``offline`` (retained) if the engine dies. Publishing never raises
    and never blocks on the network: see the module doc for what happens to QoS 1 messages while
    the broker is unreachable.
    """

    def __init__(
        self,
        config: MQTTConfig,
        on_command: Callable[[str, bytes], None] | None = None,
        on_connected: Callable[[], None] | None = None,
        reconnect_max_seconds: float = 60.0,
        subscriptions: Mapping[str, Callable[[bytes], None]] | None = None,
    ) -> None:
        self.config = config
        self.subscriptions = dict(subscriptions or {})
        self.prefix = config.topic_prefix
        self.on_command = on_command
        self.on_connected = on_connected
        self.connected = threading.Event()
        self.connections = 0
        self.refused_messages = 0
        self._outbox = Outbox(config.outbox_limit_bytes)
        # Guards the outbox and the flags below. Never held while calling paho: paho calls
        # _on_publish holding its own lock, so holding ours into paho could deadlock.
        self._cond = threading.Condition()
        self._online = False  # connected, and what paho held over the outage is acknowledged
        self._resending: set[int] = set()  # held at the last disconnection: paho sends them again
        self._handing = False  # a message is being handed to paho (one at a time keeps the order)
        self._early_acks: set[int] = set()  # acknowledged before the hand-over was recorded
        self._closing = False
        self._drainer: threading.Thread | None = None
        # A broker outage or a flood repeats these: one record per call site per interval, then a count.
        rate_limit_loggers((_NOISY.name,), burst=1, interval_s=LOG_INTERVAL_SECONDS)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if config.username:
            client.username_pw_set(config.username, config.password)
        if config.tls.enabled:
            client.tls_set(
                ca_certs=config.tls.ca_file,
                certfile=config.tls.certfile,
                keyfile=config.tls.keyfile,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(config.tls.insecure)
        client.will_set(self.topic(*STATUS.parts()), "offline", qos=STATUS.qos, retain=STATUS.retain)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(reconnect_max_seconds)))
        client.max_inflight_messages_set(PAHO_WINDOW)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client

    def topic(self, *parts: str) -> str:
        """``<prefix>/<part>/<part>...``."""
        return "/".join((self.prefix, *parts))

    def is_alert_topic(self, topic: str) -> bool:
        """``<prefix>/<camera>/alert``: the messages the outbox drops last."""
        rest = topic.removeprefix(self.prefix + "/")
        return rest != topic and rest.count("/") == 1 and rest.endswith("/alert")

    def outbox_stats(self) -> dict[str, int]:
        """Counters since start: ``queued_messages`` / ``queued_bytes`` (waiting, incl. those
        handed to paho and not yet acknowledged), ``limit_bytes``, ``dropped_messages`` /
        ``dropped_bytes`` / ``dropped_alerts`` (outbox full), ``refused_messages`` (malformed
        topic, or refused by paho)."""
        with self._cond:
            box = self._outbox
            return {
                "queued_messages": len(box) + box.held,
                "queued_bytes": box.queued_bytes + box.held_bytes,
                "limit_bytes": box.limit_bytes,
                "dropped_messages": box.dropped_messages,
                "dropped_bytes": box.dropped_bytes,
                "dropped_alerts": box.dropped_alerts,
                "refused_messages": self.refused_messages,
            }

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retries until the broker answers)."""
        _LOG.info("connecting to MQTT broker %s:%d as %s", self.config.host, self.config.port, self.config.client_id)
        self._drainer = threading.Thread(target=self._drain, name="mqtt-outbox", daemon=True)
        self._drainer.start()
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout`` s), publish ``offline`` and disconnect."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._online and (self._outbox or self._outbox.held or self._handing):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            unsent = len(self._outbox) + self._outbox.held
            self._closing = True
            self._cond.notify_all()
        if unsent:
            _LOG.warning("MQTT: %d QoS 1 message(s) not delivered at shutdown", unsent)
        if self._drainer is not None:
            self._drainer.join(timeout=5)
        if self.connected.is_set():
            info = self._client.publish(self.topic(*STATUS.parts()), "offline", qos=STATUS.qos, retain=STATUS.retain)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.5, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()

    # ---- publishing ------------------------------------------------------------------------

    def publish_json(self, topic: str, payload: Mapping[str, Any], qos: int = 0, retain: bool = False) -> None:
        """Publish a JSON payload; QoS 1 messages survive a broker outage (see module doc)."""
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate in a string: escape it (valid JSON) instead
            raw = json.dumps(payload, separators=(",", ":")).encode("ascii")
        label = str(payload.get("alert_id", ""))
        self._publish(topic, raw, qos, retain, label)

    def publish_text(self, topic: str, text: str, qos: int = 1, retain: bool = True) -> None:
        """Publish a plain-text payload (``status``)."""
        self._publish(topic, text.encode("utf-8", "backslashreplace"), qos, retain)

    def clear_retained(self, topic: str) -> None:
        """Remove a retained message (an empty retained payload deletes it)."""
        self._publish(topic, b"", 1, True)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool, label: str = "") -> None:
        problem = topic_problem(topic)
        if problem is not None:
            with self._cond:
                self.refused_messages += 1
            _NOISY.warning("MQTT: not publishing to %.80r: %s", topic, problem)
            return
        if qos == 0:  # paho never stores these: sent now or lost (events, presence)
            self._hand(OutMessage(topic, payload, qos, retain, False))
            return
        msg = OutMessage(topic, payload, qos, retain, self.is_alert_topic(topic), label)
        with self._cond:
            # Nothing waiting and room in the window: hand it over in this thread (as fast, and
            # in the same order with the QoS 0 messages of this thread, as without an outbox).
            direct = self._ready() and not self._outbox
            if direct:
                self._handing = True
            else:
                dropped = self._outbox.put(msg)
                self._cond.notify_all()
        if direct:
            self._hand_held(msg)
        elif dropped:
            self._report(dropped)

    def _ready(self) -> bool:
        return self._online and not self._handing and not self._closing and self._outbox.held < PAHO_WINDOW

    def _hand(self, msg: OutMessage) -> mqtt.MQTTMessageInfo | None:
        try:
            info = self._client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        except (ValueError, TypeError) as err:  # e.g. a payload over MQTT's 256 MB
            with self._cond:
                self.refused_messages += 1
            _NOISY.warning("MQTT: paho refused a message for %.80r: %s", msg.topic, err)
            return None
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            _LOG.warning("MQTT publish to %s failed: %s", msg.topic, mqtt.error_string(info.rc))
        return info

    def _hand_held(self, msg: OutMessage) -> None:
        """Hand a QoS 1 message to paho (``_handing`` set by the caller) and count it as held."""
        info = self._hand(msg)
        with self._cond:
            if info is not None and info.mid not in self._early_acks:
                self._outbox.hold(info.mid, msg.size)
                if not self._online:  # the connection dropped meanwhile: paho sends it again
                    self._resending.add(info.mid)
            self._early_acks.clear()
            self._handing = False
            self._cond.notify_all()

    def _drain(self) -> None:
        """Outbox thread: hand queued messages to paho, oldest first, while the window has room."""
        while True:
            with self._cond:
                while not self._closing and not (self._ready() and self._outbox):
                    self._cond.wait()
                if self._closing:
                    return
                msg = self._outbox.pop()
                assert msg is not None
                self._handing = True
            self._hand_held(msg)

    def _report(self, dropped: list[OutMessage]) -> None:
        alerts = [m for m in dropped if m.alert]
        stats = self.outbox_stats()
        if len(alerts) < len(dropped):
            _NOISY.warning(
                "MQTT outbox full (limit %d bytes, broker unreachable?): dropped the oldest non-alert "
                "messages; %d dropped so far (%d bytes), alerts kept",
                stats["limit_bytes"], stats["dropped_messages"], stats["dropped_bytes"],
            )  # fmt: skip
        if alerts:
            _NOISY.error(
                "MQTT outbox full of alerts alone (limit %d bytes): dropped the oldest alert(s) %s; "
                "%d alerts dropped so far",
                stats["limit_bytes"], ", ".join(m.label or m.topic for m in alerts), stats["dropped_alerts"],
            )  # fmt: skip

    # ---- paho callbacks (network thread) --------------------------------------------------------

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _props: Any) -> None:
        with self._cond:  # (paho holds its message lock here: no call into paho below)
            if not self._outbox.release(mid) and self._handing:
                self._early_acks.add(mid)
            self._resending.discard(mid)
            if self._resending or not self.connected.is_set():
                return
            self._online = True
            self._cond.notify_all()

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            _LOG.error("MQTT broker refused the connection: %s", reason)
            return
        self.connections += 1
        _LOG.info("MQTT connected (%d)", self.connections)
        client.subscribe(self.topic(*COMMAND.parts(verb="+")), qos=COMMAND.qos)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        client.publish(self.topic(*STATUS.parts()), "online", qos=STATUS.qos, retain=STATUS.retain)
        self.connected.set()
        with self._cond:
            # Paho sends what it held again right after this callback: nothing newer goes out
            # before those are acknowledged, or an alert could overtake an older one.
            self._online = not self._resending
            self._cond.notify_all()
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                _LOG.exception("republishing state after connect failed")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        with self._cond:
            self._online = False
            self._resending = self._outbox.held_ids()
        if reason.is_failure:
            _LOG.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        handler = self.subscriptions.get(msg.topic)
        if handler is not None:
            try:
                handler(bytes(msg.payload))
            except Exception:  # a bad message must never kill the network thread
                _LOG.exception("message on %s failed", msg.topic)
            return
        verb = msg.topic.rsplit("/", 1)[-1]
        if self.on_command is None:
            return
        try:
            self.on_command(verb, bytes(msg.payload))
        except Exception:  # a bad command must never kill the network thread
            _LOG.exception("command %s failed", verb)
