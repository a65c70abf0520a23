"""Clip storage behind one interface: a local folder or an S3 bucket (DeGirum's ``ObjectStorageConfig``).

A clip is the set of files recorded for one alert on one camera. Every file lives under the key
``<camera>/<clip_id>/<kind>.<ext>``::

    front_door/20261122T081503Z_1a2b3c4d/original.mp4      raw video
    front_door/20261122T081503Z_1a2b3c4d/annotated.mp4     video with boxes and names
    front_door/20261122T081503Z_1a2b3c4d/annotations.json  per-frame tracks
    front_door/20261122T081503Z_1a2b3c4d/snapshot.jpg      best frame

``camera`` matches ``[a-z0-9_]{1,32}``; ``clip_id`` is the clip's UTC start time and 8 hex digits
of the alert id (:func:`new_clip_id`). Keys reach this module from URLs, so every key is checked
against that exact layout (:func:`parse_key`) before any filesystem or S3 access; anything else
(``..``, absolute paths, backslashes, empty segments, other names) raises :class:`ValueError`.

:func:`create_storage` returns a :class:`LocalClipStorage` or an :class:`S3ClipStorage` (any S3
server: MinIO, AWS, Garage, ... through the ``minio`` client). Both write atomically: readers see a
whole file or none. Failures raise :class:`StorageError` (``ClipNotFoundError`` for a missing
key), whose message names the storage kind and key, never a credential.

A file that an alert's URL names but that was lost (the engine was killed while recording it and
nothing playable was left) is recorded in a marker beside the clip folder,
``<camera>/<clip_id>.lost.json`` (:meth:`ClipStorage.mark_lost`, local storage only), so that
the HTTP server answers such URLs "410 Gone" with the reason instead of 404 (:func:`lost_reason`).
Markers are purged once the URLs they answer for have expired.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3

# The settings live in config/ (reading a configuration must not import minio); re-exported here.
from facetrack.config.storage import MAX_URL_EXPIRY_S
from facetrack.config.storage import StorageConfig as StorageConfig  # noqa: PLC0414 - re-export
from facetrack.config.storage import StorageKind as StorageKind  # noqa: PLC0414 - re-export
from facetrack.errors import FaceTrackError

if TYPE_CHECKING:
    from minio.datatypes import Object

_LOG = logging.getLogger(__name__)

#: File kinds of a clip: kind -> (file name, content type).
CLIP_FILES: dict[str, tuple[str, str]] = {
    "original": ("original.mp4", "video/mp4"),
    "annotated": ("annotated.mp4", "video/mp4"),
    "annotations": ("annotations.json", "application/json"),
    "snapshot": ("snapshot.jpg", "image/jpeg"),
}
_KIND_BY_NAME = {name: kind for kind, (name, _) in CLIP_FILES.items()}

_CAMERA = r"[a-z0-9_]{1,32}"
_CLIP_ID = r"[0-9]{8}T[0-9]{6}Z_[0-9a-f]{8}"
_NAME = "|".join(re.escape(name) for name, _ in CLIP_FILES.values())
_CAMERA_RE = re.compile(_CAMERA)
_CLIP_ID_RE = re.compile(_CLIP_ID)
_KEY_RE = re.compile(rf"(?P<camera>{_CAMERA})/(?P<clip_id>{_CLIP_ID})/(?P<name>{_NAME})")
# Temporary files of LocalClipStorage.put, next to their target: ".<name>.<random>.tmp".
_TMP_RE = re.compile(rf"\.(?:{_NAME})\..+\.tmp")
#: Marker of a clip's lost files, beside the clip folder: ``<camera>/<clip_id>`` + this.
LOST_SUFFIX = ".lost.json"
_CHUNK = 1 << 16


class StorageError(FaceTrackError):
    """A clip storage operation failed (storage unreachable, permission denied, missing key).

    Attributes:
        kind: ``"local"`` or ``"s3"``.
        key: the clip file key concerned, if any.
    """

    def __init__(self, message: str, kind: str, key: str | None = None) -> None:
        where = f"{kind} clip storage" + (f", key {key!r}" if key else "")
        super().__init__(f"{where}: {message}")
        self.kind = kind
        self.key = key


class ClipNotFoundError(StorageError):
    """The requested clip file does not exist."""


@dataclass(frozen=True)
class ClipFile:
    """One stored file of a clip.

    Attributes:
        key: ``<camera>/<clip_id>/<kind>.<ext>``.
        size: bytes.
        modified: last write time, epoch seconds.
    """

    key: str
    size: int
    modified: float


@dataclass(frozen=True)
class Clip:
    """The stored files of one clip.

    Attributes:
        clip_id: ``<YYYYMMDDTHHMMSSZ>_<8 hex>``.
        camera: camera name.
        created: the clip's start time from its id, epoch seconds (UTC); the oldest file's
            ``modified`` if the id holds no valid date.
        files: the stored files by kind (``"original"``, ``"annotated"``, ``"annotations"``,
            ``"snapshot"``); a clip being written may lack some.
        size: total bytes of ``files``.
    """

    clip_id: str
    camera: str
    created: float
    files: dict[str, ClipFile]
    size: int


def parse_key(key: str) -> tuple[str, str, str]:
    """Check ``key`` against the clip layout and split it.

    Returns:
        ``(camera, clip_id, kind)``, e.g. ``("door", "20261122T081503Z_1a2b3c4d", "original")``.

    Raises:
        ValueError: ``key`` is not exactly ``<camera>/<clip_id>/<kind>.<ext>`` (this rejects
            ``..``, absolute paths, backslashes, empty segments and any other name).
    """
    m = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
    if m is None:
        raise ValueError(f"invalid clip key {str(key)[:200]!r}: expected <camera>/<clip_id>/<kind>.<ext>")
    return m["camera"], m["clip_id"], _KIND_BY_NAME[m["name"]]


def validate_clip_id(clip_id: str) -> str:
    """Return ``clip_id`` if it matches ``YYYYMMDDTHHMMSSZ_<8 hex>``.

    Raises:
        ValueError: it does not.
    """
    if not isinstance(clip_id, str) or not _CLIP_ID_RE.fullmatch(clip_id):
        raise ValueError(f"invalid clip id {str(clip_id)[:100]!r}: expected YYYYMMDDTHHMMSSZ_<8 hex digits>")
    return clip_id


def clip_key(camera: str, clip_id: str, kind: str) -> str:
    """The key of file ``kind`` (``"original"``, ``"annotated"``, ``"annotations"``, ``"snapshot"``).

    Raises:
        ValueError: an invalid camera name, clip id or kind.
    """
    if kind not in CLIP_FILES:
        raise ValueError(f"unknown clip file kind {kind!r}: expected one of {sorted(CLIP_FILES)}")
    if not isinstance(camera, str) or not _CAMERA_RE.fullmatch(camera):
        raise ValueError(f"invalid camera name {str(camera)[:100]!r}: expected [a-z0-9_]{{1,32}}")
    key = f"{camera}/{validate_clip_id(clip_id)}/{CLIP_FILES[kind][0]}"
    parse_key(key)
    return key


def new_clip_id(created: float, alert_id: str) -> str:
    """A clip id from the clip's start time (epoch seconds) and its alert id.

    The suffix is the alert id's first 8 hex digits when the id is hexadecimal (a UUID, say),
    else the first 8 hex digits of its SHA-1, e.g. ``20261122T081503Z_1a2b3c4d``.
    """
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y%m%dT%H%M%SZ")
    digits = alert_id.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{8,}", digits):
        digits = hashlib.sha1(alert_id.encode(), usedforsecurity=False).hexdigest()
    return f"{stamp}_{digits[:8]}"


def clip_time(clip_id: str) -> float | None:
    """The start time encoded in ``clip_id``, epoch seconds, or ``None`` if it is not a valid date."""
    try:
        return datetime.strptime(clip_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _expiry(expires_in: int | None, default: int) -> int:
    seconds = default if expires_in is None else expires_in
    if not isinstance(seconds, int) or not 1 <= seconds <= MAX_URL_EXPIRY_S:
        raise ValueError(f"expires_in must be an integer between 1 and {MAX_URL_EXPIRY_S} seconds")
    return seconds


class ClipStorage(ABC):
    """Stores clip files under validated keys; one subclass per storage kind.

    Methods are thread-safe: camera workers may write while the HTTP server reads.
    """

    kind: StorageKind

    def __init__(self, config: StorageConfig) -> None:
        self.config = config

    # -- primitives of each kind ------------------------------------------------------------

    @abstractmethod
    def put(self, key: str, src: Path, content_type: str | None = None) -> None:
        """Store the file ``src`` under ``key``, replacing any previous one, atomically.

        Args:
            key: ``<camera>/<clip_id>/<kind>.<ext>``.
            src: local file to store.
            content_type: MIME type (default: from the key's kind).

        Raises:
            ValueError: invalid key.
            StorageError: ``src`` is unreadable or the storage is unavailable.
        """

    @abstractmethod
    def download(self, key: str, dest: Path) -> Path:
        """Copy the file ``key`` to ``dest`` (a file path; parents are created) and return ``dest``.

        Raises:
            ValueError: invalid key.
            ClipNotFoundError: no such file.
            StorageError: the storage is unavailable or ``dest`` cannot be written.
        """

    @abstractmethod
    def url(self, key: str, expires_in: int | None = None) -> str | None:
        """A URL that downloads ``key`` for ``expires_in`` seconds (default ``url_expiry_seconds``).

        S3: a presigned GET URL. Local: the injected ``url_signer``'s URL, or ``None`` without
        one. The file's existence is not checked.

        Raises:
            ValueError: invalid key or ``expires_in`` outside 1 s .. 7 days.
        """

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The file's path on disk for local storage, ``None`` for S3 or when the file is missing.

        Raises:
            ValueError: invalid key, or a path that resolves outside the storage folder.
        """

    @abstractmethod
    def _files(self, clip_id: str | None = None) -> Iterator[ClipFile]:
        """Every stored file with a valid key (only clip ``clip_id``'s files if given)."""

    @abstractmethod
    def _delete(self, keys: list[str]) -> None:
        """Delete these (validated) keys; missing ones are ignored."""

    @property
    @abstractmethod
    def identity(self) -> str:
        """Names this storage (``local:<folder>`` or ``s3:<endpoint>/<bucket>``), no credential."""

    def mark_lost(self, camera: str, clip_id: str, reasons: dict[str, str]) -> None:
        """Record that files of a clip are lost for good, by kind with a short reason (merged
        with earlier marks). Local storage keeps a marker the HTTP server reads
        (:func:`lost_reason`); S3 serves its own presigned URLs, so it only logs.

        Raises:
            ValueError: invalid camera, clip id or kind.
            StorageError: the marker cannot be written.
        """
        for kind in reasons:
            clip_key(camera, clip_id, kind)
        _LOG.warning("%s clip storage: clip %s/%s lost %s", self.kind, camera, clip_id, ", ".join(sorted(reasons)))

    # -- shared behaviour -------------------------------------------------------------------

    def list_clips(self) -> list[Clip]:
        """Every clip, its files grouped by kind, newest first (``FaceClipManager.list_clips``).

        Raises:
            StorageError: the storage is unavailable.
        """
        return _group(self._files())

    def remove_file(self, key: str) -> None:
        """Remove one file; a missing file is not an error.

        Raises:
            ValueError: invalid key.
            StorageError: the storage is unavailable.
        """
        parse_key(key)
        self._delete([key])

    def remove_clip(self, clip_id: str) -> int:
        """Remove every file of clip ``clip_id``; returns the number of files removed (0: no such clip).

        Raises:
            ValueError: invalid clip id.
            StorageError: the storage is unavailable.
        """
        validate_clip_id(clip_id)
        keys = [f.key for f in self._files(clip_id)]
        self._delete(keys)
        return len(keys)

    def remove_all(self) -> int:
        """Remove every clip file (other objects are left alone); returns the number of files removed.

        Raises:
            StorageError: the storage is unavailable.
        """
        keys = [f.key for f in self._files()]
        self._delete(keys)
        return len(keys)

    def purge(self, now: float | None = None) -> list[str]:
        """Apply retention; returns the ids of the clips removed, oldest first.

        First removes whole clips whose ``created`` is more than ``max_age_days`` before ``now``
        (epoch seconds, default: the current time), then the oldest clips until all clips take at
        most ``max_total_mb`` megabytes (10^6 bytes).

        Raises:
            StorageError: the storage is unavailable.
        """
        now = time.time() if now is None else now
        clips = sorted(self.list_clips(), key=lambda c: (c.created, c.clip_id))  # oldest first
        doomed: list[Clip] = []
        if self.config.max_age_days is not None:
            limit = now - self.config.max_age_days * 86400.0
            doomed = [c for c in clips if c.created < limit]
            clips = [c for c in clips if c.created >= limit]
        if self.config.max_total_mb is not None:
            total = sum(c.size for c in clips)
            budget = self.config.max_total_mb * 1e6
            while clips and total > budget:
                total -= clips[0].size
                doomed.append(clips.pop(0))
        if doomed:
            self._delete([f.key for c in doomed for f in c.files.values()])
            _LOG.info("purged %d clip(s) from %s clip storage", len(doomed), self.kind)
        return [c.clip_id for c in doomed]


def _group(files: Iterable[ClipFile]) -> list[Clip]:
    groups: dict[tuple[str, str], dict[str, ClipFile]] = {}
    for f in files:
        camera, clip_id, kind = parse_key(f.key)
        groups.setdefault((camera, clip_id), {})[kind] = f
    clips = []
    for (camera, clip_id), by_kind in groups.items():
        created = clip_time(clip_id)
        if created is None:
            created = min(f.modified for f in by_kind.values())
        ordered = {k: by_kind[k] for k in CLIP_FILES if k in by_kind}
        clips.append(Clip(clip_id, camera, created, ordered, sum(f.size for f in ordered.values())))
    clips.sort(key=lambda c: (c.created, c.clip_id, c.camera), reverse=True)
    return clips


def lost_reason(root: Path, key: str) -> str | None:
    """Why the file ``key`` of the local clip folder ``root`` is lost, or ``None`` if it is not
    marked lost (:meth:`ClipStorage.mark_lost`). Never raises: an invalid key or an unreadable
    marker gives ``None``."""
    try:
        camera, clip_id, kind = parse_key(key)
        data = json.loads((root / camera / f"{clip_id}{LOST_SUFFIX}").read_text(encoding="utf-8"))
        reason = data["lost"][kind]
    except (ValueError, OSError, KeyError, TypeError):
        return None
    return reason if isinstance(reason, str) else None


class LocalClipStorage(ClipStorage):
    """Clips in a local folder (``config.path``), created if missing.

    Raises:
        StorageError: the folder cannot be created.
    """

    kind: StorageKind = "local"

    def __init__(self, config: StorageConfig, url_signer: Callable[[str, int], str] | None = None) -> None:
        super().__init__(config)
        self._signer = url_signer
        root = Path(config.path).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root.resolve(strict=True)
        except OSError as exc:
            raise StorageError(f"cannot create folder {root}: {exc.strerror or exc}", self.kind) from exc
        _LOG.info("clip storage: local folder %s", self.root)

    @property
    def identity(self) -> str:
        return f"local:{self.root}"

    def mark_lost(self, camera: str, clip_id: str, reasons: dict[str, str]) -> None:
        super().mark_lost(camera, clip_id, reasons)
        marker = self.root / camera / f"{validate_clip_id(clip_id)}{LOST_SUFFIX}"
        try:
            lost = json.loads(marker.read_text(encoding="utf-8"))["lost"]
        except (OSError, ValueError, KeyError, TypeError):
            lost = {}
        lost = {**(lost if isinstance(lost, dict) else {}), **reasons}
        body = json.dumps({"camera": camera, "clip_id": clip_id, "lost": lost, "time": time.time()}).encode()
        _write_atomic([body], marker, self.kind, f"{camera}/{clip_id}")

    def purge(self, now: float | None = None) -> list[str]:
        """Retention (see :meth:`ClipStorage.purge`), then lost markers older than the URLs
        (``url_expiry_seconds``) that could still ask for their files."""
        removed = super().purge(now)
        limit = (time.time() if now is None else now) - self.config.url_expiry_seconds
        for marker in self.root.glob(f"*/*{LOST_SUFFIX}"):
            with contextlib.suppress(OSError):
                if marker.stat().st_mtime < limit:
                    marker.unlink()
        return removed

    def _path(self, key: str) -> Path:
        parse_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"clip key {key!r} resolves outside the storage folder")
        return path

    def put(self, key: str, src: Path, content_type: str | None = None) -> None:
        dest = self._path(key)
        try:
            fin = Path(src).open("rb")  # noqa: SIM115
        except OSError as exc:
            raise StorageError(f"cannot read {src}: {exc.strerror or exc}", self.kind, key) from exc
        with fin:
            for attempt in range(3):  # the clip folder may vanish under a concurrent remove
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise StorageError("clip folder removed during write", self.kind, key) from None
                except OSError as exc:
                    raise StorageError(f"cannot write: {exc.strerror or exc}", self.kind, key) from exc
            try:
                with os.fdopen(fd, "wb") as fout:
                    shutil.copyfileobj(fin, fout, _CHUNK)
                    fout.flush()
                    os.fsync(fout.fileno())
                os.chmod(tmp, 0o644)  # mkstemp creates 0600; the HTTP server may run as another user
                os.replace(tmp, dest)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise StorageError(f"cannot write: {exc.strerror or exc}", self.kind, key) from exc

    def download(self, key: str, dest: Path) -> Path:
        path = self._path(key)
        dest = Path(dest)
        try:
            fin = path.open("rb")
        except FileNotFoundError:
            raise ClipNotFoundError("no such clip file", self.kind, key) from None
        except OSError as exc:
            raise StorageError(f"cannot read: {exc.strerror or exc}", self.kind, key) from exc
        with fin:
            _write_atomic(iter(lambda: fin.read(_CHUNK), b""), dest, self.kind, key)
        return dest

    def url(self, key: str, expires_in: int | None = None) -> str | None:
        parse_key(key)
        seconds = _expiry(expires_in, self.config.url_expiry_seconds)
        return None if self._signer is None else self._signer(key, seconds)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def _clip_dirs(self, clip_id: str | None) -> Iterator[tuple[str, Path]]:
        """``(clip_id, folder)`` of every clip folder (only ``clip_id``'s if given)."""
        try:
            cameras = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except OSError as exc:
            raise StorageError(f"cannot list {self.root}: {exc.strerror or exc}", self.kind) from exc
        for cam in cameras:
            if not _CAMERA_RE.fullmatch(cam.name):
                continue
            if clip_id is not None:
                folder = Path(cam.path) / clip_id
                if folder.is_dir() and not folder.is_symlink():
                    yield clip_id, folder
                continue
            try:
                entries = list(os.scandir(cam.path))
            except OSError:
                continue  # removed meanwhile
            for e in entries:
                if _CLIP_ID_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False):
                    yield e.name, Path(e.path)

    def _files(self, clip_id: str | None = None) -> Iterator[ClipFile]:
        for cid, folder in self._clip_dirs(clip_id):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for e in entries:
                if e.name not in _KIND_BY_NAME:
                    continue
                try:
                    if not e.is_file(follow_symlinks=False):
                        continue
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile
                yield ClipFile(f"{folder.parent.name}/{cid}/{e.name}", st.st_size, st.st_mtime)

    def _delete(self, keys: list[str]) -> None:
        folders: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot remove: {exc.strerror or exc}", self.kind, key) from exc
            folders.add(path.parent)
        for folder in folders:  # drop emptied clip folders (and put's leftovers of a crash)
            try:
                names = os.listdir(folder)
                if all(_TMP_RE.fullmatch(n) for n in names):
                    for n in names:
                        (folder / n).unlink(missing_ok=True)
                    folder.rmdir()
            except OSError:
                pass  # a concurrent put is filling it again


def _write_atomic(chunks: Iterable[bytes], dest: Path, kind: str, key: str) -> None:
    """Write ``chunks`` to ``dest`` through a temporary file beside it (readers never see a part)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {exc.strerror or exc}", kind, key) from exc
    try:
        with os.fdopen(fd, "wb") as fout:
            for chunk in chunks:
                fout.write(chunk)
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {dest}: {exc.strerror or exc}", kind, key) from exc
        raise


class S3ClipStorage(ClipStorage):
    """Clips in an S3 bucket through the ``minio`` client; the bucket is created on first use.

    Nothing is sent to the server before the first operation, so a storage that is briefly down
    at start-up does not stop the service; :meth:`check` tests it on demand.
    """

    kind: StorageKind = "s3"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0

    def __init__(self, config: StorageConfig) -> None:
        super().__init__(config)
        # The S3 client is imported only for an S3 storage (local clips never load it).
        import certifi
        from minio import Minio
        from minio.error import MinioException

        self._errors: tuple[type[Exception], ...] = (MinioException, urllib3.exceptions.HTTPError, OSError)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self.connect_timeout_s, read=self.read_timeout_s),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        assert config.endpoint is not None  # checked by StorageConfig
        try:
            self._client = Minio(
                config.endpoint,
                access_key=config.access_key,
                secret_key=config.secret_key,
                secure=config.secure,
                region=config.region,
                http_client=http,
            )
        except ValueError as exc:
            raise StorageError(self._scrub(str(exc)), self.kind) from None
        self._bucket = config.bucket
        self._ready = False
        self._lock = threading.Lock()
        scheme = "https" if config.secure else "http"
        _LOG.info("clip storage: s3 %s://%s bucket %s", scheme, config.endpoint, config.bucket)

    @property
    def identity(self) -> str:
        return f"s3:{self.config.endpoint}/{self._bucket}"

    def __repr__(self) -> str:
        return f"S3ClipStorage(endpoint={self.config.endpoint!r}, bucket={self._bucket!r})"

    def _scrub(self, text: str) -> str:
        secret = self.config.secret_key
        return text.replace(secret, "***") if secret else text

    def _fail(self, exc: Exception, key: str | None, action: str) -> StorageError:
        """A StorageError for a minio/urllib3 exception, without credentials."""
        if isinstance(exc, _s3_error()):
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound") and key is not None:
                return ClipNotFoundError("no such clip file", self.kind, key)
            if exc.code == "NoSuchBucket":
                self._ready = False
            detail = f"{exc.code}: {exc.message}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        where = f"{self.config.endpoint}/{self._bucket}"
        return StorageError(self._scrub(f"cannot {action} at {where}: {detail}"), self.kind, key)

    def check(self) -> None:
        """Reach the server and create the bucket if missing.

        Raises:
            StorageError: unreachable server, refused credentials or no permission.
        """
        self._ensure_bucket()

    def _ensure_bucket(self, key: str | None = None) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                if not self._client.bucket_exists(self._bucket):
                    try:
                        self._client.make_bucket(self._bucket, location=self.config.region)
                        _LOG.info("created S3 bucket %s", self._bucket)
                    except _s3_error() as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
            except self._errors as exc:
                raise self._fail(exc, key, "open bucket") from None
            self._ready = True

    def put(self, key: str, src: Path, content_type: str | None = None) -> None:
        _, _, kind = parse_key(key)
        if not Path(src).is_file():
            raise StorageError(f"cannot read {src}: not a file", self.kind, key)
        self._ensure_bucket(key)
        try:
            # One PUT (a multipart upload above 5 MiB, published whole on completion).
            self._client.fput_object(self._bucket, key, str(src), content_type=content_type or CLIP_FILES[kind][1])
        except self._errors as exc:
            raise self._fail(exc, key, "upload") from None

    def download(self, key: str, dest: Path) -> Path:
        parse_key(key)
        dest = Path(dest)
        self._ensure_bucket(key)
        try:
            response = self._client.get_object(self._bucket, key)
        except self._errors as exc:
            raise self._fail(exc, key, "download") from None
        try:
            _write_atomic(response.stream(_CHUNK), dest, self.kind, key)
        except StorageError:
            raise
        except self._errors as exc:
            raise self._fail(exc, key, "download") from None
        finally:
            response.close()
            response.release_conn()
        return dest

    def url(self, key: str, expires_in: int | None = None) -> str | None:
        parse_key(key)
        seconds = _expiry(expires_in, self.config.url_expiry_seconds)
        self._ensure_bucket(key)
        try:
            return self._client.presigned_get_object(self._bucket, key, expires=timedelta(seconds=seconds))
        except self._errors as exc:
            raise self._fail(exc, key, "sign URL") from None

    def local_path(self, key: str) -> Path | None:
        parse_key(key)
        return None

    def _list(self, prefix: str | None, recursive: bool) -> list[Object]:
        self._ensure_bucket()
        try:
            return list(self._client.list_objects(self._bucket, prefix=prefix, recursive=recursive))
        except self._errors as exc:
            raise self._fail(exc, None, "list") from None

    def _files(self, clip_id: str | None = None) -> Iterator[ClipFile]:
        if clip_id is None:
            objects = self._list(None, recursive=True)
        else:  # one listing of camera prefixes, then one per camera
            cameras = [o.object_name for o in self._list(None, recursive=False)]
            objects = []
            for cam in cameras:
                if cam and cam.endswith("/") and _CAMERA_RE.fullmatch(cam[:-1]):
                    objects += self._list(f"{cam}{clip_id}/", recursive=True)
        for o in objects:
            if not o.object_name or not _KEY_RE.fullmatch(o.object_name):
                continue
            if clip_id is not None and o.object_name.split("/")[1] != clip_id:
                continue
            modified = o.last_modified.timestamp() if o.last_modified else 0.0
            yield ClipFile(o.object_name, o.size or 0, modified)

    def _delete(self, keys: list[str]) -> None:
        if not keys:
            return
        self._ensure_bucket()
        try:
            if len(keys) == 1:
                self._client.remove_object(self._bucket, keys[0])
                return
            errors = list(self._client.remove_objects(self._bucket, [_delete_object(k) for k in keys]))
        except self._errors as exc:
            raise self._fail(exc, keys[0] if len(keys) == 1 else None, "remove") from None
        if errors:
            first = errors[0]
            raise StorageError(
                self._scrub(f"cannot remove {len(errors)} file(s): {first.code}: {first.message}"),
                self.kind,
                first.name,
            )


def create_storage(config: StorageConfig, url_signer: Callable[[str, int], str] | None = None) -> ClipStorage:
    """The clip storage ``config`` describes.

    Args:
        config: the storage settings.
        url_signer: for local storage, ``url_signer(key, expires_in_s)`` returns a download URL
            (the HTTP server's signed ``/clips/<key>?exp=...&sig=...``); ignored for S3, which
            presigns its own URLs.

    Raises:
        StorageError: the local folder cannot be created.
    """
    if config.kind == "s3":
        return S3ClipStorage(config)
    return LocalClipStorage(config, url_signer)


def _s3_error() -> Any:
    """``minio.error.S3Error`` (imported on use: only an S3 storage needs it)."""
    from minio.error import S3Error

    return S3Error


def _delete_object(key: str) -> Any:
    """``minio.deleteobjects.DeleteObject(key)``."""
    from minio.deleteobjects import DeleteObject

    return DeleteObject(key)
