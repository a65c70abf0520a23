"""The engine's only way onto MQTT: one typed method per topic of :mod:`facetrack.comms.topics`.

The :class:`Publisher` owns topic levels, QoS and retain (taken from the topic table, never
written at a call site) and the republication of retained state after a (re)connection: the
parts that own retained state (info, persons, inbox, camera states, discovery) register a
provider with :meth:`Publisher.add_retained`, and :meth:`Publisher.republish` calls them all.

It talks to the broker through a narrow :class:`MqttSink` (what ``comms.mqtt.MqttClient`` has), so
it can be tested with a recording fake and imports no MQTT library.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from facetrack.comms import topics as t
from facetrack.comms.discovery import camera_discovery, config_topic, person_discovery
from facetrack.comms.payloads import (
    AlertPayload,
    ClipPayload,
    InboxEventPayload,
    InboxPayload,
    InfoPayload,
    LibraryNotice,
    PersonsPayload,
    ResponsePayload,
    SeenPayload,
    StatePayload,
    TrackPayload,
)

_LOG = logging.getLogger(__name__)


class MqttSink(Protocol):
    """Where the publisher's messages go (``comms.mqtt.MqttClient``); publishing never raises."""

    def topic(self, *parts: str) -> str:
        """``<prefix>/<part>/<part>...``."""
        ...

    def publish_json(self, topic: str, payload: Mapping[str, Any], qos: int = 0, retain: bool = False) -> None:
        """Publish ``payload`` as JSON."""
        ...

    def clear_retained(self, topic: str) -> None:
        """Remove the retained message of ``topic``."""
        ...


class Publisher:
    """Publishes the engine's payloads on their topics (``docs/mqtt.md``).

    Args:
        sink: the MQTT client.
        prefix: ``mqtt.topic_prefix``, as ``sink`` uses it (the discovery configs name it).
        library_topic: ``mqtt.library_topic`` (absolute), for :meth:`library_notice`.
        discovery_prefix: ``mqtt.discovery_prefix`` when HA discovery is on (``mqtt.discovery``),
            else None: the discovery methods then do nothing.

    Thread-safe as far as the sink is: camera threads, the command thread and the MQTT network
    thread (:meth:`republish`) all publish.
    """

    def __init__(self, sink: MqttSink, prefix: str, library_topic: str, discovery_prefix: str | None = None) -> None:
        self._sink = sink
        self.prefix = prefix
        self.library_topic = library_topic
        self.discovery_prefix = discovery_prefix
        self._providers: list[Callable[[], None]] = []
        self._discovered: dict[str, str] = {}  # person id -> name of the configs on the broker
        self._lock = threading.Lock()

    # ---- the topics under <prefix>/ ------------------------------------------------------------

    def state(self, camera: str, payload: StatePayload) -> None:
        """``<prefix>/<camera>/state``: QoS 1, retained."""
        self._send(t.STATE, payload, camera=camera)

    def track(self, camera: str, payload: TrackPayload) -> None:
        """``<prefix>/<camera>/track``: QoS 0, not retained."""
        self._send(t.TRACK, payload, camera=camera)

    def alert(self, camera: str, payload: AlertPayload) -> None:
        """``<prefix>/<camera>/alert``: QoS 1, not retained."""
        self._send(t.ALERT, payload, camera=camera)

    def clip(self, camera: str, payload: ClipPayload) -> None:
        """``<prefix>/<camera>/clip``: QoS 1, not retained."""
        self._send(t.CLIP, payload, camera=camera)

    def seen(self, person_id: str, payload: SeenPayload) -> None:
        """``<prefix>/seen/<person_id>``: QoS 0, not retained."""
        self._send(t.SEEN, payload, person_id=person_id)

    def info(self, payload: InfoPayload) -> None:
        """``<prefix>/info``: QoS 1, retained."""
        self._send(t.INFO, payload)

    def persons(self, payload: PersonsPayload) -> None:
        """``<prefix>/persons``: QoS 1, retained."""
        self._send(t.PERSONS, payload)

    def inbox(self, payload: InboxPayload) -> None:
        """``<prefix>/inbox``: QoS 1, retained."""
        self._send(t.INBOX, payload)

    def inbox_event(self, payload: InboxEventPayload) -> None:
        """``<prefix>/inbox/event``: QoS 1, not retained."""
        self._send(t.INBOX_EVENT, payload)

    def response(self, request_id: str, payload: ResponsePayload) -> None:
        """``<prefix>/response/<request_id>``: QoS 1, not retained."""
        self._send(t.RESPONSE, payload, request_id=request_id)

    def library_notice(self, payload: LibraryNotice) -> None:
        """``mqtt.library_topic``: QoS 1, not retained."""
        self._publish(self.library_topic, t.LIBRARY, payload)

    # ---- Home Assistant discovery (docs/mqtt.md) ---------------------------------------------------

    def camera_discovery(self, camera: str) -> None:
        """The retained discovery config of a camera's device (nothing when discovery is off)."""
        if self.discovery_prefix is None:
            return
        topic = config_topic(self.discovery_prefix, self.prefix, "camera", camera)
        self._publish(topic, t.CAMERA_DISCOVERY, camera_discovery(self.prefix, camera))

    def person_discovery(self, current: Mapping[str, str]) -> None:
        """Bring the persons' discovery configs in line with ``current`` (person id -> name): publish
        those new or renamed since the last call (all after :meth:`republish`), clear those of the
        persons no longer there. Nothing when discovery is off."""
        if self.discovery_prefix is None:
            return
        with self._lock:
            changed = {pid: name for pid, name in current.items() if self._discovered.get(pid) != name}
            gone = set(self._discovered) - set(current)
            self._discovered = dict(current)
        for pid, name in changed.items():
            topic = config_topic(self.discovery_prefix, self.prefix, "person", pid)
            self._publish(topic, t.PERSON_DISCOVERY, person_discovery(self.prefix, pid, name))
        for pid in gone:  # forgotten: an empty retained config removes the device
            self._sink.clear_retained(config_topic(self.discovery_prefix, self.prefix, "person", pid))

    # ---- retained state -------------------------------------------------------------------------

    def add_retained(self, provider: Callable[[], None]) -> None:
        """Register a callable that publishes a part's retained state (through this publisher);
        :meth:`republish` calls the providers in the order they were added."""
        self._providers.append(provider)

    def republish(self) -> None:
        """After every (re)connection (``MqttClient.on_connected``): call every provider. The broker
        may have lost the discovery configs, so :meth:`person_discovery` publishes all of them again.
        A provider that raises is logged and the others still run; never raises."""
        with self._lock:
            self._discovered = {}
        for provider in self._providers:
            try:
                provider()
            except Exception:  # one part's failure must not keep the others' state off the broker
                _LOG.exception("republishing retained state (%s) failed", getattr(provider, "__qualname__", provider))

    # ---- internals ------------------------------------------------------------------------------

    def _send(self, topic: t.Topic, payload: Mapping[str, Any], **fields: str) -> None:
        self._publish(self._sink.topic(*topic.parts(**fields)), topic, payload)

    def _publish(self, name: str, topic: t.Topic, payload: Mapping[str, Any]) -> None:
        # Every payload is a plain dict at run time (a TypedDict): no copy.
        self._sink.publish_json(name, payload, qos=topic.qos, retain=topic.retain)
