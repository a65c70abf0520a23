"""Config flow: MQTT discovery, user step, options."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
from custom_components.facetrack.const import CONF_PRESENCE_TIMEOUT, CONF_TOPIC_PREFIX, DOMAIN
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .helpers import info, validate


def _discovery(payload: str, topic: str = "facetrack/info") -> MqttServiceInfo:
    return MqttServiceInfo(
        topic=topic,
        payload=payload,
        qos=1,
        retain=True,
        subscribed_topic="facetrack/info",
        timestamp=None,
    )


async def test_mqtt_discovery_confirm(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A retained info announcement starts a flow; confirming creates the entry."""
    payload = json.dumps(validate("info", info()))
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery(payload)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"]["cameras"] == "front_door, garden"

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "FaceTrack"
    assert result["data"] == {CONF_TOPIC_PREFIX: "facetrack"}
    assert result["result"].unique_id == "facetrack"


@pytest.mark.parametrize(
    ("payload", "topic"),
    [
        ("", "facetrack/info"),
        ("not json", "facetrack/info"),
        (json.dumps({**info(), "contract_version": "2"}), "facetrack/info"),
        (json.dumps(info(prefix="other")), "facetrack/info"),
    ],
)
async def test_mqtt_discovery_invalid(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, payload: str, topic: str
) -> None:
    """Empty, non-JSON, other contract versions and mismatched prefixes abort."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery(payload, topic)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_mqtt_discovery_already_configured(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, config_entry: MockConfigEntry
) -> None:
    """The same engine (topic prefix) is set up once."""
    config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery(json.dumps(info()))
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_user_flow(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """The user gives a prefix; the engine's retained info confirms it."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"

    # The broker delivers the retained info as soon as the flow subscribes.
    def _on_subscribe(topic: str, qos: int = 0) -> None:
        if topic == "lab/facetrack/info":
            hass.loop.call_soon(
                async_fire_mqtt_message,
                hass,
                "lab/facetrack/info",
                json.dumps(validate("info", info(prefix="lab/facetrack"))),
                1,
                True,
            )

    with patch("custom_components.facetrack.config_flow.mqtt.async_subscribe", wraps=_wrap_subscribe(_on_subscribe)):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_TOPIC_PREFIX: " lab/facetrack "}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "FaceTrack (lab/facetrack)"
    assert result["data"] == {CONF_TOPIC_PREFIX: "lab/facetrack"}


def _wrap_subscribe(on_subscribe):  # type: ignore[no-untyped-def]
    from homeassistant.components import mqtt

    real = mqtt.async_subscribe

    async def _subscribe(hass, topic, callback, qos=0, encoding="utf-8"):  # type: ignore[no-untyped-def]
        unsubscribe = await real(hass, topic, callback, qos, encoding)
        on_subscribe(topic, qos)
        return unsubscribe

    return _subscribe


async def test_user_flow_errors_then_success(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """Invalid prefix, no MQTT client, no engine answering; then it works."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "face/#"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_TOPIC_PREFIX: "invalid_topic"}

    with patch("homeassistant.components.mqtt.async_wait_for_mqtt_client", return_value=False):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "facetrack"})
    assert result["errors"] == {"base": "cannot_connect"}

    with patch("custom_components.facetrack.const.DISCOVERY_TIMEOUT", 0.05):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "facetrack"})
    assert result["errors"] == {"base": "no_engine"}

    # Retained info already known to the broker: delivered on subscription.
    def _on_subscribe(topic: str, qos: int = 0) -> None:
        hass.loop.call_soon(async_fire_mqtt_message, hass, topic, json.dumps(info()), 1, True)

    with patch("custom_components.facetrack.config_flow.mqtt.async_subscribe", wraps=_wrap_subscribe(_on_subscribe)):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "facetrack"})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_already_configured(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, config_entry: MockConfigEntry
) -> None:
    """A configured prefix aborts."""
    config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "facetrack"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_options_flow(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """The presence timeout is an option, applied without a reload."""
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    result = await hass.config_entries.options.async_configure(result["flow_id"], {CONF_PRESENCE_TIMEOUT: 30.0})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert init_integration.options == {CONF_PRESENCE_TIMEOUT: 30}
    assert init_integration.runtime_data.hub.presence_timeout == 30
