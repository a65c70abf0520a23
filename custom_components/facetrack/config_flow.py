"""Config flow of FaceTrack: MQTT discovery of `<prefix>/info`, or a topic prefix by hand."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import voluptuous as vol
from homeassistant.components import mqtt
from homeassistant.components.mqtt import ReceiveMessage
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import callback
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

from . import const
from .const import (
    CONF_PRESENCE_TIMEOUT,
    CONF_TOPIC_PREFIX,
    DEFAULT_PRESENCE_TIMEOUT,
    DEFAULT_TOPIC_PREFIX,
    DOMAIN,
    MAX_PRESENCE_TIMEOUT,
    MIN_PRESENCE_TIMEOUT,
)
from .hub import parse_info

# A topic prefix: MQTT topic levels without wildcards, no leading/trailing slash.
TOPIC_PREFIX_RE = re.compile(r"^[^/#+\s]+(/[^/#+\s]+)*$")


def _title(prefix: str) -> str:
    return "FaceTrack" if prefix == DEFAULT_TOPIC_PREFIX else f"FaceTrack ({prefix})"


class FaceTrackConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a FaceTrack engine instance (one entry per topic prefix)."""

    VERSION = 1

    def __init__(self) -> None:
        """Initialise."""
        self._info: dict[str, Any] | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> FaceTrackOptionsFlow:
        """The options flow (presence timeout)."""
        return FaceTrackOptionsFlow()

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """An engine announced itself with its retained `<prefix>/info`."""
        info = parse_info(discovery_info.payload) if discovery_info.payload else None
        if info is None or discovery_info.topic != f"{info['topic_prefix']}/info":
            return self.async_abort(reason="invalid_discovery_info")
        prefix: str = info["topic_prefix"]
        await self.async_set_unique_id(prefix)
        self._abort_if_unique_id_configured()
        self._info = info
        self.context["title_placeholders"] = {"prefix": prefix}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Confirm the discovered engine."""
        assert self._info is not None
        prefix: str = self._info["topic_prefix"]
        if user_input is not None:
            return self.async_create_entry(title=_title(prefix), data={CONF_TOPIC_PREFIX: prefix})
        return self.async_show_form(
            step_id="discovery_confirm",
            description_placeholders={
                "prefix": prefix,
                "version": str(self._info.get("version", "?")),
                "cameras": ", ".join(self._info["cameras"]) or "-",
            },
        )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the topic prefix and check that an engine answers on it."""
        errors: dict[str, str] = {}
        if user_input is not None:
            prefix = user_input[CONF_TOPIC_PREFIX].strip()
            if not TOPIC_PREFIX_RE.match(prefix):
                errors[CONF_TOPIC_PREFIX] = "invalid_topic"
            else:
                await self.async_set_unique_id(prefix)
                self._abort_if_unique_id_configured()
                if not await mqtt.async_wait_for_mqtt_client(self.hass):
                    errors["base"] = "cannot_connect"
                else:
                    info = await self._async_wait_for_info(prefix)
                    if info is None:
                        errors["base"] = "no_engine"
                    else:
                        return self.async_create_entry(title=_title(prefix), data={CONF_TOPIC_PREFIX: prefix})
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_TOPIC_PREFIX): str}),
                user_input or {CONF_TOPIC_PREFIX: DEFAULT_TOPIC_PREFIX},
            ),
            errors=errors,
        )

    async def _async_wait_for_info(self, prefix: str) -> dict[str, Any] | None:
        """Subscribe to `<prefix>/info` and wait for a valid retained payload."""
        received: asyncio.Future[dict[str, Any]] = self.hass.loop.create_future()

        @callback
        def _on_info(msg: ReceiveMessage) -> None:
            info = parse_info(msg.payload)
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
    """Options: the presence timeout."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the presence timeout."""
        if user_input is not None:
            return self.async_create_entry(data={CONF_PRESENCE_TIMEOUT: int(user_input[CONF_PRESENCE_TIMEOUT])})
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_PRESENCE_TIMEOUT,
                    default=self.config_entry.options.get(CONF_PRESENCE_TIMEOUT, DEFAULT_PRESENCE_TIMEOUT),
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
        )
        return self.async_show_form(step_id="init", data_schema=schema)
