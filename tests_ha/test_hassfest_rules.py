"""hassfest's rules for this custom integration, as tests.

hassfest (``python -m script.hassfest --integration-path custom_components/facetrack``, also the
``home-assistant/actions/hassfest`` GitHub action) lives in Home Assistant core's ``script/``
folder, which the ``homeassistant`` package does not ship, so it cannot run here. These tests
restate its rules for a custom integration, from core's ``script/hassfest`` sources of the 2025.x
series, with Home Assistant's own validators (``config_validation``, ``selector``) of the
installed 2025.4:

- ``manifest.py``: ``CUSTOM_INTEGRATION_MANIFEST_SCHEMA``, domain = folder name, an IoT class, a
  version, and ``sort_manifest`` (keys: domain, name, then alphabetical);
- ``translations.py``: ``gen_strings_schema`` with ``translation_value_validator`` (no HTML-like
  ``<...>``, no placeholder in single quotes, no combined ``[%key:...%]`` references, no
  leading/trailing spaces), translation keys ``[a-z0-9-_]+``, ``data_description`` keys in
  ``data``; applied to ``strings.json`` and ``translations/en.json`` (that the two are equal is
  ``test_manifest_files.py``'s);
- ``services.py``: ``CUSTOM_INTEGRATION_SERVICES_SCHEMA`` (selectors validated by HA) and, from the
  English translation, each field's description and each select's translation key;
- ``icons.py``: ``icon_schema`` for a ``hub`` (``mdi:`` icons, no state icon equal to its default);
- ``dependencies.py``: every ``homeassistant.components.<x>`` the code imports is a platform, an
  own platform file, or in ``dependencies`` / ``after_dependencies``;
- ``config_flow.py``: ``config_flow: true`` has a ``config_flow.py``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
import yaml
from awesomeversion import AwesomeVersion, AwesomeVersionException, AwesomeVersionStrategy
from homeassistant.const import Platform
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import selector

COMPONENT = Path(__file__).resolve().parents[1] / "custom_components" / "facetrack"

# --- manifest.py -------------------------------------------------------------------------------

IOT_CLASSES = ["assumed_state", "calculated", "cloud_polling", "cloud_push", "local_polling", "local_push"]
INTEGRATION_TYPES = ["device", "entity", "hardware", "helper", "hub", "service", "system"]


def _documentation_url(value: str) -> str:
    if not value.startswith("https://"):
        raise vol.Invalid("Documentation url is not prefixed with https")
    return value


def _version(value: str) -> str:
    try:
        AwesomeVersion(
            value,
            ensure_strategy=[
                AwesomeVersionStrategy.CALVER,
                AwesomeVersionStrategy.SEMVER,
                AwesomeVersionStrategy.SIMPLEVER,
                AwesomeVersionStrategy.BUILDVER,
                AwesomeVersionStrategy.PEP440,
            ],
        )
    except AwesomeVersionException as err:
        raise vol.Invalid(f"'{value}' is not a valid version.") from err
    return value


# The keys this integration could use; discovery matchers other than mqtt are out of scope here
# and would fail the test (extra keys are refused), prompting a look at hassfest's full schema.
MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("domain"): str,
        vol.Required("name"): str,
        vol.Optional("integration_type"): vol.In(INTEGRATION_TYPES),
        vol.Optional("config_flow"): bool,
        vol.Optional("mqtt"): [str],
        vol.Required("documentation"): vol.All(vol.Url(), _documentation_url),
        vol.Optional("issue_tracker"): vol.Url(),
        vol.Optional("quality_scale"): vol.In(["internal", "bronze", "silver", "gold", "platinum"]),
        vol.Optional("requirements"): [str],
        vol.Optional("dependencies"): [str],
        vol.Optional("after_dependencies"): [str],
        vol.Required("codeowners"): [str],
        vol.Optional("loggers"): [str],
        vol.Optional("disabled"): str,
        vol.Optional("iot_class"): vol.In(IOT_CLASSES),
        vol.Optional("single_config_entry"): bool,
        # CUSTOM_INTEGRATION_MANIFEST_SCHEMA's additions
        vol.Optional("version"): vol.All(str, _version),
        vol.Optional("import_executor"): bool,
    }
)


def _manifest_keys(path: Path) -> list[str]:
    return list(json.loads(path.read_text()))


def _sort_key(key: str) -> str:
    return {"domain": ".domain", "name": ".name"}.get(key, key)


def test_manifest_schema_domain_iot_class_version() -> None:
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    MANIFEST_SCHEMA(manifest)
    assert manifest["domain"] == COMPONENT.name
    assert "iot_class" in manifest
    assert manifest.get("version")
    assert not set(manifest.get("dependencies", [])) & set(manifest.get("after_dependencies", []))


def test_manifest_keys_are_sorted() -> None:
    keys = _manifest_keys(COMPONENT / "manifest.json")
    assert keys == sorted(keys, key=_sort_key), "manifest keys: domain, name, then alphabetical order"


def test_manifest_sort_rule_rejects_the_old_order(tmp_path: Path) -> None:
    # The order main had (codeowners before config_flow, after_dependencies after dependencies).
    old = tmp_path / "manifest.json"
    old.write_text(
        json.dumps(
            dict.fromkeys(["domain", "name", "codeowners", "config_flow", "dependencies", "after_dependencies"], 0)
        )
    )
    keys = _manifest_keys(old)
    assert keys != sorted(keys, key=_sort_key)


# --- translations.py ---------------------------------------------------------------------------

RE_TRANSLATION_KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
RE_COMBINED_REFERENCE = re.compile(r"(.+\[%)|(%\].+)")
RE_PLACEHOLDER_IN_SINGLE_QUOTES = re.compile(r"'{\w+}'")


def translation_key(value: Any) -> str:
    if RE_TRANSLATION_KEY.match(str(value)) is None:
        raise vol.Invalid(f"Invalid translation key '{value}'")
    return str(value)


def translation_value(value: Any) -> str:
    string_value: str = cv.string_with_no_html(value)
    if RE_PLACEHOLDER_IN_SINGLE_QUOTES.search(string_value):
        raise vol.Invalid("the string should not contain placeholders inside single quotes")
    if RE_COMBINED_REFERENCE.search(string_value):
        raise vol.Invalid("the string should not contain combined translations")
    if string_value != string_value.strip():
        raise vol.Invalid("the string should not contain leading or trailing spaces")
    return string_value


def _data_description_in_data(value: dict[str, Any]) -> dict[str, Any]:
    for step in value["step"].values():
        for key in step.get("data_description", {}):
            if key not in step.get("data", {}):
                raise vol.Invalid(f"data_description key {key} is not in data")
    return value


def _data_entry_schema() -> vol.All:
    return vol.All(
        vol.Schema(
            {
                vol.Optional("flow_title"): translation_value,
                vol.Required("step"): {
                    str: {
                        vol.Optional("title"): translation_value,
                        vol.Optional("description"): translation_value,
                        vol.Optional("data"): {str: translation_value},
                        vol.Optional("data_description"): {str: translation_value},
                        vol.Optional("menu_options"): {str: translation_value},
                        vol.Optional("submit"): translation_value,
                        vol.Optional("sections"): {
                            str: {
                                vol.Optional("data"): {str: translation_value},
                                vol.Optional("description"): translation_value,
                                vol.Optional("name"): translation_value,
                            }
                        },
                    }
                },
                vol.Optional("error"): {str: translation_value},
                vol.Optional("abort"): {str: translation_value},
                vol.Optional("progress"): {str: translation_value},
                vol.Optional("create_entry"): {str: translation_value},
            }
        ),
        _data_description_in_data,
    )


def _states() -> Any:
    return cv.schema_with_slug_keys(translation_value, slug_validator=translation_key)


STRINGS_SCHEMA = vol.Schema(
    {
        vol.Optional("title"): translation_value,
        vol.Optional("config"): _data_entry_schema(),
        vol.Optional("options"): _data_entry_schema(),
        vol.Optional("selector"): cv.schema_with_slug_keys(
            {"options": _states()}, slug_validator=vol.Any("_", cv.slug)
        ),
        vol.Optional("entity"): cv.schema_with_slug_keys(
            cv.schema_with_slug_keys(
                {
                    vol.Optional("name"): translation_value,
                    vol.Optional("state"): _states(),
                    vol.Optional("state_attributes"): cv.schema_with_slug_keys(
                        {vol.Optional("name"): translation_value, vol.Optional("state"): _states()},
                        slug_validator=translation_key,
                    ),
                },
                slug_validator=translation_key,
            ),
            slug_validator=cv.slug,
        ),
        vol.Optional("exceptions"): cv.schema_with_slug_keys(
            {vol.Optional("message"): translation_value}, slug_validator=cv.slug
        ),
        vol.Optional("services"): cv.schema_with_slug_keys(
            {
                vol.Required("name"): translation_value,
                vol.Required("description"): translation_value,
                vol.Optional("fields"): cv.schema_with_slug_keys(
                    {
                        vol.Required("name"): str,
                        vol.Required("description"): translation_value,
                        vol.Optional("example"): translation_value,
                    },
                    slug_validator=translation_key,
                ),
                vol.Optional("sections"): cv.schema_with_slug_keys(
                    {vol.Required("name"): str, vol.Optional("description"): translation_value},
                    slug_validator=translation_key,
                ),
            },
            slug_validator=translation_key,
        ),
    }
)


@pytest.mark.parametrize("name", ["strings.json", "translations/en.json"])
def test_translations_follow_hassfest_schema(name: str) -> None:
    STRINGS_SCHEMA(json.loads((COMPONENT / name).read_text()))


@pytest.mark.parametrize(
    "text",
    [
        "No retained `<prefix>/info`.",  # what main's config.error.no_engine said
        "Set '{prefix}' first",
        " leading space",
        "[%key:common::config_flow::error::cannot_connect%] and more",
    ],
)
def test_translation_value_rule_refuses(text: str) -> None:
    with pytest.raises(vol.Invalid):
        translation_value(text)


# --- services.py -------------------------------------------------------------------------------


def _exists(value: Any) -> Any:
    if value is None:
        raise vol.Invalid("Value cannot be None")
    return value


FIELD_SCHEMA = vol.Schema(
    {
        vol.Optional("example"): _exists,
        vol.Optional("default"): _exists,
        vol.Optional("required"): bool,
        vol.Optional("advanced"): bool,
        vol.Optional("selector"): selector.validate_selector,
        vol.Optional("description"): str,
        vol.Optional("name"): str,
    }
)
SERVICES_SCHEMA = vol.Schema(
    {
        cv.slug: vol.Any(
            vol.Schema(
                {
                    vol.Optional("fields"): vol.Schema({str: FIELD_SCHEMA}),
                    vol.Optional("target"): selector.TargetSelector.CONFIG_SCHEMA,
                    vol.Optional("description"): str,
                    vol.Optional("name"): str,
                }
            ),
            None,
        )
    }
)


def _services() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPONENT / "services.yaml").read_text())
    return data


def test_services_yaml_follows_hassfest_schema() -> None:
    SERVICES_SCHEMA(_services())


def test_every_action_field_is_described_in_the_english_translation() -> None:
    # hassfest reads translations/en.json for a custom integration.
    strings = json.loads((COMPONENT / "translations" / "en.json").read_text())
    for service, spec in _services().items():
        assert strings["services"][service]["name"] and strings["services"][service]["description"]
        for field, conf in ((spec or {}).get("fields") or {}).items():
            assert strings["services"][service]["fields"][field]["description"], f"{service}.{field}"
            key = ((conf or {}).get("selector") or {}).get("select", {}).get("translation_key")
            if key:
                assert key in strings["selector"], f"{service}.{field}: {key}"
        # and nothing described that the action does not have
        assert set(strings["services"][service].get("fields", {})) <= set((spec or {}).get("fields") or {})


# --- icons.py ----------------------------------------------------------------------------------


def _icon(value: Any) -> str:
    value = cv.string_with_no_html(value)
    if not str(value).startswith("mdi:"):
        raise vol.Invalid("The icon needs to start with `mdi:`")
    return str(value)


def _not_same_as_default(value: dict[str, Any]) -> dict[str, Any]:
    for key, section in value.items():
        if (default := section.get("default")) and (states := section.get("state")):
            for state, icon in states.items():
                if icon == default:
                    raise vol.Invalid(f"the icon for state {key}.{state} is the default icon")
    return value


_ICON_STATES = cv.schema_with_slug_keys(_icon, slug_validator=translation_key)
ICONS_SCHEMA = vol.Schema(
    {
        vol.Optional("entity"): cv.schema_with_slug_keys(
            vol.All(
                cv.schema_with_slug_keys(
                    {
                        vol.Optional("default"): _icon,
                        vol.Optional("state"): _ICON_STATES,
                        vol.Optional("state_attributes"): vol.All(
                            cv.schema_with_slug_keys(
                                {vol.Optional("default"): _icon, vol.Optional("state"): _ICON_STATES},
                                slug_validator=translation_key,
                            ),
                            _not_same_as_default,
                        ),
                    },
                    slug_validator=translation_key,
                ),
                _not_same_as_default,
            ),
            slug_validator=cv.slug,
        ),
        vol.Optional("services"): cv.schema_with_slug_keys(
            {vol.Optional("service"): _icon, vol.Optional("sections"): cv.schema_with_slug_keys(_icon)},
            slug_validator=translation_key,
        ),
    }
)


def test_icons_follow_hassfest_schema() -> None:
    ICONS_SCHEMA(json.loads((COMPONENT / "icons.json").read_text()))


# --- dependencies.py and config_flow.py --------------------------------------------------------


def _referenced_components() -> set[str]:
    refs: set[str] = set()
    for path in COMPONENT.glob("**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("homeassistant.components."):
                    refs.add(node.module.split(".")[2])
                elif node.module == "homeassistant.components":
                    refs.update(n.name for n in node.names)
            elif isinstance(node, ast.Import):
                refs.update(n.name.split(".")[2] for n in node.names if n.name.startswith("homeassistant.components."))
    return refs


def test_used_components_are_declared() -> None:
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    allowed = (
        {p.value for p in Platform}
        | set(manifest.get("dependencies", []))
        | set(manifest.get("after_dependencies", []))
        | {"homeassistant", "persistent_notification", "websocket_api", "frontend", "panel_custom"}
    )
    refs = _referenced_components()
    assert "mqtt" in refs  # the collector sees the imports
    undeclared = {r for r in refs - allowed if not (COMPONENT / f"{r}.py").is_file()}
    assert not undeclared, f"used but not in dependencies / after_dependencies: {undeclared}"


def test_config_flow_file_matches_manifest() -> None:
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    assert manifest.get("config_flow") is (COMPONENT / "config_flow.py").is_file()
