"""StorageConfig: where alert clips are stored and how long they are kept (``clips.storage.*``).

The storage itself (local folder or S3 bucket) is :mod:`facetrack.record.storage`; this module
holds only its settings, so reading a configuration does not import the S3 client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import voluptuous as vol

from facetrack.errors import ConfigError

StorageKind = Literal["local", "s3"]

#: Longest lifetime of a download URL, seconds: SigV4 presigned URLs live at most 7 days.
MAX_URL_EXPIRY_S = 7 * 24 * 3600
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ENDPOINT_RE = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


@dataclass(frozen=True)
class StorageConfig:
    """Where clips are stored and how long they are kept.

    Attributes:
        kind: ``"local"`` (a folder) or ``"s3"`` (an S3 bucket).
        path: local folder holding the clips (``kind="local"``).
        endpoint: S3 endpoint as ``"host:port"`` without scheme (``kind="s3"``).
        bucket: S3 bucket name; created if missing.
        access_key: S3 access key (``None``: anonymous).
        secret_key: S3 secret key; never printed or logged.
        secure: use TLS (HTTPS) to the S3 endpoint.
        region: S3 region (``None``: asked from the server).
        url_expiry_seconds: lifetime of a download URL, seconds (1 s .. 7 days).
        max_age_days: clips older than this many days are purged (> 0; ``None``: no age limit).
        max_total_mb: the oldest clips are purged until all clips take at most this many
            megabytes (10^6 bytes) (> 0; ``None``: no size limit).

    Raises:
        ConfigError: an invalid value; the message names the key.
    """

    kind: StorageKind = "local"
    path: str = "/media/facetrack/clips"
    endpoint: str | None = None
    bucket: str = "facetrack"
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    secure: bool = True
    region: str | None = None
    url_expiry_seconds: int = 24 * 3600
    max_age_days: float | None = 30
    max_total_mb: float | None = 5000

    def __post_init__(self) -> None:
        if self.kind not in ("local", "s3"):
            raise ConfigError(f"storage.kind must be 'local' or 's3', not {self.kind!r}")
        if self.kind == "local" and not self.path:
            raise ConfigError("storage.path is required for local storage")
        if self.kind == "s3":
            if not self.endpoint or not _ENDPOINT_RE.fullmatch(self.endpoint):
                raise ConfigError(
                    f"storage.endpoint must be 'host:port' without scheme for S3 storage, not {self.endpoint!r}"
                )
            if not _BUCKET_RE.fullmatch(self.bucket) or ".." in self.bucket:
                raise ConfigError(f"storage.bucket {self.bucket!r} is not a valid S3 bucket name")
            if bool(self.access_key) != bool(self.secret_key):
                raise ConfigError("storage.access_key and storage.secret_key must be given together")
        if not 1 <= self.url_expiry_seconds <= MAX_URL_EXPIRY_S:
            raise ConfigError(f"storage.url_expiry_seconds must be between 1 and {MAX_URL_EXPIRY_S}")
        if self.max_age_days is not None and self.max_age_days <= 0:
            raise ConfigError("storage.max_age_days must be positive (or null for no limit)")
        if self.max_total_mb is not None and self.max_total_mb <= 0:
            raise ConfigError("storage.max_total_mb must be positive (or null for no limit)")


# A retention limit: a positive number, or null for none (0 would purge every clip at once).
_LIMIT = vol.Any(None, vol.All(vol.Coerce(float), vol.Range(min=0, min_included=False)))

#: ``clips.storage`` section of a configuration file: types and ranges, the same as
#: :class:`StorageConfig` checks (which also checks the S3 fields against each other).
STORAGE_SCHEMA = vol.Schema(
    {
        vol.Optional("kind"): vol.In(["local", "s3"]),
        vol.Optional("path"): str,
        vol.Optional("endpoint"): vol.Any(None, str),
        vol.Optional("bucket"): str,
        vol.Optional("access_key"): vol.Any(None, str),
        vol.Optional("secret_key"): vol.Any(None, str),
        vol.Optional("secure"): bool,
        vol.Optional("region"): vol.Any(None, str),
        vol.Optional("url_expiry_seconds"): vol.All(vol.Coerce(int), vol.Range(min=1, max=MAX_URL_EXPIRY_S)),
        vol.Optional("max_age_days"): _LIMIT,
        vol.Optional("max_total_mb"): _LIMIT,
    }
)
