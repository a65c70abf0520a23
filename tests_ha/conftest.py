"""Fixtures of the FaceTrack integration tests (pytest-homeassistant-custom-component)."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any
from unittest.mock import patch

import pytest
from custom_components.facetrack.const import CONF_TOPIC_PREFIX, DOMAIN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
)
from pytest_homeassistant_custom_component.typing import (
    MqttMockHAClient,
    MqttMockPahoClient,
)

from .helpers import PREFIX, fire_engine_online, validate


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/facetrack."""


@pytest.fixture
def config_entry() -> MockConfigEntry:
    """A config entry of the engine on the default prefix (of this version: no migration)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="FaceTrack",
        unique_id=PREFIX,
        data={CONF_TOPIC_PREFIX: PREFIX},
        version=1,
        minor_version=2,
    )


class FakeEngine:
    """Answers the commands the integration publishes, as the engine would."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Initialise: no answer until told."""
        self.hass = hass
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.reply: Callable[[str, dict[str, Any]], dict[str, Any] | None] = lambda verb, body: None

    def on_publish(self, topic: str, payload: Any) -> None:
        """Record a command and answer it on `<prefix>/response/<request_id>`."""
        if not topic.startswith(f"{PREFIX}/command/"):
            return
        verb = topic.rsplit("/", 1)[-1]
        body = validate("command", json.loads(payload))
        self.commands.append((verb, body))
        response = self.reply(verb, body)
        if response is None:
            return
        response = validate("response", {"request_id": body["request_id"], "command": verb, **response})
        self.hass.loop.call_soon(
            async_fire_mqtt_message,
            self.hass,
            f"{PREFIX}/response/{body['request_id']}",
            json.dumps(response),
            1,
        )


@pytest.fixture(autouse=True)
def cancel_mqtt_misc_timer(hass: HomeAssistant) -> Generator[None]:
    """Stop the mocked MQTT client's 1 s housekeeping timer (it would linger after short tests)."""
    yield
    mqtt_data = hass.data.get("mqtt")
    if mqtt_data is not None and (timer := mqtt_data.client._misc_timer) is not None:
        timer.cancel()


@pytest.fixture
def engine(hass: HomeAssistant, mqtt_client_mock: MqttMockPahoClient) -> FakeEngine:
    """The fake engine behind the mocked broker."""
    fake = FakeEngine(hass)
    publish = mqtt_client_mock.publish.side_effect

    def _publish(topic: str, payload: Any, qos: int = 0, retain: bool = False) -> Any:
        result = publish(topic, payload, qos, retain)
        fake.on_publish(topic, payload)
        return result

    mqtt_client_mock.publish.side_effect = _publish
    return fake


@pytest.fixture
async def init_integration(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    engine: FakeEngine,
    config_entry: MockConfigEntry,
) -> MockConfigEntry:
    """Set up the integration with a running engine (two cameras, two persons)."""
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    fire_engine_online(hass)
    await hass.async_block_till_done()
    return config_entry


@pytest.fixture
def short_command_timeout() -> Any:
    """Commands time out after 0.1 s."""
    with patch("custom_components.facetrack.const.COMMAND_TIMEOUT", 0.1):
        yield
