"""Config flow: MQTT and Supervisor discovery, user step, reconfigure, options."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
from custom_components.facetrack.const import (
    CONF_CAMERAS,
    CONF_EXCLUDED_CAMERAS,
    CONF_EXCLUDED_PERSONS,
    CONF_PERSONS,
    CONF_PRESENCE_TIMEOUT,
    CONF_TOPIC_PREFIX,
    DOMAIN,
)
from homeassistant.config_entries import SOURCE_HASSIO, SOURCE_MQTT, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .helpers import ANNA_ID, BOB_ID, PREFIX, fire_engine_online, info, validate


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
    assert init_integration.options == {CONF_PRESENCE_TIMEOUT: 30, CONF_EXCLUDED_CAMERAS: [], CONF_EXCLUDED_PERSONS: []}
    assert init_integration.runtime_data.hub.presence_timeout == 30


def _hassio(config: dict) -> HassioServiceInfo:  # type: ignore[type-arg]
    return HassioServiceInfo(config=config, name="FaceTrack", slug="a0d7b954_facetrack", uuid="1234")


async def test_hassio_discovery_confirm(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """The FaceTrack app announces its topic prefix through the Supervisor; confirming creates the entry."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=_hassio({CONF_TOPIC_PREFIX: "home/facetrack"})
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"addon": "FaceTrack", "prefix": "home/facetrack"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "FaceTrack (home/facetrack)"
    assert result["data"] == {CONF_TOPIC_PREFIX: "home/facetrack"}
    assert result["result"].unique_id == "home/facetrack"


@pytest.mark.parametrize("config", [{}, {CONF_TOPIC_PREFIX: 1}, {CONF_TOPIC_PREFIX: "face/#"}])
async def test_hassio_discovery_invalid(hass: HomeAssistant, mqtt_mock: MqttMockHAClient, config: dict) -> None:  # type: ignore[type-arg]
    """A missing or invalid topic prefix aborts."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_HASSIO}, data=_hassio(config))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_hassio_discovery_already_configured(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, config_entry: MockConfigEntry
) -> None:
    """An engine already set up (for example from MQTT discovery) is not offered again."""
    config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=_hassio({CONF_TOPIC_PREFIX: PREFIX})
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reconfigure(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The topic prefix is checked as in the user step; the old prefix's devices and entities go."""
    result = await init_integration.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "a/+/b"})
    assert result["errors"] == {CONF_TOPIC_PREFIX: "invalid_topic"}
    with patch("custom_components.facetrack.const.DISCOVERY_TIMEOUT", 0.05):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "lab"})
    assert result["errors"] == {"base": "no_engine"}

    def _on_subscribe(topic: str, qos: int = 0) -> None:
        if topic == "lab/info":
            hass.loop.call_soon(async_fire_mqtt_message, hass, topic, json.dumps(info(prefix="lab")), 1, True)

    with patch("custom_components.facetrack.config_flow.mqtt.async_subscribe", wraps=_wrap_subscribe(_on_subscribe)):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "lab"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert init_integration.data == {CONF_TOPIC_PREFIX: "lab"}
    assert init_integration.unique_id == "lab"
    assert init_integration.title == "FaceTrack (lab)"
    identifiers = {
        next(iter(d.identifiers))[1]
        for d in dr.async_entries_for_config_entry(device_registry, init_integration.entry_id)
    }
    # Only devices of the new prefix (the engine; its cameras from the retained info).
    assert identifiers == {"lab", "lab:camera:front_door", "lab:camera:garden"}
    assert entity_registry.async_get("binary_sensor.facetrack_anna_presence") is None

    fire_engine_online(hass, "lab")
    await hass.async_block_till_done()
    # The new engine's entities carry its prefix.
    assert hass.states.get("binary_sensor.facetrack_lab_anna_presence").state == "off"


async def test_reconfigure_same_prefix_and_taken_prefix(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """The current prefix is accepted again (engine checked); another entry's prefix aborts."""
    result = await init_integration.start_reconfigure_flow(hass)

    def _on_subscribe(topic: str, qos: int = 0) -> None:
        if topic == f"{PREFIX}/info":
            hass.loop.call_soon(async_fire_mqtt_message, hass, topic, json.dumps(info()), 1, True)

    with patch("custom_components.facetrack.config_flow.mqtt.async_subscribe", wraps=_wrap_subscribe(_on_subscribe)):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: PREFIX})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()

    MockConfigEntry(
        domain=DOMAIN, title="FaceTrack (lab)", unique_id="lab", data={CONF_TOPIC_PREFIX: "lab"}
    ).add_to_hass(hass)
    result = await init_integration.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOPIC_PREFIX: "lab"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_options_cameras_and_persons(
    hass: HomeAssistant, init_integration: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """Cameras and persons left out get no entities nor device (after a reload); default: all."""
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    schema = result["data_schema"].schema
    defaults = {str(key): key.default() for key in schema if str(key) in (CONF_CAMERAS, CONF_PERSONS)}
    assert defaults == {CONF_CAMERAS: ["front_door", "garden"], CONF_PERSONS: [ANNA_ID, BOB_ID]}

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_PRESENCE_TIMEOUT: 60, CONF_CAMERAS: ["front_door"], CONF_PERSONS: [ANNA_ID]},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert init_integration.options == {
        CONF_PRESENCE_TIMEOUT: 60,
        CONF_EXCLUDED_CAMERAS: ["garden"],
        CONF_EXCLUDED_PERSONS: [BOB_ID],
    }
    await hass.async_block_till_done()  # reloaded
    fire_engine_online(hass)
    await hass.async_block_till_done()
    assert hass.states.get("camera.facetrack_garden") is None
    assert hass.states.get("binary_sensor.facetrack_bob_presence") is None
    assert hass.states.get("camera.facetrack_front_door") is not None
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == "off"
    assert device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:camera:garden")}) is None
    assert device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:person:{BOB_ID}")}) is None
    hub = init_integration.runtime_data.hub
    assert hub.presence_timeout == 60
    # Excluded devices (if created by hand) may be deleted.
    garden = device_registry.async_get_or_create(
        config_entry_id=init_integration.entry_id, identifiers={(DOMAIN, f"{PREFIX}:camera:garden")}
    )
    assert not hub.is_current_device(garden)

    # The form shows the exclusion; taking everything back brings the entities back.
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    defaults = {
        str(key): key.default() for key in result["data_schema"].schema if str(key) in (CONF_CAMERAS, CONF_PERSONS)
    }
    assert defaults == {CONF_CAMERAS: ["front_door"], CONF_PERSONS: [ANNA_ID]}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_PRESENCE_TIMEOUT: 60, CONF_CAMERAS: ["front_door", "garden"], CONF_PERSONS: [ANNA_ID, BOB_ID]},
    )
    assert init_integration.options[CONF_EXCLUDED_CAMERAS] == []
    assert init_integration.options[CONF_EXCLUDED_PERSONS] == []
    await hass.async_block_till_done()
    fire_engine_online(hass)
    await hass.async_block_till_done()
    assert hass.states.get("camera.facetrack_garden") is not None
    assert hass.states.get("binary_sensor.facetrack_bob_presence").state == "off"


async def test_options_entry_not_loaded(hass: HomeAssistant, config_entry: MockConfigEntry) -> None:
    """Without the engine's lists (entry not loaded): only the timeout; earlier exclusions stay."""
    config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        config_entry, options={CONF_PRESENCE_TIMEOUT: 120, CONF_EXCLUDED_CAMERAS: ["garden"]}
    )
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert [str(key) for key in result["data_schema"].schema] == [CONF_PRESENCE_TIMEOUT]
    result = await hass.config_entries.options.async_configure(result["flow_id"], {CONF_PRESENCE_TIMEOUT: 90})
    assert config_entry.options == {
        CONF_PRESENCE_TIMEOUT: 90,
        CONF_EXCLUDED_CAMERAS: ["garden"],
        CONF_EXCLUDED_PERSONS: [],
    }
