"""Config flow of FaceTrack: MQTT / Supervisor discovery, a topic prefix by hand, reconfigure, options."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import voluptuous as vol
from homeassistant.components import mqtt
from homeassistant.components.mqtt import ReceiveMessage
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import callback
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

from . import const
from .const import (
    CONF_CAMERAS,
    CONF_EXCLUDED_CAMERAS,
    CONF_EXCLUDED_PERSONS,
    CONF_PERSONS,
    CONF_PRESENCE_TIMEOUT,
    CONF_TOPIC_PREFIX,
    DEFAULT_PRESENCE_TIMEOUT,
    DEFAULT_TOPIC_PREFIX,
    DOMAIN,
    MAX_PRESENCE_TIMEOUT,
    MIN_PRESENCE_TIMEOUT,
)
from .migration import ENTRY_MINOR_VERSION, ENTRY_VERSION
from .payloads import Info, PayloadError, loads

# A topic prefix: MQTT topic levels without wildcards, no leading/trailing slash.
TOPIC_PREFIX_RE = re.compile(r"^[^/#+\s]+(/[^/#+\s]+)*$")


def _title(prefix: str) -> str:
    return "FaceTrack" if prefix == DEFAULT_TOPIC_PREFIX else f"FaceTrack ({prefix})"


def _parse_info(payload: str | bytes | bytearray) -> Info | None:
    """A valid `<prefix>/info` payload of contract v1, else None."""
    try:
        return Info.from_json(loads(payload))
    except PayloadError:
        return None


class FaceTrackConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a FaceTrack engine instance (one entry per topic prefix)."""

    VERSION = ENTRY_VERSION
    MINOR_VERSION = ENTRY_MINOR_VERSION  # 1.2: entity ids under the engine's name (migration.py)

    def __init__(self) -> None:
        """Initialise."""
        self._info: Info | None = None
        self._hassio: HassioServiceInfo | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> FaceTrackOptionsFlow:
        """The options flow (presence timeout, cameras and persons)."""
        return FaceTrackOptionsFlow()

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """An engine announced itself with its retained `<prefix>/info`."""
        info = _parse_info(discovery_info.payload) if discovery_info.payload else None
        if info is None or discovery_info.topic != f"{info.topic_prefix}/info":
            return self.async_abort(reason="invalid_discovery_info")
        prefix = info.topic_prefix
        await self.async_set_unique_id(prefix)
        self._abort_if_unique_id_configured()
        self._info = info
        self.context["title_placeholders"] = {"prefix": prefix}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Confirm the discovered engine."""
        assert self._info is not None
        prefix = self._info.topic_prefix
        if user_input is not None:
            return self.async_create_entry(title=_title(prefix), data={CONF_TOPIC_PREFIX: prefix})
        return self.async_show_form(
            step_id="discovery_confirm",
            description_placeholders={
                "prefix": prefix,
                "version": self._info.version if self._info.version is not None else "?",
                "cameras": ", ".join(self._info.cameras) or "-",
            },
        )

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The FaceTrack app (add-on) announced its topic prefix through the Supervisor."""
        prefix = discovery_info.config.get(CONF_TOPIC_PREFIX)
        if not isinstance(prefix, str) or not TOPIC_PREFIX_RE.match(prefix := prefix.strip()):
            return self.async_abort(reason="invalid_discovery_info")
        await self.async_set_unique_id(prefix)
        self._abort_if_unique_id_configured()
        self._hassio = discovery_info
        self.context["title_placeholders"] = {"prefix": prefix}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Confirm the engine of the FaceTrack app."""
        assert self._hassio is not None
        prefix: str = self._hassio.config[CONF_TOPIC_PREFIX].strip()
        if user_input is not None:
            return self.async_create_entry(title=_title(prefix), data={CONF_TOPIC_PREFIX: prefix})
        return self.async_show_form(
            step_id="hassio_confirm",
            description_placeholders={"addon": self._hassio.name, "prefix": prefix},
        )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the topic prefix and check that an engine answers on it."""
        errors: dict[str, str] = {}
        if user_input is not None:
            prefix = user_input[CONF_TOPIC_PREFIX].strip()
            errors = await self._async_check_prefix(prefix)
            if not errors:
                return self.async_create_entry(title=_title(prefix), data={CONF_TOPIC_PREFIX: prefix})
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_TOPIC_PREFIX): str}),
                user_input or {CONF_TOPIC_PREFIX: DEFAULT_TOPIC_PREFIX},
            ),
            errors=errors,
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Change the topic prefix (checked as in the user step); the entry is reloaded."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            prefix = user_input[CONF_TOPIC_PREFIX].strip()
            errors = await self._async_check_prefix(prefix, current=entry.data[CONF_TOPIC_PREFIX])
            if not errors:
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=prefix,
                    title=_title(prefix),
                    data_updates={CONF_TOPIC_PREFIX: prefix},
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_TOPIC_PREFIX): str}),
                user_input or {CONF_TOPIC_PREFIX: entry.data[CONF_TOPIC_PREFIX]},
            ),
            errors=errors,
        )

    async def _async_check_prefix(self, prefix: str, current: str | None = None) -> dict[str, str]:
        """Errors of a topic prefix: its form, another entry on it, MQTT, an engine answering."""
        if not TOPIC_PREFIX_RE.match(prefix):
            return {CONF_TOPIC_PREFIX: "invalid_topic"}
        if prefix != current:
            await self.async_set_unique_id(prefix)
            self._abort_if_unique_id_configured()
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            return {"base": "cannot_connect"}
        if await self._async_wait_for_info(prefix) is None:
            return {"base": "no_engine"}
        return {}

    async def _async_wait_for_info(self, prefix: str) -> Info | None:
        """Subscribe to `<prefix>/info` and wait for a valid retained payload."""
        received: asyncio.Future[Info] = self.hass.loop.create_future()

        @callback
        def _on_info(msg: ReceiveMessage) -> None:
            info = _parse_info(msg.payload)
            if info is not None and not received.done():
                received.set_result(info)

        unsubscribe = await mqtt.async_subscribe(self.hass, f"{prefix}/info", _on_info, qos=1)
        try:
            async with asyncio.timeout(const.DISCOVERY_TIMEOUT):
                return await received
        except TimeoutError:
            return None
        finally:
            unsubscribe()


class FaceTrackOptionsFlow(OptionsFlow):
    """Options: the presence timeout, and which cameras and persons get entities."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the presence timeout and the cameras / persons (those the engine knows now)."""
        options = self.config_entry.options
        excluded_cameras: list[str] = list(options.get(CONF_EXCLUDED_CAMERAS, []))
        excluded_persons: list[str] = list(options.get(CONF_EXCLUDED_PERSONS, []))
        cameras: list[str] = []
        persons: dict[str, str] = {}
        if self.config_entry.state is ConfigEntryState.LOADED:
            hub = self.config_entry.runtime_data.hub
            cameras = list(hub.cameras)
            persons = {pid: person.display_name for pid, person in hub.persons.items()}
        if user_input is not None:
            # Excluded: the known ones left out, and those excluded before that the engine does not
            # know now. Cameras and persons added later get entities.
            selected_cameras = user_input.get(CONF_CAMERAS, [])
            selected_persons = user_input.get(CONF_PERSONS, [])
            return self.async_create_entry(
                data={
                    CONF_PRESENCE_TIMEOUT: int(user_input[CONF_PRESENCE_TIMEOUT]),
                    CONF_EXCLUDED_CAMERAS: sorted(
                        {c for c in excluded_cameras if c not in cameras}
                        | {c for c in cameras if c not in selected_cameras}
                    ),
                    CONF_EXCLUDED_PERSONS: sorted(
                        {p for p in excluded_persons if p not in persons}
                        | {p for p in persons if p not in selected_persons}
                    ),
                }
            )
        fields: dict[Any, Any] = {
            vol.Required(
                CONF_PRESENCE_TIMEOUT,
                default=options.get(CONF_PRESENCE_TIMEOUT, DEFAULT_PRESENCE_TIMEOUT),
            ): NumberSelector(
                NumberSelectorConfig(
                    min=MIN_PRESENCE_TIMEOUT,
                    max=MAX_PRESENCE_TIMEOUT,
                    step=1,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.BOX,
                )
            ),
        }
        if cameras:
            fields[vol.Optional(CONF_CAMERAS, default=[c for c in cameras if c not in excluded_cameras])] = (
                _multi_select([SelectOptionDict(value=c, label=c) for c in cameras])
            )
        if persons:
            fields[vol.Optional(CONF_PERSONS, default=[p for p in persons if p not in excluded_persons])] = (
                _multi_select([SelectOptionDict(value=pid, label=name) for pid, name in persons.items()])
            )
        return self.async_show_form(step_id="init", data_schema=vol.Schema(fields))


def _multi_select(options: list[SelectOptionDict]) -> SelectSelector:
    return SelectSelector(SelectSelectorConfig(options=options, multiple=True, mode=SelectSelectorMode.LIST))
