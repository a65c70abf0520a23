"""Automatic backups of a local face library, and restoring one.

Backups live next to the library, in ``<db_path>.backups/`` (``/config/faces.lance.backups`` in
the Home Assistant app), each a complete library folder that FaceTrack opens as it is:

- ``latest/``: the library as of the last commit, refreshed after every write, so restoring it
  brings back every acknowledged enrolment;
- ``<UTC time>-<reason>/``: taken before every destructive operation (``forget``,
  ``delete_embedding``, ``rename``, ``compact``) and once a day (``daily``, at start or before a
  write); the newest :data:`KEEP_BACKUPS` are kept, older ones removed.

Lance files never change once written, so a backup copies only the files that are new since the
previous backup and hard-links the others to it (a backup of an unchanged library costs one link
per file). Files are copied from the live library with their SHA-256 checked against the
library's integrity record (:mod:`facetrack.library.integrity`), so damage is never copied into
a backup. Libraries on an object store (``s3://``) are not backed up by FaceTrack: use the
bucket's versioning or replication (``docs/scale-out.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from facetrack.errors import LibraryError
from facetrack.library.integrity import (
    LOCK_NAME,
    RECORD_NAME,
    LibraryCorruptError,
    Record,
    locked,
    read_record,
    verify_files,
)

_LOG = logging.getLogger(__name__)
#: Dated backups kept (``latest`` comes on top); at one a day and a few destructive operations a
#: day this covers about a week.
KEEP_BACKUPS = 10
#: A ``daily`` backup is taken when the newest dated backup is older than this (s).
DAILY_SECONDS = 24 * 3600.0
LATEST = "latest"
_CHUNK = 1 << 20


def backup_root(db_path: str | Path) -> Path:
    """``<db_path>.backups``: the folder holding the backups of the library at ``db_path``."""
    p = Path(db_path)
    return p.with_name(p.name + ".backups")


def restore_command(db_path: str | Path) -> str:
    """The command line that restores the newest good backup of ``db_path``."""
    return f"facetrack restore-library --db {db_path}"


@dataclass(frozen=True, slots=True)
class Backup:
    """One backup: its folder, reason (``latest``, ``daily``, ``forget``...), creation time (epoch s)."""

    path: Path
    reason: str
    created: float

    @property
    def name(self) -> str:
        """The folder name (give it to ``facetrack restore-library --from``)."""
        return self.path.name


def list_backups(db_path: str | Path) -> list[Backup]:
    """The backups of ``db_path``, newest first (``latest`` first when present)."""
    root = backup_root(db_path)
    if not root.is_dir():
        return []
    out: list[Backup] = []
    for d in root.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        reason = LATEST if d.name == LATEST else d.name.partition("-")[2] or "unknown"
        try:
            created = d.stat().st_mtime
        except OSError:
            continue
        out.append(Backup(d, reason, created))
    return sorted(out, key=lambda b: (b.name == LATEST, b.created, b.name), reverse=True)


def _copy_checked(src: Path, dst: Path, expected: str | None) -> None:
    """Copy ``src`` to ``dst`` hashing the bytes; a SHA-256 other than ``expected`` is damage."""
    h = hashlib.sha256()
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
    if expected is not None and h.hexdigest() != expected:
        dst.unlink()
        raise LibraryCorruptError(f"{src} changed since it was written")
    shutil.copystat(src, dst)


def _listing(top: str, prefix: str = "") -> list[str]:
    """Relative (``/``-separated) paths of the files under ``top`` (plain strings: this runs after
    every commit, and pathlib costs several times more per file)."""
    out: list[str] = []
    for dirpath, _dirs, names in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        base = prefix if rel == "." else f"{prefix}{rel.replace(os.sep, '/')}/"
        out.extend(base + n for n in names if n != LOCK_NAME and not n.startswith((".integrity-", ".tmp")))
    return out


def _snapshot(library: Path, dest: Path, previous: Path | None, record: Record | None) -> None:
    """Build ``dest`` as a copy of ``library``: unchanged immutable files linked to ``previous``."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    files = record.files if record is not None else {}
    lib, out, prev = str(library), str(tmp), str(previous) if previous is not None else None
    # Manifests listed first: every file a listed manifest needs was written before it, so it is
    # in the later listing of the other folders even if another process commits meanwhile.
    tables = sorted(n for n in os.listdir(lib) if n.endswith(".lance") and os.path.isdir(os.path.join(lib, n)))
    rels: list[str] = []
    for t in tables:
        rels += _listing(os.path.join(lib, t, "_versions"), f"{t}/_versions/")
    rels += [r for r in _listing(lib) if r.split("/")[1:2] != ["_versions"]]
    made: set[str] = set()
    try:
        for rel in rels:
            src, dst = os.path.join(lib, rel), os.path.join(out, rel)
            parent = os.path.dirname(dst)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            rec = files.get(rel)
            # Lance never rewrites a file (unique names); only the record and the hint change.
            if prev is not None and rel != RECORD_NAME and not rel.endswith("latest_version_hint.json"):
                old = os.path.join(prev, rel)
                try:
                    same = os.stat(old).st_size == (rec.size if rec is not None else os.stat(src).st_size)
                    if same:
                        os.link(old, dst)
                        continue
                except OSError:  # not in the previous backup, or no hard links here: copy
                    pass
            try:
                _copy_checked(Path(src), Path(dst), rec.sha256 if rec is not None else None)
            except FileNotFoundError:
                if rel.endswith(".manifest") or rel == RECORD_NAME:
                    raise
                continue  # removed by a concurrent cleanup: an old version's file
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def take_backup(db_path: str | Path, reason: str, keep: int | None = None) -> Backup:
    """Back up the local library at ``db_path``.

    Args:
        db_path: the library folder.
        reason: ``latest`` (replaces the ``latest`` backup) or a word saying why (``forget``,
            ``daily``...), which makes a dated backup; dated backups beyond ``keep`` are removed,
            oldest first.
        keep: dated backups kept (>= 1); default :data:`KEEP_BACKUPS`.

    Raises:
        LibraryCorruptError: a file of the library no longer matches its recorded SHA-256.
        OSError: the backup folder cannot be written (full disk...).
    """
    library = Path(db_path)
    keep = KEEP_BACKUPS if keep is None else keep
    root = backup_root(library)
    root.mkdir(parents=True, exist_ok=True)
    with locked(library):
        record = read_record(library)
        existing = list_backups(library)
        previous = existing[0].path if existing else None
        if reason == LATEST:
            dest = root / LATEST
        else:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            dest = root / f"{stamp}-{reason}"
            n = 1
            while dest.exists():
                n += 1
                dest = root / f"{stamp}.{n}-{reason}"
        _snapshot(library, dest, previous, record)
    now = time.time()
    os.utime(dest, (now, now))
    if reason != LATEST:
        dated = [b for b in list_backups(library) if b.reason != LATEST]
        for old in dated[max(1, keep) :]:
            shutil.rmtree(old.path, ignore_errors=True)
    return Backup(dest, reason, now)


def newest_dated(db_path: str | Path) -> Backup | None:
    """The newest backup other than ``latest``, or ``None``."""
    return next((b for b in list_backups(db_path) if b.reason != LATEST), None)


def check_backup(backup: Path) -> Record:
    """Verify a backup's files against its integrity record.

    Raises:
        LibraryCorruptError: no record, or a file is missing or damaged.
    """
    record = read_record(backup)
    if record is None:
        raise LibraryCorruptError(f"backup {backup} has no {RECORD_NAME}")
    try:
        damage = verify_files(backup, record)
    except OSError as err:
        raise LibraryCorruptError(f"backup {backup} cannot be read: {err.strerror or err}") from None
    if damage.changed or damage.missing:
        bad = (damage.changed + damage.missing)[0]
        raise LibraryCorruptError(f"backup {backup} is damaged too ({bad})")
    return record


def restore(db_path: str | Path, name: str | None = None) -> tuple[Backup, Path | None]:
    """Replace the library at ``db_path`` with a backup. Stop the engine first.

    Args:
        db_path: the library folder.
        name: the backup folder name (see :func:`list_backups`); ``None`` takes the newest one
            whose files all match its record (``latest`` first).

    Returns:
        The backup restored, and where the replaced library was moved
        (``<db_path>.damaged-<UTC time>``; nothing is deleted), or ``None`` if there was none.

    Raises:
        LibraryError: no backup (of that name), or none intact.
    """
    library = Path(db_path)
    backups = list_backups(library)
    if name is not None:
        backups = [b for b in backups if b.name == name]
        if not backups:
            raise LibraryError(f"no backup called {name!r} in {backup_root(library)}", "not_found")
    if not backups:
        raise LibraryError(f"no backup of the face library in {backup_root(library)}", "not_found")
    errors: list[str] = []
    chosen: Backup | None = None
    for b in backups:
        try:
            check_backup(b.path)
        except LibraryCorruptError as err:
            errors.append(str(err))
            continue
        chosen = b
        break
    if chosen is None:
        raise LibraryError(f"no intact backup in {backup_root(library)}: {'; '.join(errors)}")
    moved: Path | None = None
    if library.exists() or library.is_symlink():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = library.with_name(f"{library.name}.damaged-{stamp}")
        n = 1
        while moved.exists():
            n += 1
            moved = library.with_name(f"{library.name}.damaged-{stamp}.{n}")
        os.replace(library, moved)
    tmp = library.with_name(f".{library.name}.restoring")
    shutil.rmtree(tmp, ignore_errors=True)
    # A real copy, never links: a later damage of the live library must not reach the backup.
    shutil.copytree(chosen.path, tmp)
    with contextlib.suppress(FileNotFoundError):
        (tmp / LOCK_NAME).unlink()
    os.replace(tmp, library)
    _LOG.warning("face library %s restored from backup %s", library, chosen.path)
    return chosen, moved
