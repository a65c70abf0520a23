"""The inbox's command verbs (``docs/mqtt.md``): ``inbox_list``, ``inbox_crop``, ``inbox_name``,
``inbox_merge``, ``inbox_discard``, ``inbox_ignore``, ``inbox_unignore``.

:func:`inbox_verbs` gives them for :meth:`facetrack.commands.CommandHandler.register`; with the
inbox disabled they exist still and answer ``bad_request`` (after their schema is checked).
A verb that changes the inbox republishes its retained summary before it is answered.
"""

from __future__ import annotations

import base64
from typing import Any

import voluptuous as vol

from facetrack.comms.payloads import inbox_payload
from facetrack.inbox.feature import InboxFeature
from facetrack.library.names import clean_name
from facetrack.verbs import HEX_ID, NEW_NAME, CommandError, Verb, VerbHandler, normalised, strict_int

_GROUP: dict[Any, Any] = {vol.Required("request_id"): str, vol.Required("group_id"): HEX_ID}
#: The inbox verbs' body schemas (``request_id`` included).
INBOX_SCHEMAS: dict[str, vol.Schema] = {
    "inbox_list": vol.Schema({vol.Required("request_id"): str}),
    "inbox_crop": vol.Schema({**_GROUP, vol.Optional("index", default=0): vol.All(strict_int, vol.Range(min=0))}),
    "inbox_name": vol.Schema(
        {
            **_GROUP,
            vol.Required("name"): NEW_NAME,
            vol.Optional("mode", default="auto"): vol.In(["auto", "new", "add"]),
            vol.Optional("max_embeddings", default=5): vol.All(strict_int, vol.Range(min=1, max=10)),
        }
    ),
    "inbox_merge": vol.Schema({**_GROUP, vol.Required("into_group_id"): HEX_ID}),
    "inbox_discard": vol.Schema(_GROUP),
    "inbox_ignore": vol.Schema(_GROUP),
    "inbox_unignore": vol.Schema(_GROUP),
}
#: The inbox verbs that change nothing.
INBOX_READ_ONLY = frozenset({"inbox_list", "inbox_crop"})
DISABLED = "the unknown-face inbox is disabled (inbox.enabled: false)"


class _InboxVerbs:
    def __init__(self, feature: InboxFeature) -> None:
        self.feature = feature
        self.inbox = feature.inbox

    def list(self, _data: dict[str, Any]) -> dict[str, Any]:
        return dict(self.feature.payload())

    def crop(self, data: dict[str, Any]) -> dict[str, Any]:
        jpeg = self.inbox.crop_jpeg(data["group_id"], data["index"])
        return {
            "group_id": data["group_id"],
            "index": data["index"],
            "crops": self.inbox.group(data["group_id"]).crops,
            "jpeg_base64": base64.b64encode(jpeg).decode("ascii"),
        }

    def name(self, data: dict[str, Any]) -> dict[str, Any]:
        name = clean_name(data["name"])
        r = self.inbox.name(data["group_id"], name.name, data["mode"], data["max_embeddings"])
        return {
            "person": r.person,
            "person_id": r.person_id,
            "group_id": r.group_id,
            "enrolled": r.enrolled,
            "embeddings": r.embeddings,
            "created": r.created,
            **normalised(name),
        }

    def merge(self, data: dict[str, Any]) -> dict[str, Any]:
        g = self.inbox.merge(data["group_id"], data["into_group_id"])
        return dict(inbox_payload([g], self.feature.crop_url)["groups"][0])

    def discard(self, data: dict[str, Any]) -> dict[str, Any]:
        self.inbox.discard(data["group_id"])
        return {"group_id": data["group_id"], "discarded": True}

    def ignore(self, data: dict[str, Any]) -> dict[str, Any]:
        self.inbox.ignore(data["group_id"])
        return {"group_id": data["group_id"], "status": "ignored"}

    def unignore(self, data: dict[str, Any]) -> dict[str, Any]:
        self.inbox.unignore(data["group_id"])
        return {"group_id": data["group_id"], "status": "pending"}


def _disabled(_data: dict[str, Any]) -> dict[str, Any]:
    raise CommandError("bad_request", DISABLED)


def inbox_verbs(feature: InboxFeature | None) -> dict[str, Verb]:
    """The inbox verbs over ``feature`` (None: the inbox is disabled, each answers so)."""
    handlers: dict[str, VerbHandler]
    if feature is None:
        handlers = dict.fromkeys(INBOX_SCHEMAS, _disabled)
    else:
        v = _InboxVerbs(feature)
        handlers = {
            "inbox_list": v.list, "inbox_crop": v.crop, "inbox_name": v.name, "inbox_merge": v.merge,
            "inbox_discard": v.discard, "inbox_ignore": v.ignore, "inbox_unignore": v.unignore,
        }  # fmt: skip
    publish = feature.publish if feature is not None else None
    return {
        verb: Verb(
            schema,
            handlers[verb],
            read_only=verb in INBOX_READ_ONLY,
            changed=None if verb in INBOX_READ_ONLY else publish,
        )
        for verb, schema in INBOX_SCHEMAS.items()
    }
