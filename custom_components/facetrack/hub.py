"""The FaceTrack engine as seen over MQTT (contract v1, docs/mqtt.md of the engine).

One `FaceTrackHub` per config entry (= per engine topic prefix): it subscribes to the engine's
topics through Home Assistant's MQTT integration, keeps the retained state (status, info, persons,
camera states, inbox), forwards the live messages (seen, alert, clip, inbox event) to the entities with
dispatcher signals, and runs commands (publish `<prefix>/command/<verb>`, await
`<prefix>/response/<request_id>`). Payloads are parsed by `.payloads`: the state it keeps and the
messages it forwards are those typed objects; an invalid payload is logged and ignored.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from homeassistant.components import mqtt
from homeassistant.components.mqtt import ReceiveMessage
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.util import slugify

from .const import (
    CAMERA_DISABLED,
    CAMERA_OFFLINE,
    CONF_EXCLUDED_CAMERAS,
    CONF_EXCLUDED_PERSONS,
    CONF_PRESENCE_TIMEOUT,
    CONF_TOPIC_PREFIX,
    DEFAULT_PRESENCE_TIMEOUT,
    DOMAIN,
    GROUP_PENDING,
    LOGGER,
    STATUS_ONLINE,
)
from .payloads import (
    Alert,
    CameraState,
    Clip,
    Inbox,
    InboxEvent,
    InboxGroup,
    Info,
    PayloadError,
    Person,
    Persons,
    Response,
    Seen,
    loads,
)

# Error codes of a response that mean "the request was wrong" rather than "the engine failed".
VALIDATION_ERROR_CODES = frozenset({"bad_request", "not_found", "forbidden", "too_large", "not_an_image"})

type FaceTrackConfigEntry = ConfigEntry[FaceTrackData]


@dataclass
class FaceTrackData:
    """Runtime data of a FaceTrack config entry."""

    hub: FaceTrackHub


class DeviceKind(StrEnum):
    """What a device of the integration stands for.

    Identifiers: the engine's is the topic prefix; a camera's and a person's `<prefix>:<kind>:<key>`.
    """

    ENGINE = "engine"
    CAMERA = "camera"
    PERSON = "person"


def camera_identifier(prefix: str, camera: str) -> tuple[str, str]:
    """Device registry identifier of an engine camera."""
    return (DOMAIN, f"{prefix}:{DeviceKind.CAMERA}:{camera}")


def person_identifier(prefix: str, person_id: str) -> tuple[str, str]:
    """Device registry identifier of a person of the face library."""
    return (DOMAIN, f"{prefix}:{DeviceKind.PERSON}:{person_id}")


def engine_identifier(prefix: str) -> tuple[str, str]:
    """Device registry identifier of the engine instance."""
    return (DOMAIN, prefix)


def object_id_prefix(prefix: str) -> str:
    """The head of the entity ids of an engine's cameras and persons: the topic prefix slugified, under
    the integration's name (`facetrack` -> `facetrack`, `facetrack/yard` -> `facetrack_yard`,
    `home/faces` -> `facetrack_home_faces`)."""
    slug = slugify(prefix)
    return slug if slug.startswith(DOMAIN) else f"{DOMAIN}_{slug}"


def parse_identifier(prefix: str, identifier: tuple[str, str]) -> tuple[DeviceKind, str] | None:
    """The kind and key (camera name, person id; "" for the engine) of a device identifier of `prefix`.

    The inverse of the `*_identifier` functions above; None for another domain's identifier or for one
    of another topic prefix.
    """
    domain, value = identifier
    if domain != DOMAIN:
        return None
    if value == prefix:
        return DeviceKind.ENGINE, ""
    for kind in (DeviceKind.CAMERA, DeviceKind.PERSON):
        head = f"{prefix}:{kind}:"
        if value.startswith(head):
            return kind, value[len(head) :]
    return None


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
        self.info: Info | None = None
        self.persons: dict[str, Person] = {}
        self.camera_states: dict[str, CameraState] = {}
        # Every camera of the engine's configuration (those running, then the disabled ones: they keep
        # their device and entities, unavailable).
        self.cameras: list[str] = []
        self.disabled_cameras: frozenset[str] = frozenset()
        # The unknown-face inbox (`<prefix>/inbox`, contract 1.1): groups by id, in the engine's order,
        # and the engine's counts ("pending", "ignored": those it sent).
        self.inbox: dict[str, InboxGroup] = {}
        self.inbox_counts: dict[str, int] = {}
        # Options: cameras / person ids that get no entities (and no device).
        self.excluded_cameras: frozenset[str] = frozenset(entry.options.get(CONF_EXCLUDED_CAMERAS, ()))
        self.excluded_persons: frozenset[str] = frozenset(entry.options.get(CONF_EXCLUDED_PERSONS, ()))
        self._listeners = _Listeners()
        self._pending: dict[str, asyncio.Future[Response]] = {}
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
        """Whether the engine is online, the camera enabled and its last state neither offline nor disabled."""
        state = self.camera_states.get(camera)
        return (
            self.camera_alerts_available(camera)
            and state is not None
            and state.state not in (CAMERA_OFFLINE, CAMERA_DISABLED)
        )

    def camera_alerts_available(self, camera: str) -> bool:
        """Whether the camera's alerts can come: the engine online and the camera not disabled in its
        configuration (the face event and the last-alert image)."""
        return self.online and camera not in self.disabled_cameras

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
        return [gid for gid, group in self.inbox.items() if group.status == GROUP_PENDING]

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
        if (info := _parse(Info.from_json, msg, "info payload")) is None:
            return
        self.info = info
        disabled = frozenset(info.disabled_cameras) - set(info.cameras)
        cameras = list(dict.fromkeys((*info.cameras, *info.disabled_cameras)))
        self.async_update_engine_device()
        new = [c for c in cameras if c not in self.cameras and c not in self.excluded_cameras]
        removed = [c for c in self.cameras if c not in cameras]
        toggled = [c for c in cameras if c in self.cameras and (c in disabled) != (c in self.disabled_cameras)]
        for camera in sorted(disabled - self.disabled_cameras):
            LOGGER.info("Camera %s of FaceTrack engine %s is disabled in its configuration", camera, self.prefix)
        self.cameras = cameras
        self.disabled_cameras = disabled
        for camera in removed:
            self.camera_states.pop(camera, None)
            self._remove_device(camera_identifier(self.prefix, camera))
        if new:
            for add in self._listeners.cameras:
                add(new)
        for camera in toggled:  # enabled or disabled again: its entities' availability changes
            async_dispatcher_send(self.hass, self.signal("camera", camera))

    @callback
    def _on_persons(self, msg: ReceiveMessage) -> None:
        if (data := _parse(Persons.from_json, msg, "persons payload")) is None:
            return
        persons = {person.person_id: person for person in data.persons}
        device_registry = dr.async_get(self.hass)
        new = [pid for pid in persons if pid not in self.persons and pid not in self.excluded_persons]
        for pid, person in persons.items():
            previous = self.persons.get(pid)
            if previous is not None and previous.name != person.name:
                device = device_registry.async_get_device(identifiers={person_identifier(self.prefix, pid)})
                if device is not None:
                    device_registry.async_update_device(device.id, name=person.display_name)
        self.persons = persons
        # Forgotten persons (also those forgotten while Home Assistant was not running).
        for device in dr.async_entries_for_config_entry(device_registry, self.entry.entry_id):
            for identifier in device.identifiers:
                parsed = parse_identifier(self.prefix, identifier)
                if parsed is not None and parsed[0] is DeviceKind.PERSON and parsed[1] not in persons:
                    device_registry.async_update_device(device.id, remove_config_entry_id=self.entry.entry_id)
        if new:
            for add in self._listeners.persons:
                add(new)
        async_dispatcher_send(self.hass, self.signal("persons"))

    @callback
    def _on_inbox(self, msg: ReceiveMessage) -> None:
        if (inbox := _parse(Inbox.from_json, msg, "inbox payload")) is None:
            return
        before = set(self.pending_groups())
        self.inbox = {group.group_id: group for group in inbox.groups}
        counts = {"pending": inbox.pending, "ignored": inbox.ignored}
        self.inbox_counts = {key: count for key, count in counts.items() if count is not None}
        # Entities of groups that left the pending state (named, discarded, merged, ignored) listen
        # for the "inbox" signal and remove themselves; new pending groups get entities.
        if new := [gid for gid in self.pending_groups() if gid not in before]:
            for add in self._listeners.groups:
                add(new)
        async_dispatcher_send(self.hass, self.signal("inbox"))

    @callback
    def _on_inbox_event(self, msg: ReceiveMessage) -> None:
        if (event := _parse(InboxEvent.from_json, msg, "inbox event")) is None:
            return
        async_dispatcher_send(self.hass, self.signal("inbox_event"), event)

    @callback
    def _on_camera_state(self, msg: ReceiveMessage) -> None:
        camera = self._topic_camera(msg.topic)
        if (state := _parse(lambda data: CameraState.from_json(data, camera), msg, "camera state")) is None:
            return
        self.camera_states[camera] = state
        async_dispatcher_send(self.hass, self.signal("camera", camera))

    # -- live topics ---------------------------------------------------------------------------

    def _topic_camera(self, topic: str) -> str:
        """The camera of a `<prefix>/<camera>/...` topic."""
        return topic[len(self.prefix) + 1 :].split("/", 1)[0]

    @callback
    def _on_alert(self, msg: ReceiveMessage) -> None:
        if (alert := _parse(Alert.from_json, msg, "alert")) is None:
            return
        async_dispatcher_send(self.hass, self.signal("alert", self._topic_camera(msg.topic)), alert)

    @callback
    def _on_clip(self, msg: ReceiveMessage) -> None:
        if (clip := _parse(Clip.from_json, msg, "clip message")) is None:
            return
        async_dispatcher_send(self.hass, self.signal("clip", self._topic_camera(msg.topic)), clip)

    @callback
    def _on_seen(self, msg: ReceiveMessage) -> None:
        person_id = msg.topic.rsplit("/", 1)[-1]
        if (seen := _parse(Seen.from_json, msg, "seen message")) is None:
            return
        async_dispatcher_send(self.hass, self.signal("seen", person_id), seen)

    @callback
    def _on_response(self, msg: ReceiveMessage) -> None:
        request_id = msg.topic.rsplit("/", 1)[-1]
        future = self._pending.get(request_id)
        if future is None or future.done():
            return
        if (response := _parse(Response.from_json, msg, "response")) is None:
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
        future: asyncio.Future[Response] = self.hass.loop.create_future()
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
        if response.ok is True and response.result is not None:
            return response.result
        placeholders = {
            "command": verb,
            "code": response.error_code if response.error_code is not None else "internal",
            "message": response.error_message if response.error_message is not None else "",
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
        info = self.info
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={engine_identifier(self.prefix)},
            manufacturer="FaceTrack",
            model="FaceTrack engine",
            model_id=info.backend if info is not None else None,
            name=self.entry.title,
            sw_version=info.version if info is not None else None,
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
        for identifier in device.identifiers:
            match parse_identifier(self.prefix, identifier):
                case (DeviceKind.ENGINE, _):
                    return True
                case (DeviceKind.CAMERA, camera) if camera in self.cameras and camera not in self.excluded_cameras:
                    return True
                case (DeviceKind.PERSON, person_id) if (
                    person_id in self.persons and person_id not in self.excluded_persons
                ):
                    return True
        return False

    @callback
    def async_remove_unwanted_devices(self) -> None:
        """Remove the devices of excluded cameras / persons, and those of another topic prefix.

        Run at setup, so after a change of the options or of the topic prefix (reconfigure):
        their entities go with them.
        """
        device_registry = dr.async_get(self.hass)
        for device in dr.async_entries_for_config_entry(device_registry, self.entry.entry_id):
            for identifier in device.identifiers:
                match parse_identifier(self.prefix, identifier):
                    case (DeviceKind.CAMERA, camera):
                        unwanted = camera in self.excluded_cameras
                    case (DeviceKind.PERSON, person_id):
                        unwanted = person_id in self.excluded_persons
                    case None:
                        unwanted = identifier[0] == DOMAIN  # of another topic prefix (reconfigured)
                    case _:
                        unwanted = False  # the engine
                if unwanted:
                    device_registry.async_update_device(device.id, remove_config_entry_id=self.entry.entry_id)
                    break


def _parse[P](parse: Callable[[Any], P], msg: ReceiveMessage, what: str) -> P | None:
    """The message's payload parsed by `parse` (a `from_json` of .payloads); None, logged, when invalid."""
    try:
        return parse(loads(msg.payload))
    except PayloadError:
        LOGGER.warning("Ignoring an invalid %s on %s", what, msg.topic)
        return None
