"""Entity ids under the engine's name: new entities get them, entries of version 1.1 are migrated."""

from __future__ import annotations

from custom_components.facetrack.const import CONF_TOPIC_PREFIX, DOMAIN
from custom_components.facetrack.hub import camera_identifier, engine_identifier, object_id_prefix, person_identifier
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .helpers import ANNA_ID, BOB_ID, PREFIX, fire_engine_online


def test_object_id_prefix() -> None:
    """The topic prefix, slugified, under the integration's name."""
    assert object_id_prefix("facetrack") == "facetrack"
    assert object_id_prefix("facetrack/yard") == "facetrack_yard"
    assert object_id_prefix("facetrack2") == "facetrack2"
    assert object_id_prefix("home/Faces") == "facetrack_home_faces"


async def test_new_entities_on_another_prefix(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entity_registry: er.EntityRegistry
) -> None:
    """Cameras and persons of an engine on `lab` get `facetrack_lab_...` ids; the engine's own entities
    are named after its device (the entry's title)."""
    entry = MockConfigEntry(
        domain=DOMAIN, title="FaceTrack (lab)", unique_id="lab", data={CONF_TOPIC_PREFIX: "lab"}, minor_version=2
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    fire_engine_online(hass, "lab")
    await hass.async_block_till_done()
    ids = {e.entity_id for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)}
    assert {
        "camera.facetrack_lab_front_door",
        "event.facetrack_lab_front_door_face",
        "image.facetrack_lab_garden_last_alert",
        "sensor.facetrack_lab_garden_faces_in_view",
        "binary_sensor.facetrack_lab_anna_presence",
        "sensor.facetrack_lab_bob_last_seen",
        "sensor.facetrack_lab_unknown_persons",
    } <= ids


async def test_migration_renames_default_ids_only(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """An entry of version 1.1: the ids Home Assistant derived from the device and entity names get
    the engine's name in front (with their `_2` suffix), those the user chose stay, and so does one
    whose new id is taken; the entities then live on at their new ids."""
    entry = MockConfigEntry(
        domain=DOMAIN, title="FaceTrack", unique_id=PREFIX, data={CONF_TOPIC_PREFIX: PREFIX}, minor_version=1
    )
    entry.add_to_hass(hass)

    def device(identifier: tuple[str, str], name: str, name_by_user: str | None = None) -> str:
        created = device_registry.async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={identifier}, name=name
        )
        if name_by_user is not None:
            device_registry.async_update_device(created.id, name_by_user=name_by_user)
        return created.id

    def entity(domain: str, unique_id: str, object_id: str, device_id: str, key: str | None) -> None:
        created = entity_registry.async_get_or_create(
            domain, DOMAIN, f"{PREFIX}_{unique_id}", suggested_object_id=object_id,
            config_entry=entry, device_id=device_id, translation_key=key, has_entity_name=True,
        )  # fmt: skip
        assert created.entity_id == f"{domain}.{object_id}"

    engine = device(engine_identifier(PREFIX), "FaceTrack")
    front_door = device(camera_identifier(PREFIX, "front_door"), "Front door")
    garden = device(camera_identifier(PREFIX, "garden"), "Garden", name_by_user="Back garden")
    anna = device(person_identifier(PREFIX, ANNA_ID), "Anna")
    bob = device(person_identifier(PREFIX, BOB_ID), "Bob")
    # Another integration's camera of the same name took `camera.front_door`: ours got `_2`.
    entity_registry.async_get_or_create("camera", "other", "front-door-1", suggested_object_id="front_door")
    entity("camera", "front_door_camera", "front_door_2", front_door, None)
    entity("event", "front_door_face", "front_door_face", front_door, "face")
    entity("sensor", "front_door_faces", "front_door_faces_in_view", front_door, "faces")
    entity("image", "front_door_last_alert", "porch_snapshot", front_door, "last_alert")  # the user's id
    entity("camera", "garden_camera", "back_garden", garden, None)  # the device renamed, the id followed
    entity("sensor", "garden_fps", "garden_frames_per_second", garden, "fps")  # named before the rename
    entity("binary_sensor", f"{ANNA_ID}_presence", "anna_presence", anna, "presence")
    entity("sensor", f"{ANNA_ID}_last_seen", "anna_last_seen", anna, "last_seen")
    entity("binary_sensor", f"{BOB_ID}_presence", "bob_presence", bob, "presence")
    entity("sensor", "unknown_faces", "facetrack_unknown_persons", engine, "unknown_faces")
    # Something else already has Bob's new id: his keeps the old one.
    entity_registry.async_get_or_create("binary_sensor", "other", "bob", suggested_object_id="facetrack_bob_presence")

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert (entry.version, entry.minor_version) == (1, 2)

    def entity_id(domain: str, unique_id: str) -> str | None:
        return entity_registry.async_get_entity_id(domain, DOMAIN, f"{PREFIX}_{unique_id}")

    assert entity_id("camera", "front_door_camera") == "camera.facetrack_front_door_2"
    assert entity_id("event", "front_door_face") == "event.facetrack_front_door_face"
    assert entity_id("sensor", "front_door_faces") == "sensor.facetrack_front_door_faces_in_view"
    assert entity_id("image", "front_door_last_alert") == "image.porch_snapshot"
    assert entity_id("camera", "garden_camera") == "camera.facetrack_back_garden"
    assert entity_id("sensor", "garden_fps") == "sensor.facetrack_garden_frames_per_second"
    assert entity_id("binary_sensor", f"{ANNA_ID}_presence") == "binary_sensor.facetrack_anna_presence"
    assert entity_id("sensor", f"{ANNA_ID}_last_seen") == "sensor.facetrack_anna_last_seen"
    assert entity_id("binary_sensor", f"{BOB_ID}_presence") == "binary_sensor.bob_presence"
    assert entity_id("sensor", "unknown_faces") == "sensor.facetrack_unknown_persons"

    # The entities come up at their migrated ids (no new registry entries).
    fire_engine_online(hass)
    await hass.async_block_till_done()
    assert hass.states.get("binary_sensor.facetrack_anna_presence").state == "off"
    assert hass.states.get("sensor.facetrack_front_door_faces_in_view").state == "1"
    assert hass.states.get("image.porch_snapshot") is not None
    assert entity_id("sensor", "front_door_fps") == "sensor.facetrack_front_door_frames_per_second"  # new
    assert entity_id("sensor", "garden_faces") == "sensor.facetrack_back_garden_faces_in_view"  # new: the device's name


async def test_entry_of_a_newer_version_is_not_set_up(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A downgrade: the entry was written by a newer FaceTrack."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id=PREFIX, data={CONF_TOPIC_PREFIX: PREFIX}, version=2)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.MIGRATION_ERROR
