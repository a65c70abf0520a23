"""MQTT client for the engine (paho-mqtt 2.x): retained state, events, alerts and commands.

Topics are documented in ``docs/mqtt.md`` (contract version :data:`CONTRACT_VERSION`) with one
JSON Schema per payload in ``docs/schemas/``.

Delivery: paho keeps QoS 1 messages published while the broker is unreachable and sends them
after reconnecting (until the broker acknowledges), so an alert raised during a broker restart
is delivered afterwards. On every (re)connection the service republishes its retained state
through :attr:`MqttClient.on_connected`. Events and alerts are never retained: a replayed "known
face" must never be able to unlock a door.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facetrack.config.service import MQTTConfig

_LOG = logging.getLogger(__name__)
CONTRACT_VERSION = "1"
#: QoS 1 messages kept while disconnected (oldest dropped beyond; alerts are rare, events many).
MAX_QUEUED = 2000


class MqttClient:
    """A connection to the broker under ``config.topic_prefix``.

    Args:
        config: broker address, credentials, TLS, client id, topic prefix.
        on_command: called (on paho's network thread) with ``(verb, payload_bytes)`` for each
            message on ``<prefix>/command/<verb>``; must not block for long.
        on_connected: called after every successful (re)connection, to republish retained state.
        subscriptions: further topics to subscribe to (QoS 1), each with the handler called (on
            paho's network thread, must not block) with the payload bytes of each message, e.g.
            the shared library topic (``mqtt.library_topic``, ``docs/scale-out.md``).

    The client reconnects by itself (1 s to ``reconnect_max_seconds`` backoff). The last will
    marks ``<prefix>/status`` ``offline`` (retained) if the engine dies.
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
        client.will_set(self.topic("status"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(reconnect_max_seconds)))
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    def topic(self, *parts: str) -> str:
        """``<prefix>/<part>/<part>...``."""
        return "/".join((self.prefix, *parts))

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retries until the broker answers)."""
        _LOG.info("connecting to MQTT broker %s:%d as %s", self.config.host, self.config.port, self.config.client_id)
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline``, flush what is queued (up to ``timeout`` s) and disconnect."""
        if self.connected.is_set():
            info = self._client.publish(self.topic("status"), "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    # ---- publishing ------------------------------------------------------------------------

    def publish_json(self, topic: str, payload: dict[str, Any], qos: int = 0, retain: bool = False) -> None:
        """Publish a JSON payload; QoS 1 messages survive a broker outage (see module doc)."""
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            _LOG.warning("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    def publish_text(self, topic: str, text: str, qos: int = 1, retain: bool = True) -> None:
        """Publish a plain-text payload (``status``)."""
        self._client.publish(topic, text, qos=qos, retain=retain)

    def clear_retained(self, topic: str) -> None:
        """Remove a retained message (an empty retained payload deletes it)."""
        self._client.publish(topic, b"", qos=1, retain=True)

    # ---- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            _LOG.error("MQTT broker refused the connection: %s", reason)
            return
        self.connections += 1
        _LOG.info("MQTT connected (%d)", self.connections)
        client.subscribe(self.topic("command", "+"), qos=1)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        client.publish(self.topic("status"), "online", qos=1, retain=True)
        self.connected.set()
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                _LOG.exception("republishing state after connect failed")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
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
