"""The integration's static files agree with each other (what hassfest would check, which is not
installable here): every action of services.yaml is registered, named and described in
strings.json with all its fields, has an icon; the English translation is strings.json; every
entity translation key used in code has a name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from custom_components.facetrack import PLATFORMS
from custom_components.facetrack.const import DOMAIN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

COMPONENT = Path(__file__).resolve().parents[1] / "custom_components" / DOMAIN


def _services_yaml() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((COMPONENT / "services.yaml").read_text())  # anchors / aliases only


def _strings() -> dict:  # type: ignore[type-arg]
    return json.loads((COMPONENT / "strings.json").read_text())


def test_english_translation_is_strings_json() -> None:
    assert json.loads((COMPONENT / "translations" / "en.json").read_text()) == _strings()


def test_every_action_is_described_and_has_an_icon() -> None:
    services = _services_yaml()
    strings = _strings()["services"]
    icons = json.loads((COMPONENT / "icons.json").read_text())["services"]
    assert set(services) == set(strings) == set(icons)
    for name, spec in services.items():
        assert strings[name]["name"] and strings[name]["description"], name
        fields = (spec or {}).get("fields", {})
        assert set(fields) == set(strings[name].get("fields", {})), name
        for field in fields:
            assert strings[name]["fields"][field]["name"], f"{name}.{field}"


async def test_registered_actions_match_services_yaml(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    assert set(hass.services.async_services_for_domain(DOMAIN)) == set(_services_yaml())


def test_entity_translation_keys_have_names() -> None:
    entity = _strings()["entity"]
    keys = set()
    for platform in map(str, PLATFORMS):
        text = (COMPONENT / f"{platform}.py").read_text()
        for key in re.findall(r'translation_key="([a-z_]+)"', text):
            keys.add((platform, key))
    assert keys, "no entity descriptions found"
    for platform, key in keys:
        assert entity[platform][key]["name"], f"{platform}.{key}"


def test_selector_translations_exist() -> None:
    strings = _strings()
    for name, spec in _services_yaml().items():
        for field, conf in ((spec or {}).get("fields") or {}).items():
            select = (conf.get("selector") or {}).get("select")
            if select and (key := select.get("translation_key")):
                options = strings["selector"][key]["options"]
                assert set(options) == set(select["options"]), f"{name}.{field}"
