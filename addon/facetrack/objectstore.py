"""Object-store URIs for the face library (``s3://bucket/path``), without importing LanceDB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

#: Object-store schemes LanceDB opens through ``storage_options`` (anything else is a folder).
URI_SCHEMES = ("s3",)


def is_uri(db_path: str | Path) -> bool:
    """True if ``db_path`` names an object-store library (``s3://bucket/path``), not a folder."""
    return isinstance(db_path, str) and urlsplit(db_path).scheme in URI_SCHEMES


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (object-store errors end up in logs)."""
    for value in secrets:
        if value:
            text = text.replace(value, "***")
    return text
