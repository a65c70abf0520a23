"""Entity states over time: presence, last seen, gallery coverage, camera sensors, availability, dynamic devices."""

from __future__ import annotations

import json
from datetime import timedelta

from custom_components.facetrack.const import DOMAIN
from custom_components.facetrack.payloads import COVERAGE_STATES
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.translation import async_get_translations
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
)

from .helpers import ANNA_ID, BOB_ID, CARL_ID, PREFIX, TIME, fire, info, person, persons, seen, state


async def test_presence_on_then_off_after_timeout(
    hass: HomeAssistant, init_integration: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    """A seen message turns presence on; it turns off when none came for 120 s."""
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == STATE_OFF
    assert hass.states.get("binary_sensor.facetrack_anna_presence").attributes["device_class"] == "occupancy"

    fire(hass, f"{PREFIX}/seen/{ANNA_ID}", seen(ANNA_ID, "Anna", "garden"), "seen")
    await hass.async_block_till_done()
    presence = hass.states.get("binary_sensor.facetrack_anna_presence")
    assert presence.state == STATE_ON
    assert presence.attributes["camera"] == "garden"
    assert hass.states.get("binary_sensor.facetrack_bob_presence").state == STATE_OFF

    # Seen again after 100 s: the timeout starts over.
    freezer.tick(timedelta(seconds=100))
    async_fire_time_changed(hass)
    fire(hass, f"{PREFIX}/seen/{ANNA_ID}", seen(ANNA_ID, "Anna"), "seen")
    await hass.async_block_till_done()
    freezer.tick(timedelta(seconds=100))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == STATE_ON

    freezer.tick(timedelta(seconds=21))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == STATE_OFF


async def test_presence_unavailable_only_when_engine_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """The engine's last will makes every entity unavailable; back online restores them."""
    async_fire_mqtt_message(hass, f"{PREFIX}/status", "offline", qos=1)
    await hass.async_block_till_done()
    for entity_id in (
        "binary_sensor.facetrack_anna_presence",
        "sensor.facetrack_anna_last_seen",
        "sensor.facetrack_anna_gallery_coverage",
        "sensor.facetrack_front_door_faces_in_view",
        "camera.facetrack_front_door",
        "event.facetrack_front_door_face",
    ):
        assert hass.states.get(entity_id).state == STATE_UNAVAILABLE, entity_id
    async_fire_mqtt_message(hass, f"{PREFIX}/status", "online", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == STATE_OFF
    assert hass.states.get("event.facetrack_front_door_face").state == STATE_UNKNOWN


async def test_last_seen(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Last seen comes from the library, then from each seen message (camera, similarity)."""
    anna = hass.states.get("sensor.facetrack_anna_last_seen")
    assert anna.state == "2026-11-22T08:15:03+00:00"
    assert anna.attributes["device_class"] == "timestamp"
    assert anna.attributes["camera"] == "front_door"
    assert anna.attributes["similarity"] is None
    assert hass.states.get("sensor.facetrack_bob_last_seen").state == STATE_UNKNOWN

    message = seen(BOB_ID, "Bob", "garden", 0.66)
    message["time"] = "2026-11-22T09:00:00Z"
    fire(hass, f"{PREFIX}/seen/{BOB_ID}", message, "seen")
    await hass.async_block_till_done()
    bob = hass.states.get("sensor.facetrack_bob_last_seen")
    assert bob.state == "2026-11-22T09:00:00+00:00"
    assert bob.attributes["camera"] == "garden"
    assert bob.attributes["similarity"] == 0.66

    # An older library entry does not move it back; a newer one does.
    fire(
        hass,
        f"{PREFIX}/persons",
        persons(person(ANNA_ID, "Anna", TIME), person(BOB_ID, "Bob", "2026-11-22T10:00:00Z")),
        "persons",
    )
    await hass.async_block_till_done()
    bob = hass.states.get("sensor.facetrack_bob_last_seen")
    assert bob.state == "2026-11-22T10:00:00+00:00"
    assert bob.attributes["camera"] == "front_door"
    assert hass.states.get("sensor.facetrack_anna_last_seen").state == "2026-11-22T08:15:03+00:00"


async def test_gallery_coverage(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """The coverage sensor names the head poses to add photos of, with the library's counts as attributes;
    unknown for a library enrolled before poses were recorded and with an engine that does not send them."""
    anna = hass.states.get("sensor.facetrack_anna_gallery_coverage")
    assert anna.state == "add_three_quarter_profile"
    assert anna.attributes["device_class"] == "enum"
    assert anna.attributes["options"] == list(COVERAGE_STATES)
    assert anna.attributes["poses"] == {"frontal": 2, "three_quarter": 0, "profile": 0, "unknown": 0}
    assert anna.attributes["missing_poses"] == ["three_quarter", "profile"]

    complete = {
        "poses": {"frontal": 2, "three_quarter": 1, "profile": 1, "unknown": 0},
        "missing_poses": [],
    }
    legacy = {"poses": {"frontal": 0, "three_quarter": 0, "profile": 0, "unknown": 2}, "missing_poses": []}
    fire(
        hass,
        f"{PREFIX}/persons",
        persons(person(ANNA_ID, "Anna", TIME, coverage=complete), person(BOB_ID, "Bob", coverage=legacy)),
        "persons",
    )
    await hass.async_block_till_done()
    anna = hass.states.get("sensor.facetrack_anna_gallery_coverage")
    assert (anna.state, anna.attributes["missing_poses"]) == ("complete", [])
    bob = hass.states.get("sensor.facetrack_bob_gallery_coverage")
    assert bob.state == STATE_UNKNOWN
    assert bob.attributes["poses"] == legacy["poses"]

    # An older engine: no `poses` (not valid under today's schema, so not validated).
    older = persons(person(ANNA_ID, "Anna", TIME, coverage=None), person(BOB_ID, "Bob", coverage=None))
    async_fire_mqtt_message(hass, f"{PREFIX}/persons", json.dumps(older))
    await hass.async_block_till_done()
    anna = hass.states.get("sensor.facetrack_anna_gallery_coverage")
    assert anna.state == STATE_UNKNOWN
    assert (anna.attributes["poses"], anna.attributes["missing_poses"]) == (None, [])
    assert hass.states.get("sensor.facetrack_anna_last_seen").state == "2026-11-22T08:15:03+00:00"


async def test_every_coverage_state_is_translated(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Each state of the coverage sensor has an English text (the hint the frontend shows)."""
    strings = await async_get_translations(hass, "en", "entity", [DOMAIN])
    key = f"component.{DOMAIN}.entity.sensor.gallery_coverage.state"
    texts = {state: strings.get(f"{key}.{state}") for state in COVERAGE_STATES}
    assert all(texts.values()), texts
    assert texts["add_profile"] == "Add a profile photo"


async def test_camera_sensors_and_availability(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Faces in view and frames/s follow the camera state; an offline camera is unavailable."""
    assert hass.states.get("sensor.facetrack_front_door_faces_in_view").state == "1"
    fps = hass.states.get("sensor.facetrack_front_door_frames_per_second")
    assert fps.state == "12.5"
    assert fps.attributes["unit_of_measurement"] == "fps"

    fire(hass, f"{PREFIX}/front_door/state", state("front_door", faces=3, fps=9.0), "state")
    await hass.async_block_till_done()
    assert hass.states.get("sensor.facetrack_front_door_faces_in_view").state == "3"
    assert hass.states.get("sensor.facetrack_front_door_frames_per_second").state == "9.0"

    fire(
        hass,
        f"{PREFIX}/garden/state",
        state("garden", state="offline", fps=0, faces=0, error="cannot open source"),
        "state",
    )
    await hass.async_block_till_done()
    assert hass.states.get("sensor.facetrack_garden_faces_in_view").state == STATE_UNAVAILABLE
    assert hass.states.get("camera.facetrack_garden").state == STATE_UNAVAILABLE
    assert hass.states.get("sensor.facetrack_front_door_faces_in_view").state == "3"


async def test_invalid_payloads_are_ignored(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Broken payloads change nothing."""
    for topic in (
        f"{PREFIX}/info",
        f"{PREFIX}/persons",
        f"{PREFIX}/front_door/state",
        f"{PREFIX}/front_door/alert",
        f"{PREFIX}/seen/{ANNA_ID}",
    ):
        async_fire_mqtt_message(hass, topic, "not json")
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/state", '{"camera": "garden"}')
    async_fire_mqtt_message(hass, f"{PREFIX}/front_door/alert", '{"kind": 1}')
    async_fire_mqtt_message(hass, f"{PREFIX}/persons", '{"persons": 1}')
    await hass.async_block_till_done()
    assert hass.states.get("sensor.facetrack_front_door_faces_in_view").state == "1"
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == STATE_OFF
    assert hass.states.get("event.facetrack_front_door_face").state == STATE_UNKNOWN
    assert init_integration.runtime_data.hub.cameras == ["front_door", "garden"]


async def test_person_enrolled_renamed_and_forgotten(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """A new person appears without reload; a renamed one keeps the device; a forgotten one goes."""
    fire(
        hass,
        f"{PREFIX}/persons",
        persons(person(ANNA_ID, "Anna K.", TIME), person(BOB_ID, "Bob"), person(CARL_ID, "Carl")),
        "persons",
    )
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.facetrack_carl_presence").state == STATE_OFF
    assert hass.states.get("sensor.facetrack_carl_last_seen") is not None
    assert hass.states.get("sensor.facetrack_carl_gallery_coverage").state == "add_three_quarter_profile"
    anna = device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:person:{ANNA_ID}")})
    assert anna.name == "Anna K."

    fire(hass, f"{PREFIX}/persons", persons(person(ANNA_ID, "Anna K.", TIME), person(CARL_ID, "Carl")), "persons")
    await hass.async_block_till_done()
    assert device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:person:{BOB_ID}")}) is None
    assert entity_registry.async_get("binary_sensor.facetrack_bob_presence") is None
    assert entity_registry.async_get("sensor.facetrack_bob_gallery_coverage") is None
    assert hass.states.get("binary_sensor.facetrack_bob_presence") is None
    assert hass.states.get("binary_sensor.facetrack_carl_presence").state == STATE_OFF


async def test_camera_added_and_removed(
    hass: HomeAssistant, init_integration: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """Cameras follow the engine's info."""
    fire(hass, f"{PREFIX}/info", info(["front_door", "porch"]), "info")
    fire(hass, f"{PREFIX}/porch/state", state("porch"), "state", retain=True)
    await hass.async_block_till_done()
    assert hass.states.get("camera.facetrack_porch") is not None
    assert hass.states.get("sensor.facetrack_porch_faces_in_view").state == "1"
    assert device_registry.async_get_device(identifiers={(DOMAIN, f"{PREFIX}:camera:garden")}) is None
    assert hass.states.get("camera.facetrack_garden") is None
