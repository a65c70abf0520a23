"""Damage checks for a local face library: a sidecar record of what was committed, verified at open.

Lance never rewrites a file: data files, deletion files and version manifests are written once
under unique names and only ever removed (by compaction's cleanup). So after each commit FaceTrack
records, in ``facetrack-integrity.json`` inside the library folder, the table version it
committed and the size and SHA-256 of every file of the table. At open:

- a table version older than the recorded one means the newest manifest is gone (Lance would
  silently open the previous version: an acknowledged enrolment lost, new writes on top);
- a recorded file whose size or SHA-256 changed was damaged on disk (Lance reads a crop with 200
  overwritten bytes without any error);
- a recorded file that is missing is damage unless the current version does not need it (files of
  old versions removed by a compaction that was interrupted before the record was updated), which
  a full read of the table decides.

Files written by a commit that ended before the record was updated (the process killed in
between) are recorded at the next open. Cost: one read of every table file at open (SHA-256 runs
at about 1 GB/s; ``benchmarks/library_open.py`` measures a library of a few hundred embeddings).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facetrack.errors import LibraryError

#: The sidecar record, inside the library folder (next to the ``faces.lance`` table folder).
RECORD_NAME = "facetrack-integrity.json"
#: Lock taken around reading and rewriting the record (several processes may write one library).
LOCK_NAME = ".facetrack-integrity.lock"
FORMAT = 1
#: Table sub-folders whose files are immutable and needed to read the table (``_transactions``
#: only serve conflict resolution; ``_versions/latest_version_hint.json`` is rewritten in place).
_CHECKED = ("data", "_deletions", "_versions", "_indices")
_CHUNK = 1 << 20


class LibraryCorruptError(LibraryError):
    """The face library on disk is damaged or unreadable; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """Size (bytes) and SHA-256 (hex) of one table file."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Record:
    """What the last commit left: table version and ``{path relative to the library: FileRecord}``."""

    version: int
    files: dict[str, FileRecord]


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks. Raises OSError."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def table_files(library: Path, table: str) -> list[str]:
    """Paths (relative to ``library``, ``/``-separated, sorted) of the checked files of ``table``."""
    out: list[str] = []
    root = library / f"{table}.lance"
    for sub in _CHECKED:
        base = root / sub
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name == "latest_version_hint.json" or name.startswith("."):
                    continue
                out.append(Path(dirpath, name).relative_to(library).as_posix())
    return sorted(out)


def read_record(library: Path) -> Record | None:
    """The record of ``library``, or ``None`` if there is none (a library made before it existed).

    Raises:
        LibraryCorruptError: the record itself is unreadable or malformed.
    """
    path = library / RECORD_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        files = {str(k): FileRecord(int(v["size"]), str(v["sha256"])) for k, v in raw["files"].items()}
        return Record(int(raw["version"]), files)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise LibraryCorruptError(f"{RECORD_NAME} is unreadable ({type(err).__name__})") from None


def write_record(library: Path, record: Record) -> None:
    """Write the record atomically (temporary file, fsync, rename). Raises OSError."""
    body = {
        "format": FORMAT,
        "version": record.version,
        "files": {k: {"size": v.size, "sha256": v.sha256} for k, v in sorted(record.files.items())},
    }
    fd, tmp = tempfile.mkstemp(prefix=".integrity-", dir=library)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, library / RECORD_NAME)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(library: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the library's lock file (serialises record updates)."""
    with (library / LOCK_NAME).open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class Damage:
    """What the verification found: ``changed`` (size or SHA-256 differs) and ``missing`` files."""

    changed: list[str]
    missing: list[str]


def verify_files(library: Path, record: Record) -> Damage:
    """Compare every recorded file with the disk.

    Raises:
        OSError: a file exists but cannot be read (permissions, I/O error).
    """
    changed: list[str] = []
    missing: list[str] = []
    for rel, rec in sorted(record.files.items()):
        path = library / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            missing.append(rel)
            continue
        if size != rec.size or sha256_file(path) != rec.sha256:
            changed.append(rel)
    return Damage(changed, missing)


def update_record(library: Path, table: str, version: int, known: Record | None = None) -> Record:
    """Record ``version`` and the table's files now on disk (new files hashed, gone ones dropped).

    Call after a commit, holding :func:`locked`. Files already recorded are not read again
    (Lance files never change). A record of a higher version (another process committed later
    and recorded first) is kept as it is.

    Raises:
        OSError: a file cannot be read or the record cannot be written.
    """
    old = known if known is not None else (read_record(library) or Record(-1, {}))
    if old.version > version:
        return old
    files: dict[str, FileRecord] = {}
    for rel in table_files(library, table):
        rec = old.files.get(rel)
        if rec is None:
            path = library / rel
            try:
                rec = FileRecord(path.stat().st_size, sha256_file(path))
            except FileNotFoundError:  # removed by a concurrent cleanup since the listing
                continue
        files[rel] = rec
    record = Record(version, files)
    write_record(library, record)
    return record
