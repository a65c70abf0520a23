"""The automation blueprints of blueprints/automation/facetrack: schema, and run against the entities."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from homeassistant.components.automation.config import AUTOMATION_BLUEPRINT_SCHEMA
from homeassistant.components.blueprint.models import Blueprint
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import yaml as yaml_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_mock_service

from .conftest import FakeEngine
from .helpers import ANNA_ID, GROUP_A, GROUP_B, PREFIX, TIME, TS, alert, fire, group, inbox, seen

BLUEPRINTS = Path(__file__).resolve().parents[1] / "blueprints" / "automation" / "facetrack"


@pytest.mark.parametrize("name", ["unknown_face_notify.yaml", "person_arrives_home.yaml", "unknown_person_name.yaml"])
def test_blueprint_schema(name: str) -> None:
    """Each blueprint loads with Home Assistant's automation blueprint schema."""
    path = BLUEPRINTS / name
    blueprint = Blueprint(
        yaml_util.load_yaml(path), path=str(path), expected_domain="automation", schema=AUTOMATION_BLUEPRINT_SCHEMA
    )
    assert blueprint.domain == "automation"
    assert blueprint.inputs


@pytest.fixture
def blueprint_dir(hass: HomeAssistant, tmp_path: Path) -> None:
    """A configuration folder holding the FaceTrack blueprints."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "facetrack")


async def test_unknown_face_notification(
    hass: HomeAssistant, init_integration: MockConfigEntry, blueprint_dir: None
) -> None:
    """An unknown face notifies the phone with the snapshot and the clip link; a known face does not."""
    calls = async_mock_service(hass, "notify", "mobile_app_phone")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": "facetrack/unknown_face_notify.yaml",
                    "input": {
                        "face_event": "event.facetrack_front_door_face",
                        "notify_service": "notify.mobile_app_phone",
                        "delay": 0,
                    },
                }
            }
        },
    )
    await hass.async_block_till_done()

    fire(hass, f"{PREFIX}/front_door/alert", alert("front_door", "known_face", "Anna", ANNA_ID), "alert", qos=1)
    await hass.async_block_till_done()
    assert calls == []

    unknown = alert("front_door", "unknown_face")
    fire(hass, f"{PREFIX}/front_door/alert", unknown, "alert", qos=1)
    await hass.async_block_till_done()
    assert len(calls) == 1
    data = calls[0].data
    assert data["title"] == "Unknown face"
    assert data["message"].startswith("Front door Face: an unknown face at ")
    assert data["data"] == {
        "image": unknown["snapshot_url"],
        "url": unknown["clip_url"],
        "clickAction": unknown["clip_url"],
    }


async def test_person_arrives_home(hass: HomeAssistant, init_integration: MockConfigEntry, blueprint_dir: None) -> None:
    """Presence turning on runs the actions with the person and the camera (if away long enough)."""
    arrived = async_mock_service(hass, "test", "arrived")
    arrived_after_away = async_mock_service(hass, "test", "arrived_after_away")

    def _automation(away_minutes: int, action: str) -> dict:  # type: ignore[type-arg]
        return {
            "use_blueprint": {
                "path": "facetrack/person_arrives_home.yaml",
                "input": {
                    "presence": ["binary_sensor.facetrack_anna_presence", "binary_sensor.facetrack_bob_presence"],
                    "away_minutes": away_minutes,
                    "arrival_actions": [
                        {"action": action, "data": {"person": "{{ person }}", "camera": "{{ camera }}"}}
                    ],
                },
            }
        }

    assert await async_setup_component(
        hass, "automation", {"automation": [_automation(0, "test.arrived"), _automation(30, "test.arrived_after_away")]}
    )
    await hass.async_block_till_done()

    fire(hass, f"{PREFIX}/seen/{ANNA_ID}", seen(ANNA_ID, "Anna", "garden"), "seen")
    await hass.async_block_till_done()
    assert [call.data for call in arrived] == [{"person": "Anna", "camera": "garden"}]
    assert arrived_after_away == []  # off only since setup, seconds ago


async def _settle(hass: HomeAssistant) -> None:
    """Let pending callbacks run (an automation waiting for a trigger never lets block_till_done return)."""
    for _ in range(50):
        await asyncio.sleep(0)


def _new_group(group_id: str) -> dict:  # type: ignore[type-arg]
    return {
        "event_id": group_id[::-1],
        "type": "new_group",
        "group_id": group_id,
        "camera": "front_door",
        "track_id": 7,
        "crop_url": group(group_id)["crop_url"],
        "time": TIME,
        "ts": TS,
    }


async def test_unknown_person_name_from_phone(
    hass: HomeAssistant, init_integration: MockConfigEntry, engine: FakeEngine, blueprint_dir: None
) -> None:
    """A new unknown person sends an actionable notification; a typed name enrolls, Ignore ignores."""
    calls = async_mock_service(hass, "notify", "mobile_app_phone")
    engine.reply = lambda verb, body: {"ok": True, "result": {"group_id": body["group_id"]}}
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": "facetrack/unknown_person_name.yaml",
                    "input": {
                        "inbox_event": "event.facetrack_new_unknown_person",
                        "notify_service": "notify.mobile_app_phone",
                    },
                }
            }
        },
    )
    fire(hass, f"{PREFIX}/inbox", inbox(group(GROUP_A), group(GROUP_B)), "inbox", qos=1)
    await _settle(hass)

    fire(hass, f"{PREFIX}/inbox/event", _new_group(GROUP_A), "inbox_event", qos=1)
    await _settle(hass)
    assert len(calls) == 1
    data = calls[0].data
    assert data["title"] == "Who is this?"
    assert data["data"]["image"] == group(GROUP_A)["crop_url"]
    actions = data["data"]["actions"]
    assert [a["action"] for a in actions] == [f"FACETRACK_NAME_{GROUP_A}", f"FACETRACK_IGNORE_{GROUP_A}"]
    assert actions[0]["behavior"] == "textInput"

    fire(hass, f"{PREFIX}/inbox/event", _new_group(GROUP_B), "inbox_event", qos=1)
    await _settle(hass)
    assert len(calls) == 2

    # An empty answer does nothing; another group's button does not act on this one.
    hass.bus.async_fire("mobile_app_notification_action", {"action": f"FACETRACK_NAME_{GROUP_A}", "reply_text": " "})
    await _settle(hass)
    assert engine.commands == []

    hass.bus.async_fire("mobile_app_notification_action", {"action": f"FACETRACK_IGNORE_{GROUP_B}"})
    await _settle(hass)
    assert [(verb, body["group_id"]) for verb, body in engine.commands] == [("inbox_ignore", GROUP_B)]

    # GROUP_A's wait ended with the empty answer: a fresh notification (event) is needed to name it.
    fire(hass, f"{PREFIX}/inbox/event", _new_group(GROUP_A) | {"event_id": "f" * 32}, "inbox_event", qos=1)
    await _settle(hass)
    hass.bus.async_fire(
        "mobile_app_notification_action", {"action": f"FACETRACK_NAME_{GROUP_A}", "reply_text": " Carl "}
    )
    await _settle(hass)
    verb, body = engine.commands[-1]
    assert (verb, body["group_id"], body["name"]) == ("inbox_name", GROUP_A, "Carl")
