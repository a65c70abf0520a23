"""Face library on LanceDB with an in-memory nearest-neighbour index.

Storage: one Lance table, ``faces``, one row per embedding (with its person's id, name and
metadata). Every operation is a single Lance commit (one ``add``, ``update`` or ``delete``), and
a Lance commit is atomic (a new manifest version is written last), so a crash in the middle of an
enrolment leaves the library exactly as it was. The embedding model the library is bound to is
stored in the table's schema metadata.

Schema version 2 (issue 15) adds two nullable columns per embedding: ``yaw`` (the 5-landmark yaw
ratio of the enrolled face, :func:`facetrack.quality.landmark_geometry`; ``float32``) and
``descriptor2`` (the 128-d descriptor of dlib's ResNet, the second opinion the tracker consults
for borderline matches; its model id is in that field's metadata). A version 1 library is migrated
when it is opened: a dated ``migrate`` backup first (local libraries), then one Lance commit that
adds both columns, null for the embeddings already there (a Lance commit is atomic: a crash leaves
the library at version 1, and the next open migrates again). Lance cannot rewrite the table's
schema metadata, so a migrated table keeps ``facetrack.schema_version = 1`` there; the library's
version is the one its columns say (:attr:`FaceLibrary.schema_version`).

Matching never touches the disk: the embeddings live in a ``(N, D) float32`` matrix and a match is
one matrix-vector product (about 0.1 ms at 10k x 128 on one core). Filters sent to LanceDB are
built with ``lancedb.expr`` (typed column/literal expressions), never by string formatting, and
names are never part of a filter.

Shared libraries (scale-out, ``docs/scale-out.md``): ``db_path`` may be an object-store URI
(``s3://bucket/path``) with ``storage_options`` for LanceDB's object store (endpoint, region,
keys). Several processes may then read and write one library: a Lance commit writes the next
version's manifest with a conditional put (``If-None-Match: *``, S3 since 2024, MinIO), so of two
concurrent commits one wins and the other is retried on top of it (appends) or fails with a
conflict; no commit overwrites another. Each process matches against its own in-memory index:
:meth:`FaceLibrary.refresh` brings it up to date (one listing of the version manifests when
nothing changed), and every write refreshes first, so a name taken by another instance is seen.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from facetrack.errors import LibraryError, ModelMismatchError
from facetrack.inference.base import FloatArray
from facetrack.inference.dlib_resnet import DIM as SECOND_DIM
from facetrack.inference.dlib_resnet import MODEL_ID as SECOND_MODEL_ID
from facetrack.library import backup as _backup
from facetrack.library import integrity as _integrity
from facetrack.library.integrity import LibraryCorruptError
from facetrack.library.names import clean_name, name_key
from facetrack.objectstore import is_uri
from facetrack.objectstore import scrub as _scrub
from facetrack.pose import pose_bin

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import pyarrow as pa
    from lancedb.expr import Expr
    from lancedb.table import Table

# LanceDB and pyarrow (about 2 s of imports) are imported where a library is opened or written, not
# here: the recogniser and the CLI's ``detect``/``verify`` import this module without opening one.

_LOG = logging.getLogger(__name__)
#: Compact the table every N writes: merge data files, and drop versions older than 10 s (a
#: bulk enrolment would otherwise keep every rewrite; readers always check out the latest version).
COMPACT_EVERY = 50

TABLE = "faces"
SCHEMA_VERSION = "2"
_META_MODEL = b"facetrack.model_id"
_META_DIM = b"facetrack.embedding_dim"
_META_VERSION = b"facetrack.schema_version"
#: Metadata of the ``descriptor2`` field: the model that computed the second descriptors.
_META_SECOND_MODEL = b"facetrack.model_id"
#: Columns the in-memory index reads (never the crops).
_INDEX_COLUMNS = [
    "embedding_id",
    "person_id",
    "name",
    "metadata",
    "vector",
    "created_at",
    "yaw",
    "source",
    "descriptor2",
]
#: Pose key of :attr:`Person.poses` for embeddings without a recorded yaw (enrolled before v2).
UNKNOWN_POSE = "unknown"


@dataclass(frozen=True, slots=True)
class Person:
    """A person of the library.

    Attributes:
        person_id: 32 hex characters, stable across renames.
        name: display name, unique in the library.
        metadata: free JSON-serialisable attributes given at enrolment.
        embedding_count: number of embeddings enrolled.
        created_at: epoch seconds of the first enrolment.
        poses: embeddings per head-pose bin (:data:`facetrack.pose.POSE_BINS` keys, plus
            ``"unknown"`` for embeddings enrolled before poses were recorded).
    """

    person_id: str
    name: str
    metadata: dict[str, Any]
    embedding_count: int
    created_at: float
    poses: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict (``facetrack list``)."""
        return {
            "person_id": self.person_id,
            "name": self.name,
            "metadata": self.metadata,
            "embeddings": self.embedding_count,
            "created_at": self.created_at,
            "poses": dict(self.poses),
        }


@dataclass(frozen=True, slots=True)
class EmbeddingRecord:
    """One enrolled embedding: its id, owner, source (file path or ``camera/track``) and JPEG crop."""

    embedding_id: str
    person_id: str
    source: str
    created_at: float
    crop_jpeg: bytes = field(repr=False)


class EmbeddingInfo(NamedTuple):
    """What the in-memory index knows of one embedding: its id, source and yaw ratio (``None``:
    not recorded)."""

    embedding_id: str
    source: str
    yaw: float | None


@dataclass(frozen=True, slots=True)
class Match:
    """Nearest enrolled embedding to a probe.

    Attributes:
        person_id / name: the owner of the nearest embedding, or ``None`` below the threshold.
        similarity: cosine similarity to the nearest embedding, ``[-1, 1]`` (reported even when
            below the threshold).
        embedding_id: id of the nearest embedding (``None`` for an empty library).
    """

    person_id: str | None
    name: str | None
    similarity: float
    embedding_id: str | None


class _Row(NamedTuple):
    embedding_id: str
    person_id: str
    name: str
    metadata: str | None
    created_at: float
    yaw: float | None
    source: str


class _Index(NamedTuple):
    matrix: FloatArray  # (N, D) float32
    ids: npt.NDArray[np.object_]
    person_ids: npt.NDArray[np.object_]
    persons: dict[str, Person]
    rows: list[_Row]
    second: FloatArray  # (N, 128) float32, rows of NaN where no second descriptor was stored
    second_by_person: dict[str, FloatArray]  # person_id -> (M, 128) float32, stored rows only


def _normalise_name(name: str) -> str:
    # Look-ups only (lenient: a name stored before names.clean_name existed stays reachable);
    # a new or renamed person's name goes through clean_name (library/names.py).
    return name_key(name)


def _equals(column: str, value: str) -> Expr:
    """``column == value`` as a typed LanceDB filter expression (never a formatted string)."""
    from lancedb.expr import col, lit

    return col(column) == lit(value)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _missing_text(damage: _integrity.Damage, record: _integrity.Record | None, table_dir: Path) -> str:
    if not table_dir.exists():
        return f"its table folder {table_dir.name} is missing"
    if record is not None and len(damage.missing) == len(record.files):
        return f"none of its files is left in {table_dir.name} (the folder was replaced)"
    more = f" and {len(damage.missing) - 1} more" if len(damage.missing) > 1 else ""
    return f"{damage.missing[0]}{more} is missing"


def _lance_reason(err: BaseException) -> str:
    """A Lance error's gist for a user: no ``lance error: LanceError(IO):`` prefix, no Rust source path."""
    text = re.sub(r",?\s*/\S+\.rs:\d+:\d+", "", _first_line(err))
    text = re.sub(r"^(lance error:\s*)?(LanceError\(\w+\):\s*)?", "", text, flags=re.IGNORECASE)
    return f"Lance cannot read it ({text.strip() or type(err).__name__})"


def _fixed_list_matrix(column: pa.ChunkedArray, dim: int) -> FloatArray:
    """``(N, dim) float32`` from a nullable fixed-size-list column; null rows become NaN rows."""
    n = len(column)
    out = np.full((n, dim), np.nan, dtype=np.float32)
    if n in (0, column.null_count):
        return out
    arr = column.combine_chunks()
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    flat = arr.values.to_numpy(zero_copy_only=False)  # the child values of every row, nulls included
    start = arr.offset * dim
    out[valid] = np.asarray(flat[start : start + n * dim], dtype=np.float32).reshape(n, dim)[valid]
    return out


def _clean_yaws(yaws: Sequence[float | None] | None, n: int) -> list[float | None]:
    if yaws is None:
        return [None] * n
    if len(yaws) != n:
        raise LibraryError(f"expected {n} yaws, got {len(yaws)}")
    out: list[float | None] = []
    for y in yaws:
        if y is None or not np.isfinite(y):
            out.append(None)
        else:
            out.append(float(y))
    return out


def _clean_second(descriptors2: FloatArray | None, n: int) -> FloatArray:
    """``(n, 128) float32`` with NaN rows where there is no descriptor (a copy)."""
    if descriptors2 is None:
        return np.full((n, SECOND_DIM), np.nan, dtype=np.float32)
    d2 = np.array(descriptors2, dtype=np.float32, copy=True)
    if d2.ndim != 2 or d2.shape != (n, SECOND_DIM):
        raise LibraryError(f"expected ({n}, {SECOND_DIM}) second descriptors, got {d2.shape}")
    partial = np.isnan(d2).any(axis=1) & ~np.isnan(d2).all(axis=1)
    if partial.any() or np.isinf(d2).any():
        raise LibraryError("second descriptors must be finite rows or rows of NaN")
    return d2


class FaceLibrary:
    """Persons and their embeddings, bound to one embedding model.

    Args:
        db_path: LanceDB directory (created if missing), e.g. ``faces.lance``, or an object-store
            URI ``s3://bucket/path`` (the bucket must exist).
        model_id: embedding model of the backend in use (``InferenceBackend.model_id``).
        embedding_dim: ``D`` of that model.
        storage_options: LanceDB / ``object_store`` options for a URI (``aws_endpoint``,
            ``aws_region``, ``aws_access_key_id``, ``aws_secret_access_key``, ``allow_http``...);
            ``None`` uses the ``AWS_*`` environment variables. Secret values never appear in the
            errors raised.
        on_change: called as ``on_change(operation, version)`` after each write this object
            commits (``enroll``, ``rename``, ``forget``, ``delete_embedding``; the table version
            after the commit), e.g. to tell other instances. Exceptions it raises are logged.

    Raises:
        ModelMismatchError: the library at ``db_path`` was built with another model.
        LibraryError: ``db_path`` exists but is not a FaceTrack library, or the object store
            cannot be reached (missing bucket, refused credentials, no connection).

    Thread-safe: writes are serialised and the index is swapped atomically; :meth:`match` never
    waits for the disk or the network.
    """

    def __init__(
        self,
        db_path: str | Path,
        model_id: str,
        embedding_dim: int,
        storage_options: Mapping[str, str] | None = None,
        on_change: Callable[[str, int], None] | None = None,
    ) -> None:
        self.db_path = str(db_path)
        self.model_id = model_id
        self.embedding_dim = int(embedding_dim)
        self.on_change = on_change
        self._lock = threading.RLock()
        self._remote = is_uri(self.db_path)
        options = {str(k): str(v) for k, v in (storage_options or {}).items()}
        self._secrets = [v for k, v in options.items() if "secret" in k or "token" in k or "key_id" in k]
        import pyarrow as pa

        self._schema = pa.schema(
            [
                pa.field("embedding_id", pa.string(), nullable=False),
                pa.field("person_id", pa.string(), nullable=False),
                pa.field("name", pa.string(), nullable=False),
                pa.field("metadata", pa.string()),
                pa.field("vector", pa.list_(pa.float32(), self.embedding_dim), nullable=False),
                pa.field("crop", pa.binary()),
                pa.field("source", pa.string()),
                pa.field("created_at", pa.float64()),
                *self._v2_fields(),
            ],
            metadata={
                _META_MODEL: model_id.encode(),
                _META_DIM: str(self.embedding_dim).encode(),
                _META_VERSION: SCHEMA_VERSION.encode(),
            },
        )
        if self._remote:
            try:
                self._table = self._open_remote(options)
            except (OSError, RuntimeError, ValueError) as err:
                raise LibraryError(self._remote_error("cannot open the face library", err)) from None
        else:
            self._table = self._open_local(Path(self.db_path))
        self._migrate()
        self._version = -1
        self._writes = 0
        if self._remote:
            self._load_index()
        else:
            self._local_read(self._load_index)
            self._daily_backup()

    @staticmethod
    def _v2_fields() -> list[pa.Field]:
        """The columns schema version 2 added (nullable: null for embeddings enrolled before)."""
        import pyarrow as pa

        return [
            pa.field("yaw", pa.float32()),
            pa.field(
                "descriptor2",
                pa.list_(pa.float32(), SECOND_DIM),
                metadata={_META_SECOND_MODEL: SECOND_MODEL_ID.encode()},
            ),
        ]

    @property
    def schema_version(self) -> str:
        """``"2"`` once the table has the ``yaw`` and ``descriptor2`` columns (always, after open)."""
        names = set(self._table.schema.names)
        return SCHEMA_VERSION if {"yaw", "descriptor2"} <= names else "1"

    @property
    def second_model_id(self) -> str:
        """Model id of the stored second descriptors (``"dlib_resnet_v1"``)."""
        meta: dict[bytes, bytes] = self._table.schema.field("descriptor2").metadata or {}
        return meta.get(_META_SECOND_MODEL, SECOND_MODEL_ID.encode()).decode()

    def _migrate(self) -> None:
        """Bring a version 1 table to version 2: add ``yaw`` and ``descriptor2`` (all null).

        One Lance commit, so never half done; a local library gets a dated ``migrate`` backup
        first (restorable with ``facetrack restore-library``). Another instance migrating a
        shared library at the same moment is fine: one commit wins, the other sees its columns.

        Raises:
            LibraryError: the commit failed (nothing was written; e.g. a read-only library).
        """
        import pyarrow as pa

        names = set(self._table.schema.names)
        if {"yaw", "descriptor2"} <= names:
            return
        if names & {"yaw", "descriptor2"}:
            raise LibraryError(f"the face library at {self.db_path} has only part of the schema version 2 columns")
        stored = (self._table.schema.metadata or {}).get(_META_VERSION, b"?").decode()
        _LOG.warning(
            "face library %s: migrating from schema version %s to %s (yaw and second descriptor columns)",
            _scrub(self.db_path, self._secrets),
            stored,
            SCHEMA_VERSION,
        )
        self._before_destructive("migrate")
        fields = pa.schema(self._v2_fields())
        try:
            self._write(lambda: self._table.add_columns(fields))
        except OSError as err:  # local only (a read-only folder, a full disk): nothing was committed
            raise LibraryError(
                f"cannot migrate the face library at {self.db_path} to schema version {SCHEMA_VERSION}: "
                f"{err.strerror or type(err).__name__}; give the engine write access to it"
            ) from None
        except LibraryError:
            self._table.checkout_latest()  # type: ignore[no-untyped-call]
            if not {"yaw", "descriptor2"} <= set(self._table.schema.names):  # not another instance's
                raise

    # ---- local library: damage checks and backups (integrity.py, backup.py) ------------------

    def _corrupt(self, what: str) -> LibraryCorruptError:
        """The one-line error for a damaged local library: what is wrong and how to restore it."""
        what = " ".join(what.split())[:300]
        if _backup.list_backups(self.db_path):
            fix = (
                f"stop FaceTrack and restore the newest automatic backup with "
                f"`{_backup.restore_command(self.db_path)}` (backups in {_backup.backup_root(self.db_path)})"
            )
        else:
            fix = "there is no automatic backup of it: move the folder away and enrol the people again"
        return LibraryCorruptError(f"the face library at {self.db_path} is damaged: {what}; {fix}")

    def _unreadable(self, err: OSError) -> LibraryCorruptError:
        where = err.filename or self.db_path
        return LibraryCorruptError(
            f"the face library at {self.db_path} cannot be read ({err.strerror or type(err).__name__}: {where}); "
            "give the engine's user access to the folder and its files, "
            f"or restore a backup with `{_backup.restore_command(self.db_path)}`"
        )

    def _local_read[T](self, read: Callable[[], T]) -> T:
        """Run a read of the local table; Lance/IO errors become a one-line LibraryCorruptError."""
        try:
            return read()
        except PermissionError as err:
            raise self._unreadable(err) from None
        except (OSError, RuntimeError, ValueError) as err:  # Lance reports damage as these
            raise self._corrupt(_lance_reason(err)) from None

    def _open_local(self, path: Path) -> Table:
        """Open (or create) the local library, checking it against its integrity record.

        Raises:
            LibraryCorruptError: the table or its record is damaged, missing or unreadable.
        """
        if path.exists() and not path.is_dir():
            raise LibraryError(f"{self.db_path} is a file, not a face library directory")
        try:
            record = _integrity.read_record(path) if path.is_dir() else None
            # The files first: a damaged file is named before Lance trips over it.
            damage = _integrity.verify_files(path, record) if record is not None else _integrity.Damage([], [])
            import lancedb

            self._db = lancedb.connect(self.db_path)
            tables = self._db.list_tables().tables
        except LibraryCorruptError as err:
            raise self._corrupt(str(err)) from None
        except PermissionError as err:
            raise self._unreadable(err) from None
        except (OSError, RuntimeError, ValueError) as err:
            raise self._corrupt(_lance_reason(err)) from None
        if damage.changed:
            more = f" and {len(damage.changed) - 1} more" if len(damage.changed) > 1 else ""
            raise self._corrupt(f"{damage.changed[0]}{more} changed since it was written")
        table_dir = path / f"{TABLE}.lance"
        if TABLE not in tables:
            if record is not None or table_dir.exists():
                what = f"its table folder {table_dir.name} is {'unreadable' if table_dir.exists() else 'missing'}"
                raise self._corrupt(_missing_text(damage, record, table_dir) if damage.missing else what)
            if path.exists() and any(path.iterdir()):
                raise LibraryError(f"{self.db_path} exists but holds no FaceTrack face library")
            table = self._db.create_table(TABLE, schema=self._schema)
            self._record(table.version)
            return table
        try:
            table = self._db.open_table(TABLE)
            schema, version = table.schema, int(table.version)
        except PermissionError as err:
            raise self._unreadable(err) from None
        except (OSError, RuntimeError, ValueError) as err:
            what = _missing_text(damage, record, table_dir) if damage.missing else _lance_reason(err)
            raise self._corrupt(what) from None
        self._check_model(schema)
        self._verify(table, version, record, damage)
        return table

    def _verify(self, table: Table, version: int, record: _integrity.Record | None, damage: _integrity.Damage) -> None:
        if record is None:  # a library from before integrity records: trust what is there now
            self._local_read(table.to_arrow)
            self._record(version)
            return
        if version < record.version:
            raise self._corrupt(
                f"its newest version {record.version} is missing (version {version} found): a version "
                f"manifest in {TABLE}.lance/_versions was deleted or damaged"
            )
        if damage.missing:
            # Files of old versions removed by a compaction interrupted before the record was
            # updated are harmless; a file the current version needs fails this full read.
            try:
                table.to_arrow()
            except (OSError, RuntimeError, ValueError):
                raise self._corrupt(f"{damage.missing[0]} is missing") from None
            _LOG.info("face library: %d files of old versions are gone (compaction)", len(damage.missing))
        if damage.missing or version > record.version:
            self._record(version)

    def _record(self, version: int) -> None:
        """Record the committed version and its files (the damage check of the next open).

        Never raises: the commit is done; a record that lags is caught up at the next open."""
        try:
            with _integrity.locked(Path(self.db_path)):
                _integrity.update_record(Path(self.db_path), TABLE, version)
        except (OSError, LibraryError) as err:
            _LOG.warning("face library %s: cannot update the integrity record: %s", self.db_path, err)

    def _take_backup(self, reason: str) -> None:
        """A backup (``latest`` after a commit, or a dated one); a failure is logged, never raised,
        except damage found in the live files before a destructive operation (which must not run
        on a damaged library; after a commit the write is done and the damage only logged)."""
        try:
            _backup.take_backup(self.db_path, reason)
        except LibraryCorruptError as err:
            if reason != _backup.LATEST:
                raise self._corrupt(str(err)) from None
            _LOG.error("%s", self._corrupt(str(err)))
        except (OSError, LibraryError) as err:
            _LOG.warning("face library %s: backup (%s) failed: %s", self.db_path, reason, err)

    def _daily_backup(self) -> None:
        newest = _backup.newest_dated(self.db_path)
        if newest is None or time.time() - newest.created >= _backup.DAILY_SECONDS:
            self._take_backup("daily")

    def _before_destructive(self, operation: str) -> None:
        """A dated backup before an operation that removes or overwrites data."""
        if not self._remote:
            self._take_backup(operation)

    # ---- object store -----------------------------------------------------------------------

    def _open_remote(self, options: dict[str, str]) -> Table:
        import lancedb

        self._db = lancedb.connect(self.db_path, storage_options=options or None)
        tables = self._db.list_tables().tables
        if TABLE not in tables:
            if tables:
                raise LibraryError(f"{self.db_path} holds other tables but no FaceTrack face library")
            try:
                table = self._db.create_table(TABLE, schema=self._schema)
            except (OSError, RuntimeError, ValueError):
                # Another instance created it at the same moment (its commit won): open theirs.
                if TABLE not in self._db.list_tables().tables:
                    raise
                table = self._db.open_table(TABLE)
            else:
                return table
        else:
            table = self._db.open_table(TABLE)
        self._check_model(table.schema)
        return table

    def _remote_error(self, what: str, err: BaseException) -> str:
        # Object-store errors are long (retry state, XML bodies): keep the first line, no secrets.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "NoSuchBucket" in str(err):
            first = "the bucket does not exist"
        elif "InvalidAccessKeyId" in str(err) or "SignatureDoesNotMatch" in str(err):
            first = "the object store refused the credentials"
        elif "Connect" in str(err) and "tcp connect error" in str(err):
            first = "cannot connect to the object store endpoint"
        return _scrub(f"{what} at {self.db_path}: {first[:300]}", self._secrets)

    # ---- model binding -------------------------------------------------------------------

    def _check_model(self, schema: pa.Schema) -> None:
        meta = schema.metadata or {}
        stored = meta.get(_META_MODEL, b"").decode() or None
        if stored is None:
            raise LibraryError(f"{self.db_path} is not a FaceTrack face library (no model_id recorded)")
        if stored != self.model_id:
            raise ModelMismatchError(
                f"the face library at {self.db_path} was built with the embedding model {stored!r}, "
                f"but the backend computes {self.model_id!r} embeddings; embeddings of different models "
                "cannot be compared. Use the backend that built it, or enrol the people again into a "
                "new library (another db_path)."
            )

    # ---- index ---------------------------------------------------------------------------

    def _load_index(self) -> None:
        """Read ids, names and vectors (never the crops) from disk and rebuild the index."""
        arrow = self._table.search().select(_INDEX_COLUMNS).limit(None).to_arrow()
        n = arrow.num_rows
        if n:
            flat = arrow.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            matrix = np.ascontiguousarray(flat, dtype=np.float32).reshape(n, self.embedding_dim)
        else:
            matrix = np.zeros((0, self.embedding_dim), dtype=np.float32)
        second = _fixed_list_matrix(arrow.column("descriptor2"), SECOND_DIM)
        rows = [
            _Row(*r)
            for r in zip(
                arrow.column("embedding_id").to_pylist(),
                arrow.column("person_id").to_pylist(),
                arrow.column("name").to_pylist(),
                arrow.column("metadata").to_pylist(),
                arrow.column("created_at").to_pylist(),
                arrow.column("yaw").to_pylist(),
                [s or "" for s in arrow.column("source").to_pylist()],
                strict=True,
            )
        ]
        self._set_index(matrix, rows, second)
        self._version = self._table.version

    def _set_index(self, matrix: FloatArray, rows: list[_Row], second: FloatArray) -> None:
        persons: dict[str, dict[str, Any]] = {}
        stored = ~np.isnan(second).any(axis=1) if second.shape[0] else np.zeros(0, dtype=bool)
        described: dict[str, list[int]] = {}  # person_id -> rows with a second descriptor
        for i, r in enumerate(rows):
            if stored[i]:
                described.setdefault(r.person_id, []).append(i)
            p = persons.setdefault(
                r.person_id,
                {
                    "name": r.name,
                    "meta": r.metadata,
                    "newest": r.created_at,
                    "count": 0,
                    "created": r.created_at,
                    "poses": {},
                },
            )
            p["count"] += 1
            pose = UNKNOWN_POSE if r.yaw is None else pose_bin(r.yaw)
            p["poses"][pose] = p["poses"].get(pose, 0) + 1
            p["created"] = min(p["created"], r.created_at)
            if r.created_at >= p["newest"]:
                p["newest"], p["meta"] = r.created_at, r.metadata
        person_ids = np.array([r.person_id for r in rows], dtype=object)
        by_person: dict[str, FloatArray] = {pid: second[sel] for pid, sel in described.items()}
        # Swap everything at once so a concurrent match never sees a half-built index.
        self._index = _Index(
            matrix,
            np.array([r.embedding_id for r in rows], dtype=object),
            person_ids,
            {
                pid: Person(pid, p["name"], json.loads(p["meta"] or "{}"), p["count"], p["created"], p["poses"])
                for pid, p in persons.items()
            },
            rows,
            second,
            by_person,
        )

    def _commit(self, matrix: FloatArray, rows: list[_Row], second: FloatArray) -> None:
        """Apply a committed write to the in-memory index and compact now and then.

        The index is updated in memory (no re-read of the table) unless another process wrote in
        between, which shows as a version jump of more than one.
        """
        if self._table.version == self._version + 1:
            self._set_index(matrix, rows, second)
            self._version = self._table.version
        else:
            self._load_index()
        self._writes += 1
        if self._writes % COMPACT_EVERY == 0:
            # Each commit adds a data file; compaction keeps opening and scanning fast.
            try:
                if self._remote:
                    self._table.optimize(cleanup_older_than=timedelta(seconds=10))
                else:
                    self._before_destructive("compact")  # cleanup removes old versions
                    with _integrity.locked(Path(self.db_path)):
                        self._table.optimize(cleanup_older_than=timedelta(seconds=10))
                    self._record(self._table.version)
                    self._take_backup(_backup.LATEST)
            except Exception as err:  # compaction is an optimisation: never fail a write for it
                # Two instances compacting a shared library at once: one loses (a commit conflict).
                _LOG.warning("face library compaction failed: %s", _scrub(str(err)[:300], self._secrets))
            self._version = self._table.version

    def _write(self, operation: Callable[[], Any]) -> None:
        """Run one table commit; an object-store failure becomes a LibraryError (nothing written).

        Local: OSError (a full disk) is raised as it is, a Lance error as a LibraryError. After
        the commit the integrity record and the ``latest`` backup are brought up to date, and a
        ``daily`` backup is taken first when the newest is a day old."""
        if not self._remote:
            self._daily_backup()
            path = Path(self.db_path)
            with _integrity.locked(path):
                try:
                    operation()
                except (RuntimeError, ValueError) as err:
                    raise LibraryError(f"cannot write the face library at {self.db_path}: {_first_line(err)}") from None
            self._record(self._table.version)
            self._take_backup(_backup.LATEST)
            return
        try:
            operation()
        except (OSError, RuntimeError, ValueError) as err:
            raise LibraryError(self._remote_error("cannot write the face library", err)) from None

    def _changed(self, operation: str, version: int) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(operation, version)
        except Exception:  # telling others must never undo or fail a committed write
            _LOG.exception("face library change callback failed")

    @property
    def version(self) -> int:
        """The Lance table version the in-memory index reflects (grows with every commit)."""
        return self._version

    def refresh(self) -> bool:
        """Reload the index if another process or instance changed the library.

        Cost when nothing changed: one check of the latest version (a listing of the version
        manifests; a few milliseconds on S3). The index is rebuilt only when the version moved.

        Returns:
            True when the index was reloaded.

        Raises:
            LibraryError: the object store cannot be reached (the index is left as it was).
        """
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        if not self._remote:
            self._local_read(self._table.checkout_latest)
            if self._table.version == self._version:
                return False
            if self._table.version < self._version:  # never roll back silently
                raise self._corrupt(
                    f"its version went back from {self._version} to {self._table.version}: a version "
                    f"manifest in {TABLE}.lance/_versions was deleted"
                )
            self._local_read(self._load_index)
            return True
        try:
            self._table.checkout_latest()  # type: ignore[no-untyped-call]
            if self._table.version == self._version:
                return False
            self._load_index()
        except (OSError, RuntimeError, ValueError) as err:
            raise LibraryError(self._remote_error("cannot refresh the face library", err)) from None
        return True

    def __len__(self) -> int:
        """Number of enrolled embeddings."""
        return int(self._index.matrix.shape[0])

    # ---- queries ---------------------------------------------------------------------------

    def persons(self) -> list[Person]:
        """All persons, sorted by name."""
        return sorted(self._index.persons.values(), key=lambda p: p.name.casefold())

    def person(self, name: str) -> Person | None:
        """The person called ``name`` (NFC and whitespace-normalised, exact), or ``None``."""
        clean = _normalise_name(name)
        return next((p for p in self._index.persons.values() if name_key(p.name) == clean), None)

    def person_by_id(self, person_id: str) -> Person | None:
        """The person with ``person_id``, or ``None``."""
        return self._index.persons.get(person_id)

    def embedding_owner(self, embedding_id: str) -> Person | None:
        """The person an embedding belongs to, or ``None`` if no embedding has that id."""
        idx = self._index
        hit = np.flatnonzero(idx.ids == embedding_id)
        return idx.persons.get(str(idx.person_ids[hit[0]])) if hit.size else None

    def embeddings(self, name: str) -> list[EmbeddingRecord]:
        """The embeddings (with JPEG crops) of the person called ``name``.

        Raises:
            LibraryError: no such person.
        """
        person = self._require(name)
        query = (
            self._table.search()
            .where(_equals("person_id", person.person_id))
            .select(["embedding_id", "person_id", "source", "created_at", "crop"])
            .limit(None)
        )
        rows = query.to_arrow().to_pylist() if self._remote else self._local_read(query.to_arrow).to_pylist()
        return sorted(
            (
                EmbeddingRecord(r["embedding_id"], r["person_id"], r["source"] or "", r["created_at"], r["crop"] or b"")
                for r in rows
            ),
            key=lambda e: e.created_at,
        )

    def second_descriptors(self, person_id: str) -> FloatArray:
        """The stored second descriptors of a person (from memory; no disk access).

        Returns:
            ``(M, 128) float32`` descriptors of :attr:`second_model_id` (dlib's ResNet: compare by
            Euclidean distance), one per embedding that has one (embeddings enrolled before
            schema version 2 or without dlib have none); ``(0, 128)`` for an unknown person.
        """
        found = self._index.second_by_person.get(person_id)
        return found if found is not None else np.zeros((0, SECOND_DIM), dtype=np.float32)

    def embedding_yaws(self, person_id: str) -> list[float | None]:
        """The recorded yaw ratio of each of a person's embeddings (``None``: not recorded)."""
        return [r.yaw for r in self._index.rows if r.person_id == person_id]

    def embedding_infos(self, person_id: str) -> list[EmbeddingInfo]:
        """Id, source and yaw of each of a person's embeddings, from memory (enrolment order)."""
        return [EmbeddingInfo(r.embedding_id, r.source, r.yaw) for r in self._index.rows if r.person_id == person_id]

    def match(self, probes: FloatArray, threshold: float) -> list[Match]:
        """Nearest-neighbour identification by cosine similarity.

        Args:
            probes: ``(N, D)`` or ``(D,)`` float32, L2-normalised embeddings.
            threshold: cosine similarity at or above which the nearest person is accepted.

        Returns:
            One :class:`Match` per probe; ``person_id``/``name`` are ``None`` below ``threshold``.
        """
        idx = self._index  # one read: a concurrent swap never mixes two indexes
        matrix, ids, pids, persons = idx.matrix, idx.ids, idx.person_ids, idx.persons
        q = np.atleast_2d(np.asarray(probes, dtype=np.float32))
        if q.shape[1] != self.embedding_dim:
            raise ValueError(f"probe dimension {q.shape[1]} != library dimension {self.embedding_dim}")
        if matrix.shape[0] == 0:
            return [Match(None, None, 0.0, None) for _ in range(q.shape[0])]
        sims = q @ matrix.T
        best = np.argmax(sims, axis=1)
        out = []
        for i, j in enumerate(best):
            sim = float(sims[i, j])
            pid = str(pids[j])
            if sim >= threshold:
                out.append(Match(pid, persons[pid].name, sim, str(ids[j])))
            else:
                out.append(Match(None, None, sim, str(ids[j])))
        return out

    # ---- writes ----------------------------------------------------------------------------

    def _require(self, name: str) -> Person:
        person = self.person(name)
        if person is None:
            raise LibraryError(f"no person called {_normalise_name(name)!r} in the face library", "not_found")
        return person

    def enroll(
        self,
        name: str,
        embeddings: FloatArray,
        crops_jpeg: Sequence[bytes],
        sources: Sequence[str],
        metadata: Mapping[str, Any] | None = None,
        yaws: Sequence[float | None] | None = None,
        descriptors2: FloatArray | None = None,
    ) -> Person:
        """Add embeddings to the person ``name`` (created if new) in one atomic commit.

        Args:
            name: display name; whitespace is normalised.
            embeddings: ``(N, D) float32``, L2-normalised, ``N >= 1``.
            crops_jpeg: N JPEG-encoded aligned face crops.
            sources: N source descriptions (file path, ``camera/track_id``...).
            metadata: optional JSON-serialisable attributes; replaces the person's metadata
                when given.
            yaws: N yaw ratios of the enrolled faces (:func:`facetrack.quality.landmark_geometry`),
                ``None`` (or NaN) where unknown; ``None`` for all unknown.
            descriptors2: ``(N, 128) float32`` second descriptors (:data:`SECOND_MODEL_ID`), a row
                of NaN where there is none; ``None`` for none at all.

        Raises:
            LibraryError: bad name (``names.InvalidNameError``), empty or mis-shaped embeddings,
                yaws or descriptors, unserialisable metadata.
        """
        clean = clean_name(name).name
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        n = emb.shape[0]
        if n == 0 or emb.shape[1] != self.embedding_dim:
            raise LibraryError(f"expected (N>=1, {self.embedding_dim}) embeddings, got {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise LibraryError("embeddings contain NaN or infinity")
        if len(crops_jpeg) != n or len(sources) != n:
            raise LibraryError("embeddings, crops and sources must have the same length")
        yaw_list = _clean_yaws(yaws, n)
        second = _clean_second(descriptors2, n)
        second_valid = ~np.isnan(second).any(axis=1)
        with self._lock:
            self._refresh_locked()  # another instance may have enrolled this name meanwhile
            existing = self.person(clean)
            pid = existing.person_id if existing else uuid.uuid4().hex
            meta = dict(metadata) if metadata is not None else (existing.metadata if existing else {})
            try:
                meta_json = json.dumps(meta, sort_keys=True)
            except (TypeError, ValueError) as err:
                raise LibraryError(f"person metadata is not JSON-serialisable: {err}") from err
            now = time.time()
            import pyarrow as pa

            rows = pa.table(
                {
                    "embedding_id": [uuid.uuid4().hex for _ in range(n)],
                    "person_id": [pid] * n,
                    "name": [clean] * n,
                    "metadata": [meta_json] * n,
                    "vector": pa.FixedSizeListArray.from_arrays(
                        pa.array(emb.reshape(-1), pa.float32()), self.embedding_dim
                    ),
                    "crop": [bytes(c) for c in crops_jpeg],
                    "source": [str(s) for s in sources],
                    "created_at": [now] * n,
                    "yaw": pa.array(yaw_list, pa.float32()),
                    "descriptor2": pa.FixedSizeListArray.from_arrays(
                        pa.array(np.nan_to_num(second).reshape(-1), pa.float32()),
                        SECOND_DIM,
                        mask=pa.array(~second_valid),
                    ),
                },
                schema=self._schema,
            )
            # One commit: all of the enrolment or none of it. New metadata rides on the new rows
            # (the newest row's metadata is the person's), so no second commit is needed.
            self._write(lambda: self._table.add(rows))
            idx = self._index
            new_rows = [
                _Row(e, pid, clean, meta_json, now, y, str(src))
                for e, y, src in zip(
                    rows.column("embedding_id").to_pylist(), rows.column("yaw").to_pylist(), sources, strict=True
                )
            ]
            second[~second_valid] = np.nan
            self._commit(np.concatenate([idx.matrix, emb]), idx.rows + new_rows, np.concatenate([idx.second, second]))
            person = self.person_by_id(pid)
            assert person is not None
            version = self._version
        self._changed("enroll", version)
        return person

    def rename(self, old: str, new: str) -> Person:
        """Rename a person (one commit).

        Raises:
            LibraryError: no person ``old``, or ``new`` is already taken by another person.
        """
        clean_new = clean_name(new).name
        with self._lock:
            self._refresh_locked()
            person = self._require(old)
            other = self.person(clean_new)
            if other is not None and other.person_id != person.person_id:
                raise LibraryError(f"a person called {clean_new!r} already exists")
            self._before_destructive("rename")
            where = _equals("person_id", person.person_id)
            self._write(lambda: self._table.update(where=where, values={"name": clean_new}))
            idx = self._index
            self._commit(
                idx.matrix,
                [r._replace(name=clean_new) if r.person_id == person.person_id else r for r in idx.rows],
                idx.second,
            )
            renamed = self.person_by_id(person.person_id)
            assert renamed is not None
            version = self._version
        self._changed("rename", version)
        return renamed

    def forget(self, name: str) -> int:
        """Remove a person and all their embeddings (one commit); returns how many embeddings.

        Raises:
            LibraryError: no such person.
        """
        with self._lock:
            self._refresh_locked()
            person = self._require(name)
            self._before_destructive("forget")
            self._write(lambda: self._table.delete(_equals("person_id", person.person_id)))
            idx = self._index
            keep = idx.person_ids != person.person_id
            self._commit(idx.matrix[keep], [r for r, k in zip(idx.rows, keep, strict=True) if k], idx.second[keep])
            version = self._version
        self._changed("forget", version)
        return person.embedding_count

    def delete_embedding(self, embedding_id: str) -> Person | None:
        """Remove one embedding (e.g. a wrong face: "this was not Bob").

        Returns:
            The owner as it is now, or ``None`` if that was their last embedding (the person is
            then gone from the library).

        Raises:
            LibraryError: no embedding with that id.
        """
        with self._lock:
            self._refresh_locked()
            idx = self._index
            keep = idx.ids != embedding_id
            if keep.all():
                raise LibraryError(f"no embedding with id {embedding_id!r}", "not_found")
            pid = str(idx.person_ids[~keep][0])
            self._before_destructive("delete_embedding")
            self._write(lambda: self._table.delete(_equals("embedding_id", str(embedding_id))))
            self._commit(idx.matrix[keep], [r for r, k in zip(idx.rows, keep, strict=True) if k], idx.second[keep])
            owner = self.person_by_id(pid)
            version = self._version
        self._changed("delete_embedding", version)
        return owner
