"""The FaceTrack engine as seen over MQTT (contract v1, docs/mqtt.md of the engine).

One `FaceTrackHub` per config entry (= per engine topic prefix): it subscribes to the engine's
topics through Home Assistant's MQTT integration, keeps the retained state (status, info, persons,
camera states), forwards the live messages (seen, alert, clip) to the entities with dispatcher signals,
and runs commands (publish `<prefix>/command/<verb>`, await `<prefix>/response/<request_id>`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeassistant.components import mqtt
from homeassistant.components.mqtt import ReceiveMessage
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.dispatcher import async_dispatcher_send

from .const import (
    CONF_EXCLUDED_CAMERAS,
    CONF_EXCLUDED_PERSONS,
    CONF_PRESENCE_TIMEOUT,
    CONF_TOPIC_PREFIX,
    CONTRACT_VERSION,
    DEFAULT_PRESENCE_TIMEOUT,
    DOMAIN,
    GROUP_PENDING,
    LOGGER,
    STATUS_ONLINE,
)

# Error codes of a response that mean "the request was wrong" rather than "the engine failed".
VALIDATION_ERROR_CODES = frozenset({"bad_request", "not_found", "forbidden", "too_large", "not_an_image"})

type FaceTrackConfigEntry = ConfigEntry[FaceTrackData]


@dataclass
class FaceTrackData:
    """Runtime data of a FaceTrack config entry."""

    hub: FaceTrackHub


def parse_json_object(payload: str | bytes) -> dict[str, Any] | None:
    """Return a JSON object payload as a dict, or None when it is not one."""
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_info(payload: str | bytes) -> dict[str, Any] | None:
    """Return a valid `<prefix>/info` payload of contract v1, else None."""
    info = parse_json_object(payload)
    if (
        info is None
        or info.get("contract_version") != CONTRACT_VERSION
        or not isinstance(info.get("topic_prefix"), str)
        or not isinstance(info.get("cameras"), list)
    ):
        return None
    return info


def camera_identifier(prefix: str, camera: str) -> tuple[str, str]:
    """Device registry identifier of an engine camera."""
    return (DOMAIN, f"{prefix}:camera:{camera}")


def person_identifier(prefix: str, person_id: str) -> tuple[str, str]:
    """Device registry identifier of a person of the face library."""
    return (DOMAIN, f"{prefix}:person:{person_id}")


def engine_identifier(prefix: str) -> tuple[str, str]:
    """Device registry identifier of the engine instance."""
    return (DOMAIN, prefix)


@dataclass
class _Listeners:
    """Callbacks of the platforms that add entities for new cameras / persons."""

    cameras: list[Callable[[list[str]], None]] = field(default_factory=list)
    persons: list[Callable[[list[str]], None]] = field(default_factory=list)
    groups: list[Callable[[list[str]], None]] = field(default_factory=list)


class FaceTrackHub:
    """State of one FaceTrack engine instance, kept from its MQTT topics."""

    def __init__(self, hass: HomeAssistant, entry: FaceTrackConfigEntry) -> None:
        """Initialise from the config entry (topic prefix, presence timeout)."""
        self.hass = hass
        self.entry = entry
        self.prefix: str = entry.data[CONF_TOPIC_PREFIX]
        self.presence_timeout: float = float(entry.options.get(CONF_PRESENCE_TIMEOUT, DEFAULT_PRESENCE_TIMEOUT))
        self.status: str | None = None
        self.info: dict[str, Any] | None = None
        self.persons: dict[str, dict[str, Any]] = {}
        self.camera_states: dict[str, dict[str, Any]] = {}
        self.cameras: list[str] = []
        # The unknown-face inbox (`<prefix>/inbox`, contract 1.1): groups by id, in the engine's order.
        self.inbox: dict[str, dict[str, Any]] = {}
        self.inbox_counts: dict[str, int] = {}
        # Options: cameras / person ids that get no entities (and no device).
        self.excluded_cameras: frozenset[str] = frozenset(entry.options.get(CONF_EXCLUDED_CAMERAS, ()))
        self.excluded_persons: frozenset[str] = frozenset(entry.options.get(CONF_EXCLUDED_PERSONS, ()))
        self._listeners = _Listeners()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._unsubscribe: list[CALLBACK_TYPE] = []

    # -- signals -----------------------------------------------------------------------------

    def signal(self, kind: str, key: str = "") -> str:
        """Dispatcher signal name of this engine instance."""
        return f"{DOMAIN}_{self.entry.entry_id}_{kind}_{key}"

    @property
    def online(self) -> bool:
        """Whether the engine reports itself online (`<prefix>/status`)."""
        return self.status == STATUS_ONLINE

    def camera_available(self, camera: str) -> bool:
        """Whether the engine is online and the camera's last state is not offline."""
        state = self.camera_states.get(camera)
        return self.online and state is not None and state.get("state") != "offline"

    # -- life cycle ----------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Subscribe to the engine's topics."""
        prefix = self.prefix
        subscriptions: list[tuple[str, Callable[[ReceiveMessage], None], int]] = [
            (f"{prefix}/status", self._on_status, 1),
            (f"{prefix}/info", self._on_info, 1),
            (f"{prefix}/persons", self._on_persons, 1),
            (f"{prefix}/inbox", self._on_inbox, 1),
            (f"{prefix}/inbox/event", self._on_inbox_event, 1),
            (f"{prefix}/+/state", self._on_camera_state, 1),
            (f"{prefix}/+/alert", self._on_alert, 1),
            (f"{prefix}/+/clip", self._on_clip, 1),
            (f"{prefix}/seen/+", self._on_seen, 0),
            (f"{prefix}/response/+", self._on_response, 1),
        ]
        for topic, handler, qos in subscriptions:
            self._unsubscribe.append(await mqtt.async_subscribe(self.hass, topic, handler, qos))

    @callback
    def async_stop(self) -> None:
        """Unsubscribe and fail the commands still waiting."""
        while self._unsubscribe:
            self._unsubscribe.pop()()
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()

    @callback
    def async_add_camera_listener(self, add: Callable[[list[str]], None]) -> CALLBACK_TYPE:
        """Call `add` with the cameras known now and with every new one later."""
        self._listeners.cameras.append(add)
        if cameras := [c for c in self.cameras if c not in self.excluded_cameras]:
            add(cameras)
        return lambda: self._listeners.cameras.remove(add)

    @callback
    def async_add_person_listener(self, add: Callable[[list[str]], None]) -> CALLBACK_TYPE:
        """Call `add` with the persons known now and with every new one later."""
        self._listeners.persons.append(add)
        if person_ids := [pid for pid in self.persons if pid not in self.excluded_persons]:
            add(person_ids)
        return lambda: self._listeners.persons.remove(add)

    @callback
    def async_add_group_listener(self, add: Callable[[list[str]], None]) -> CALLBACK_TYPE:
        """Call `add` with the pending inbox groups known now and with every new pending one later."""
        self._listeners.groups.append(add)
        if group_ids := self.pending_groups():
            add(group_ids)
        return lambda: self._listeners.groups.remove(add)

    def pending_groups(self) -> list[str]:
        """Ids of the inbox groups waiting to be named (not ignored)."""
        return [gid for gid, group in self.inbox.items() if group.get("status") == GROUP_PENDING]

    # -- retained topics ----------------------------------------------------------------------

    @callback
    def _on_status(self, msg: ReceiveMessage) -> None:
        status = msg.payload.decode() if isinstance(msg.payload, bytes) else msg.payload
        status = status.strip()
        if status == self.status:
            return
        if self.status is not None or status != STATUS_ONLINE:
            LOGGER.info("FaceTrack engine %s is %s", self.prefix, status or "gone")
        self.status = status
        async_dispatcher_send(self.hass, self.signal("status"))

    @callback
    def _on_info(self, msg: ReceiveMessage) -> None:
        info = parse_info(msg.payload)
        if info is None:
            LOGGER.warning("Ignoring an invalid info payload on %s", msg.topic)
            return
        self.info = info
        cameras = [c for c in info["cameras"] if isinstance(c, str)]
        self.async_update_engine_device()
        new = [c for c in cameras if c not in self.cameras and c not in self.excluded_cameras]
        removed = [c for c in self.cameras if c not in cameras]
        self.cameras = cameras
        for camera in removed:
            self.camera_states.pop(camera, None)
            self._remove_device(camera_identifier(self.prefix, camera))
        if new:
            for add in self._listeners.cameras:
                add(new)

    @callback
    def _on_persons(self, msg: ReceiveMessage) -> None:
        data = parse_json_object(msg.payload)
        if data is None or not isinstance(data.get("persons"), list):
            LOGGER.warning("Ignoring an invalid persons payload on %s", msg.topic)
            return
        persons = {
            p["person_id"]: p for p in data["persons"] if isinstance(p, dict) and isinstance(p.get("person_id"), str)
        }
        device_registry = dr.async_get(self.hass)
        new = [pid for pid in persons if pid not in self.persons and pid not in self.excluded_persons]
        for pid, person in persons.items():
            previous = self.persons.get(pid)
            if previous is not None and previous.get("name") != person.get("name"):
                device = device_registry.async_get_device(identifiers={person_identifier(self.prefix, pid)})
                if device is not None:
                    device_registry.async_update_device(device.id, name=person["name"])
        self.persons = persons
        # Forgotten persons (also those forgotten while Home Assistant was not running).
        for device in dr.async_entries_for_config_entry(device_registry, self.entry.entry_id):
            for domain, identifier in device.identifiers:
                head = f"{self.prefix}:person:"
                if domain == DOMAIN and identifier.startswith(head) and identifier[len(head) :] not in persons:
                    device_registry.async_update_device(device.id, remove_config_entry_id=self.entry.entry_id)
        if new:
            for add in self._listeners.persons:
                add(new)
        async_dispatcher_send(self.hass, self.signal("persons"))

    @callback
    def _on_inbox(self, msg: ReceiveMessage) -> None:
        data = parse_json_object(msg.payload)
        if data is None or not isinstance(data.get("groups"), list):
            LOGGER.warning("Ignoring an invalid inbox payload on %s", msg.topic)
            return
        before = set(self.pending_groups())
        self.inbox = {
            g["group_id"]: g for g in data["groups"] if isinstance(g, dict) and isinstance(g.get("group_id"), str)
        }
        self.inbox_counts = {key: data[key] for key in ("pending", "ignored") if isinstance(data.get(key), int)}
        # Entities of groups that left the pending state (named, discarded, merged, ignored) listen
        # for the "inbox" signal and remove themselves; new pending groups get entities.
        if new := [gid for gid in self.pending_groups() if gid not in before]:
            for add in self._listeners.groups:
                add(new)
        async_dispatcher_send(self.hass, self.signal("inbox"))

    @callback
    def _on_inbox_event(self, msg: ReceiveMessage) -> None:
        event = parse_json_object(msg.payload)
        if event is None or not isinstance(event.get("type"), str) or not isinstance(event.get("group_id"), str):
            LOGGER.warning("Ignoring an invalid inbox event on %s", msg.topic)
            return
        async_dispatcher_send(self.hass, self.signal("inbox_event"), event)

    @callback
    def _on_camera_state(self, msg: ReceiveMessage) -> None:
        camera = msg.topic[len(self.prefix) + 1 :].split("/", 1)[0]
        state = parse_json_object(msg.payload)
        if state is None or state.get("camera", camera) != camera:
            LOGGER.warning("Ignoring an invalid camera state on %s", msg.topic)
            return
        self.camera_states[camera] = state
        async_dispatcher_send(self.hass, self.signal("camera", camera))

    # -- live topics ---------------------------------------------------------------------------

    @callback
    def _on_alert(self, msg: ReceiveMessage) -> None:
        camera = msg.topic[len(self.prefix) + 1 :].split("/", 1)[0]
        alert = parse_json_object(msg.payload)
        if alert is None or not isinstance(alert.get("kind"), str):
            LOGGER.warning("Ignoring an invalid alert on %s", msg.topic)
            return
        async_dispatcher_send(self.hass, self.signal("alert", camera), alert)

    @callback
    def _on_clip(self, msg: ReceiveMessage) -> None:
        camera = msg.topic[len(self.prefix) + 1 :].split("/", 1)[0]
        clip = parse_json_object(msg.payload)
        if clip is None:
            LOGGER.warning("Ignoring an invalid clip message on %s", msg.topic)
            return
        async_dispatcher_send(self.hass, self.signal("clip", camera), clip)

    @callback
    def _on_seen(self, msg: ReceiveMessage) -> None:
        person_id = msg.topic.rsplit("/", 1)[-1]
        seen = parse_json_object(msg.payload)
        if seen is None:
            LOGGER.warning("Ignoring an invalid seen message on %s", msg.topic)
            return
        async_dispatcher_send(self.hass, self.signal("seen", person_id), seen)

    @callback
    def _on_response(self, msg: ReceiveMessage) -> None:
        request_id = msg.topic.rsplit("/", 1)[-1]
        future = self._pending.get(request_id)
        if future is None or future.done():
            return
        response = parse_json_object(msg.payload)
        if response is None:
            LOGGER.warning("Ignoring an invalid response on %s", msg.topic)
            return
        future.set_result(response)

    # -- commands ------------------------------------------------------------------------------

    async def async_command(self, verb: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run a command on the engine and return its `result`.

        Raises `ServiceValidationError` when the engine refuses the request (bad request, not
        found, forbidden, too large) and `HomeAssistantError` when it is offline, does not answer
        in time or fails.
        """
        if not self.online:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="engine_offline",
                translation_placeholders={"prefix": self.prefix},
            )
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = self.hass.loop.create_future()
        self._pending[request_id] = future
        try:
            await mqtt.async_publish(
                self.hass,
                f"{self.prefix}/command/{verb}",
                json.dumps({"request_id": request_id, **body}),
                qos=1,
                retain=False,
            )
            async with asyncio.timeout(timeout):
                response = await future
        except TimeoutError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="command_timeout",
                translation_placeholders={"command": verb, "timeout": f"{timeout:g}"},
            ) from err
        finally:
            self._pending.pop(request_id, None)
        if response.get("ok") is True and isinstance(response.get("result"), dict):
            result: dict[str, Any] = response["result"]
            return result
        error = response.get("error")
        error = error if isinstance(error, dict) else {}
        placeholders = {
            "command": verb,
            "code": str(error.get("code", "internal")),
            "message": str(error.get("message", "")),
        }
        if placeholders["code"] in VALIDATION_ERROR_CODES:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="command_rejected",
                translation_placeholders=placeholders,
            )
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="command_failed",
            translation_placeholders=placeholders,
        )

    # -- devices -------------------------------------------------------------------------------

    @callback
    def async_update_engine_device(self) -> None:
        """Create or update the device of the engine instance (cameras and persons hang on it)."""
        info = self.info or {}
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={engine_identifier(self.prefix)},
            manufacturer="FaceTrack",
            model="FaceTrack engine",
            model_id=info.get("backend"),
            name=self.entry.title,
            sw_version=info.get("version"),
        )

    @callback
    def _remove_device(self, identifier: tuple[str, str]) -> None:
        device_registry = dr.async_get(self.hass)
        device = device_registry.async_get_device(identifiers={identifier})
        if device is not None:
            device_registry.async_update_device(device.id, remove_config_entry_id=self.entry.entry_id)

    @callback
    def is_current_device(self, device: dr.DeviceEntry) -> bool:
        """Whether a device of this entry still matches an engine camera or a person (not excluded)."""
        for domain, identifier in device.identifiers:
            if domain != DOMAIN:
                continue
            if identifier == self.prefix:
                return True
            for camera in self.cameras:
                if camera not in self.excluded_cameras and identifier == camera_identifier(self.prefix, camera)[1]:
                    return True
            for person_id in self.persons:
                if (
                    person_id not in self.excluded_persons
                    and identifier == person_identifier(self.prefix, person_id)[1]
                ):
                    return True
        return False

    @callback
    def async_remove_unwanted_devices(self) -> None:
        """Remove the devices of excluded cameras / persons, and those of another topic prefix.

        Run at setup, so after a change of the options or of the topic prefix (reconfigure):
        their entities go with them.
        """
        camera_head, person_head = f"{self.prefix}:camera:", f"{self.prefix}:person:"
        device_registry = dr.async_get(self.hass)
        for device in dr.async_entries_for_config_entry(device_registry, self.entry.entry_id):
            for domain, identifier in device.identifiers:
                if domain != DOMAIN or identifier == self.prefix:
                    continue
                if identifier.startswith(camera_head):
                    unwanted = identifier[len(camera_head) :] in self.excluded_cameras
                elif identifier.startswith(person_head):
                    unwanted = identifier[len(person_head) :] in self.excluded_persons
                else:
                    unwanted = True  # another topic prefix (reconfigured)
                if unwanted:
                    device_registry.async_update_device(device.id, remove_config_entry_id=self.entry.entry_id)
                    break
