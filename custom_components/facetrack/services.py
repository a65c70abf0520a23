"""FaceTrack actions (MQTT commands of the engine): enroll, enroll_track, forget, rename, list_persons;
negative feedback (list_embeddings, forget_embedding); the unknown-face inbox (inbox_name,
inbox_merge, inbox_discard, inbox_ignore, inbox_unignore)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import voluptuous as vol
from aiohttp import hdrs
from homeassistant.components.camera import async_get_image
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from . import const
from .const import (
    ATTR_CAMERA,
    ATTR_CAMERA_ENTITY_ID,
    ATTR_CONFIG_ENTRY_ID,
    ATTR_EMBEDDING_ID,
    ATTR_GROUP_ID,
    ATTR_IMAGE_PATH,
    ATTR_IMAGE_URL,
    ATTR_INCLUDE_CROPS,
    ATTR_INTO_GROUP_ID,
    ATTR_MAX_EMBEDDINGS,
    ATTR_MODE,
    ATTR_NAME,
    ATTR_NEW_NAME,
    ATTR_TRACK_ID,
    DOMAIN,
)
from .hub import FaceTrackConfigEntry, FaceTrackHub

SERVICE_ENROLL = "enroll"
SERVICE_ENROLL_TRACK = "enroll_track"
SERVICE_FORGET = "forget"
SERVICE_RENAME = "rename"
SERVICE_LIST_PERSONS = "list_persons"
SERVICE_LIST_EMBEDDINGS = "list_embeddings"
SERVICE_FORGET_EMBEDDING = "forget_embedding"
SERVICE_INBOX_NAME = "inbox_name"
SERVICE_INBOX_MERGE = "inbox_merge"
SERVICE_INBOX_DISCARD = "inbox_discard"
SERVICE_INBOX_IGNORE = "inbox_ignore"
SERVICE_INBOX_UNIGNORE = "inbox_unignore"
COMMAND_LIST = "list"

MAX_IMAGE_BYTES = 6 * 1024 * 1024  # base64 of it stays under the engine's 8 MB payload limit

_NAME = vol.All(cv.string, vol.Length(min=1, max=100))
_ENTRY = vol.Optional(ATTR_CONFIG_ENTRY_ID)

ENROLL_SCHEMA = vol.Schema(
    {
        _ENTRY: cv.string,
        vol.Required(ATTR_NAME): _NAME,
        vol.Exclusive(ATTR_IMAGE_PATH, "source"): cv.string,
        vol.Exclusive(ATTR_CAMERA_ENTITY_ID, "source"): cv.entity_domain("camera"),
        vol.Exclusive(ATTR_IMAGE_URL, "source"): cv.url,
    }
)
ENROLL_TRACK_SCHEMA = vol.Schema(
    {
        _ENTRY: cv.string,
        vol.Required(ATTR_CAMERA): vol.All(cv.string, vol.Match(r"^[a-z0-9_]{1,32}$")),
        vol.Required(ATTR_TRACK_ID): vol.All(vol.Coerce(int), vol.Range(min=1)),
        vol.Required(ATTR_NAME): _NAME,
        vol.Optional(ATTR_MAX_EMBEDDINGS): vol.All(vol.Coerce(int), vol.Range(min=1, max=3)),
    }
)
FORGET_SCHEMA = vol.Schema({_ENTRY: cv.string, vol.Required(ATTR_NAME): _NAME})
LIST_PERSONS_SCHEMA = vol.Schema({_ENTRY: cv.string})
# A group is named by its id (32 hex) or by the id's first 8+ hex digits, as in its image entity's name.
_GROUP = vol.All(cv.string, vol.Lower, vol.Match(r"^[0-9a-f]{8,32}$"))
_HEX32 = vol.All(cv.string, vol.Lower, vol.Match(r"^[0-9a-f]{32}$"))
GROUP_SCHEMA = vol.Schema({_ENTRY: cv.string, vol.Required(ATTR_GROUP_ID): _GROUP})
INBOX_NAME_SCHEMA = GROUP_SCHEMA.extend(
    {
        vol.Required(ATTR_NAME): _NAME,
        vol.Optional(ATTR_MODE): vol.In(["auto", "new", "add"]),
        vol.Optional(ATTR_MAX_EMBEDDINGS): vol.All(vol.Coerce(int), vol.Range(min=1, max=10)),
    }
)
INBOX_MERGE_SCHEMA = GROUP_SCHEMA.extend({vol.Required(ATTR_INTO_GROUP_ID): _GROUP})
LIST_EMBEDDINGS_SCHEMA = vol.Schema(
    {_ENTRY: cv.string, vol.Required(ATTR_NAME): _NAME, vol.Optional(ATTR_INCLUDE_CROPS): cv.boolean}
)
FORGET_EMBEDDING_SCHEMA = vol.Schema(
    {_ENTRY: cv.string, vol.Required(ATTR_EMBEDDING_ID): _HEX32, vol.Optional(ATTR_NAME): _NAME}
)
RENAME_SCHEMA = vol.Schema(
    {
        _ENTRY: cv.string,
        vol.Required(ATTR_NAME): _NAME,
        vol.Required(ATTR_NEW_NAME): _NAME,
    }
)


def _get_hub(hass: HomeAssistant, call: ServiceCall) -> FaceTrackHub:
    """The hub of the call's config entry, or of the only loaded one."""
    entry_id: str | None = call.data.get(ATTR_CONFIG_ENTRY_ID)
    entries: list[FaceTrackConfigEntry] = [
        entry for entry in hass.config_entries.async_entries(DOMAIN) if entry.state is ConfigEntryState.LOADED
    ]
    if entry_id is not None:
        entries = [entry for entry in entries if entry.entry_id == entry_id]
        if not entries:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="entry_not_loaded",
                translation_placeholders={"entry_id": entry_id},
            )
    if len(entries) != 1:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_entry" if not entries else "several_entries",
        )
    return entries[0].runtime_data.hub


async def _async_read_image(hass: HomeAssistant, path: str) -> bytes:
    """Read a photo from an allowed directory."""
    if not hass.config.is_allowed_path(path):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="path_not_allowed",
            translation_placeholders={"path": path},
        )

    def _read() -> bytes | None:
        file = Path(path)
        if not file.is_file() or file.stat().st_size > MAX_IMAGE_BYTES:
            return None
        return file.read_bytes()

    data = await hass.async_add_executor_job(_read)
    if data is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="image_not_readable",
            translation_placeholders={"path": path},
        )
    return data


async def _async_download_image(hass: HomeAssistant, url: str) -> bytes:
    """Download a photo with Home Assistant's HTTP client: an image/* of at most 6 MB, in time."""
    session = async_get_clientsession(hass)
    placeholders = {"url": url}
    try:
        async with asyncio.timeout(const.DOWNLOAD_TIMEOUT), session.get(url) as response:
            response.raise_for_status()
            content_type = (response.content_type or "").lower()
            if content_type.split("/", 1)[0] != "image":
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="image_not_an_image",
                    translation_placeholders={**placeholders, "content_type": content_type or "-"},
                )
            length = response.headers.get(hdrs.CONTENT_LENGTH)
            if length is not None and length.isdigit() and int(length) > MAX_IMAGE_BYTES:
                raise _too_large(url)
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data.extend(chunk)
                if len(data) > MAX_IMAGE_BYTES:
                    raise _too_large(url)
    except aiohttp.ClientResponseError as err:
        # The URL answered an HTTP error (404, 403...): the caller's URL is wrong, not Home Assistant.
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="image_url_status",
            translation_placeholders={**placeholders, "status": str(err.status)},
        ) from err
    except aiohttp.InvalidURL as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="image_url_invalid",
            translation_placeholders=placeholders,
        ) from err
    except (TimeoutError, aiohttp.ClientError) as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="image_download_failed",
            translation_placeholders={**placeholders, "error": str(err) or type(err).__name__},
        ) from err
    return bytes(data)


def _too_large(url: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="image_too_large",
        translation_placeholders={"url": url},
    )


async def _async_enroll(call: ServiceCall) -> ServiceResponse:
    """Enroll from a photo (its only, or clearly dominant, face) or a camera snapshot (its largest
    usable face: the engine's `pick: largest`; the answer names the face's `box` and how many `faces`
    were seen, and a refusal says how many were seen and how to choose one with `enroll_track`)."""
    hass = call.hass
    hub = _get_hub(hass, call)
    body: dict[str, Any] = {"name": call.data[ATTR_NAME]}
    if (path := call.data.get(ATTR_IMAGE_PATH)) is not None:
        image = await _async_read_image(hass, path)
    elif (entity_id := call.data.get(ATTR_CAMERA_ENTITY_ID)) is not None:
        body["pick"] = "largest"
        try:
            image = (await async_get_image(hass, entity_id)).content
        except HomeAssistantError as err:
            # No such camera is the caller's mistake; a camera that cannot give a snapshot is not.
            error = ServiceValidationError if hass.states.get(entity_id) is None else HomeAssistantError
            raise error(
                translation_domain=DOMAIN,
                translation_key="snapshot_failed",
                translation_placeholders={"entity_id": entity_id},
            ) from err
    elif (url := call.data.get(ATTR_IMAGE_URL)) is not None:
        image = await _async_download_image(hass, url)
    else:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_image_source")
    body["image_base64"] = base64.b64encode(image).decode("ascii")
    return await hub.async_command(SERVICE_ENROLL, body, const.COMMAND_TIMEOUT)


async def _async_enroll_track(call: ServiceCall) -> ServiceResponse:
    hub = _get_hub(call.hass, call)
    camera = call.data[ATTR_CAMERA]
    if camera not in hub.cameras:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="unknown_camera",
            translation_placeholders={"camera": camera},
        )
    body: dict[str, Any] = {
        "camera": camera,
        "track_id": call.data[ATTR_TRACK_ID],
        "name": call.data[ATTR_NAME],
    }
    if ATTR_MAX_EMBEDDINGS in call.data:
        body["max_embeddings"] = call.data[ATTR_MAX_EMBEDDINGS]
    return await hub.async_command(SERVICE_ENROLL_TRACK, body, const.COMMAND_TIMEOUT)


async def _async_forget(call: ServiceCall) -> ServiceResponse:
    hub = _get_hub(call.hass, call)
    body = {"name": call.data[ATTR_NAME]}
    return await hub.async_command(SERVICE_FORGET, body, const.COMMAND_TIMEOUT)


async def _async_rename(call: ServiceCall) -> ServiceResponse:
    hub = _get_hub(call.hass, call)
    body = {"name": call.data[ATTR_NAME], "new_name": call.data[ATTR_NEW_NAME]}
    return await hub.async_command(SERVICE_RENAME, body, const.COMMAND_TIMEOUT)


async def _async_list_persons(call: ServiceCall) -> ServiceResponse:
    hub = _get_hub(call.hass, call)
    return await hub.async_command(COMMAND_LIST, {}, const.COMMAND_TIMEOUT)


def _group_id(hub: FaceTrackHub, value: str) -> str:
    """The full id of an inbox group given by its id or the id's head (unique among the inbox's groups)."""
    if len(value) == 32:
        return value
    matches = [group_id for group_id in hub.inbox if group_id.startswith(value)]
    if len(matches) != 1:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="unknown_group" if not matches else "ambiguous_group",
            translation_placeholders={"group_id": value},
        )
    return matches[0]


async def _async_list_embeddings(call: ServiceCall) -> ServiceResponse:
    hub = _get_hub(call.hass, call)
    body: dict[str, Any] = {"name": call.data[ATTR_NAME]}
    if ATTR_INCLUDE_CROPS in call.data:
        body["include_crops"] = call.data[ATTR_INCLUDE_CROPS]
    return await hub.async_command(SERVICE_LIST_EMBEDDINGS, body, const.COMMAND_TIMEOUT)


async def _async_forget_embedding(call: ServiceCall) -> ServiceResponse:
    hub = _get_hub(call.hass, call)
    body = {key: call.data[key] for key in (ATTR_EMBEDDING_ID, ATTR_NAME) if key in call.data}
    return await hub.async_command(SERVICE_FORGET_EMBEDDING, body, const.COMMAND_TIMEOUT)


async def _async_inbox_command(call: ServiceCall) -> ServiceResponse:
    """inbox_name / inbox_merge / inbox_discard / inbox_ignore / inbox_unignore: the verb is the action."""
    hub = _get_hub(call.hass, call)
    body: dict[str, Any] = {
        key: value for key, value in call.data.items() if key in (ATTR_NAME, ATTR_MODE, ATTR_MAX_EMBEDDINGS)
    }
    body[ATTR_GROUP_ID] = _group_id(hub, call.data[ATTR_GROUP_ID])
    if ATTR_INTO_GROUP_ID in call.data:
        body[ATTR_INTO_GROUP_ID] = _group_id(hub, call.data[ATTR_INTO_GROUP_ID])
    return await hub.async_command(call.service, body, const.COMMAND_TIMEOUT)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the FaceTrack actions (once, for every config entry)."""
    for name, handler, schema in (
        (SERVICE_ENROLL, _async_enroll, ENROLL_SCHEMA),
        (SERVICE_ENROLL_TRACK, _async_enroll_track, ENROLL_TRACK_SCHEMA),
        (SERVICE_FORGET, _async_forget, FORGET_SCHEMA),
        (SERVICE_RENAME, _async_rename, RENAME_SCHEMA),
        (SERVICE_FORGET_EMBEDDING, _async_forget_embedding, FORGET_EMBEDDING_SCHEMA),
        (SERVICE_INBOX_NAME, _async_inbox_command, INBOX_NAME_SCHEMA),
        (SERVICE_INBOX_MERGE, _async_inbox_command, INBOX_MERGE_SCHEMA),
        (SERVICE_INBOX_DISCARD, _async_inbox_command, GROUP_SCHEMA),
        (SERVICE_INBOX_IGNORE, _async_inbox_command, GROUP_SCHEMA),
        (SERVICE_INBOX_UNIGNORE, _async_inbox_command, GROUP_SCHEMA),
    ):
        hass.services.async_register(DOMAIN, name, handler, schema=schema, supports_response=SupportsResponse.OPTIONAL)
    for name, handler, schema in (
        (SERVICE_LIST_PERSONS, _async_list_persons, LIST_PERSONS_SCHEMA),
        (SERVICE_LIST_EMBEDDINGS, _async_list_embeddings, LIST_EMBEDDINGS_SCHEMA),
    ):
        hass.services.async_register(DOMAIN, name, handler, schema=schema, supports_response=SupportsResponse.ONLY)
