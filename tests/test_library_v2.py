"""Face library schema version 2 (issue 15): per-embedding yaw and second (dlib ResNet) descriptor,
pose counts per person, and the migration of a version 1 library."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from facetrack.errors import LibraryError
from facetrack.library import FaceLibrary, integrity
from facetrack.library import backup as lib_backup
from facetrack.library.store import SECOND_MODEL_ID, UNKNOWN_POSE
from test_scaleout import _options, bucket  # noqa: F401 - bucket is a fixture
from test_storage import moto_endpoint  # noqa: F401 - moto_endpoint is a fixture

D = 128


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _desc(rng: np.random.Generator, n: int) -> np.ndarray:
    return (0.1 * rng.standard_normal((n, 128))).astype(np.float32)


def _build_v1(path: Path | str, rows: dict[str, np.ndarray], storage_options: dict[str, str] | None = None) -> None:
    """A library exactly as the schema version 1 code wrote it (its schema, metadata and, local,
    integrity record and ``latest`` backup); checked against the v1 code of main (commit c3e9538)."""
    schema = pa.schema(
        [
            pa.field("embedding_id", pa.string(), nullable=False),
            pa.field("person_id", pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("metadata", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), D), nullable=False),
            pa.field("crop", pa.binary()),
            pa.field("source", pa.string()),
            pa.field("created_at", pa.float64()),
        ],
        metadata={b"facetrack.model_id": b"test_model", b"facetrack.embedding_dim": b"128",
                  b"facetrack.schema_version": b"1"},
    )  # fmt: skip
    db = lancedb.connect(str(path), storage_options=storage_options)
    table = db.create_table("faces", schema=schema)
    for i, (name, emb) in enumerate(rows.items()):
        n = len(emb)
        table.add(
            pa.table(
                {
                    "embedding_id": [f"{name}-{k}" for k in range(n)],
                    "person_id": [f"{i:032x}"] * n,
                    "name": [name] * n,
                    "metadata": [json.dumps({"n": i})] * n,
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), D),
                    "crop": [b"\xff\xd8jpeg"] * n,
                    "source": [f"photo{k}.jpg" for k in range(n)],
                    "created_at": [1000.0 + i] * n,
                },
                schema=schema,
            )
        )
    if isinstance(path, Path):
        with integrity.locked(path):
            integrity.update_record(path, "faces", int(table.version))
        lib_backup.take_backup(path, lib_backup.LATEST)


def test_round_trip_of_yaw_and_second_descriptor(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lib = FaceLibrary(tmp_path / "faces.lance", "test_model", D)
    assert lib.schema_version == "2" and lib.second_model_id == SECOND_MODEL_ID
    emb, d2 = _unit(rng, 4), _desc(rng, 4)
    d2[2] = np.nan  # no second descriptor for this one
    person = lib.enroll("Anna", emb, [b"j"] * 4, list("abcd"), yaws=[0.02, -0.25, 0.5, None], descriptors2=d2)
    assert person.poses == {"frontal": 1, "three_quarter": 1, "profile": 1, UNKNOWN_POSE: 1}
    lib.enroll("Bob", _unit(rng, 1), [b"j"], ["e"])  # neither given: both null
    for reopened in (lib, FaceLibrary(tmp_path / "faces.lance", "test_model", D)):
        anna = reopened.person("Anna")
        assert anna is not None and anna.poses == person.poses
        got = reopened.second_descriptors(anna.person_id)
        assert got.shape == (3, 128) and got.dtype == np.float32
        np.testing.assert_array_equal(got, d2[[0, 1, 3]])
        yaws = reopened.embedding_yaws(anna.person_id)
        assert yaws[3] is None and yaws[:3] == pytest.approx([0.02, -0.25, 0.5])
        bob = reopened.person("Bob")
        assert bob is not None and bob.poses == {UNKNOWN_POSE: 1}
        assert reopened.second_descriptors(bob.person_id).shape == (0, 128)
        assert reopened.second_descriptors("nobody").shape == (0, 128)
        assert reopened.match(emb[1], 0.5)[0].name == "Anna"


def test_bad_yaws_or_descriptors_write_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lib = FaceLibrary(tmp_path / "faces.lance", "test_model", D)
    emb = _unit(rng, 2)
    partial = _desc(rng, 2)
    partial[0, 5] = np.nan
    bad: list[dict[str, object]] = [
        {"yaws": [0.1]},
        {"descriptors2": _desc(rng, 1)},
        {"descriptors2": np.zeros((2, 64), np.float32)},
        {"descriptors2": partial},
    ]
    for kwargs in bad:
        with pytest.raises(LibraryError):
            lib.enroll("Anna", emb, [b"j"] * 2, ["a", "b"], **kwargs)  # type: ignore[arg-type]
    assert len(lib) == 0 and lib.version == FaceLibrary(tmp_path / "faces.lance", "test_model", D).version


#: A schema version 1 library written by the v1 code (main at c3e9538): Anna (2 embeddings, with
#: metadata), Bob renamed Bobby (1, source ``door/track/5``), Cleo enrolled and forgotten; six
#: versions, integrity record included. Its embeddings are ``default_rng(0)`` unit vectors.
V1_LIBRARY = Path(__file__).resolve().parent / "data" / "library_v1" / "db"


def test_a_library_written_by_the_v1_code_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "faces.lance"
    shutil.copytree(V1_LIBRARY, path)
    before = lancedb.connect(str(path)).open_table("faces")
    assert "yaw" not in before.schema.names and before.schema.metadata[b"facetrack.schema_version"] == b"1"
    lib = FaceLibrary(path, "test_model", D)  # the integrity record is checked, then the migration
    assert lib.schema_version == "2" and lib.second_model_id == SECOND_MODEL_ID
    persons = {p.name: p for p in lib.persons()}
    assert set(persons) == {"Anna", "Bobby"}
    assert persons["Anna"].metadata == {"role": "resident"} and persons["Anna"].poses == {UNKNOWN_POSE: 2}
    assert persons["Bobby"].poses == {UNKNOWN_POSE: 1}
    x = np.random.default_rng(0).standard_normal((4, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert [m.name for m in lib.match(x, 0.9)] == ["Anna", "Anna", "Bobby", None]
    assert [e.crop_jpeg for e in lib.embeddings("Bobby")] == [b"\xff\xd8bob"]
    assert [e.source for e in lib.embedding_infos(persons["Bobby"].person_id)] == ["door/track/5"]
    assert [b.reason for b in lib_backup.list_backups(path)].count("migrate") == 1
    again = FaceLibrary(path, "test_model", D)  # opens without a second migration
    assert [b.reason for b in lib_backup.list_backups(path)].count("migrate") == 1 and len(again) == 3


def test_v1_library_is_migrated_with_a_backup_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "faces.lance"
    anna, bob = _unit(rng, 3), _unit(rng, 2)
    _build_v1(path, {"Anna": anna, "Bob": bob})
    lib = FaceLibrary(path, "test_model", D)
    assert "migrating from schema version 1 to 2" in caplog.text
    assert lib.schema_version == "2"
    assert [b for b in lib_backup.list_backups(path) if b.reason == "migrate"]
    # Nothing of the old rows changed: they are simply of unknown pose, without second descriptor.
    persons = {p.name: p for p in lib.persons()}
    assert persons["Anna"].poses == {UNKNOWN_POSE: 3} and persons["Bob"].poses == {UNKNOWN_POSE: 2}
    assert persons["Anna"].metadata == {"n": 0} and persons["Anna"].created_at == 1000.0
    assert lib.second_descriptors(persons["Anna"].person_id).shape == (0, 128)
    assert lib.match(bob[1], 0.5)[0].name == "Bob"
    assert len(lib.embeddings("Anna")) == 3
    # New enrolments carry the new columns; the integrity record accepts the migrated table.
    d2 = _desc(rng, 1)
    lib.enroll("Anna", _unit(rng, 1), [b"j"], ["x"], yaws=[0.3], descriptors2=d2)
    again = FaceLibrary(path, "test_model", D)
    anna_p = again.person("Anna")
    assert anna_p is not None and anna_p.poses == {UNKNOWN_POSE: 3, "three_quarter": 1}
    np.testing.assert_array_equal(again.second_descriptors(anna_p.person_id), d2)
    # The migrate backup is the library as it was (version 1) and still opens (and migrates).
    migrate = next(b for b in lib_backup.list_backups(path) if b.reason == "migrate")
    del lib, again
    lib_backup.restore(path, migrate.name)
    restored = FaceLibrary(path, "test_model", D)
    assert restored.schema_version == "2" and len(restored) == 5


def test_a_failed_migration_leaves_the_v1_library_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "faces.lance"
    _build_v1(path, {"Anna": _unit(rng, 2)})

    def boom(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr(lancedb.table.LanceTable, "add_columns", boom)
        with pytest.raises(LibraryError, match="disk on fire"):
            FaceLibrary(path, "test_model", D)
    table = lancedb.connect(str(path)).open_table("faces")
    assert "yaw" not in table.schema.names and table.count_rows() == 2
    lib = FaceLibrary(path, "test_model", D)  # the next start migrates
    assert lib.schema_version == "2" and len(lib) == 2


def test_rename_forget_delete_and_restore_keep_the_new_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = tmp_path / "faces.lance"
    lib = FaceLibrary(path, "test_model", D)
    d_anna, d_bob = _desc(rng, 3), _desc(rng, 2)
    lib.enroll("Anna", _unit(rng, 3), [b"j"] * 3, list("abc"), yaws=[0.0, 0.2, 0.4], descriptors2=d_anna)
    lib.enroll("Bob", _unit(rng, 2), [b"j"] * 2, list("de"), yaws=[0.0, 0.0], descriptors2=d_bob)
    pid = lib.rename("Anna", "Anne").person_id
    first = lib.embeddings("Anne")[0].embedding_id
    owner = lib.delete_embedding(first)
    assert owner is not None and owner.embedding_count == 2
    assert lib.forget("Bob") == 2
    for view in (lib, FaceLibrary(path, "test_model", D)):
        anne = view.person("Anne")
        assert anne is not None and sum(anne.poses.values()) == 2
        yaws = view.embedding_yaws(pid)
        assert len(yaws) == 2 and all(any(y == pytest.approx(k) for k in (0.0, 0.2, 0.4)) for y in yaws)
        got = view.second_descriptors(pid)
        assert got.shape == (2, 128)
        # The descriptors left are those of the embeddings left, row for row with the yaws.
        assert all(any(np.array_equal(g, d) for d in d_anna) for g in got)
        yaw_of = {0.0: 0, 0.2: 1, 0.4: 2}
        kept = [yaw_of[round(float(y or 0.0), 1)] for y in yaws]
        np.testing.assert_array_equal(got, d_anna[kept])
        assert view.person("Bob") is None
    # The backup taken before forget still has Bob, with his descriptors.
    before_forget = next(b for b in lib_backup.list_backups(path) if b.reason == "forget")
    del lib
    lib_backup.restore(path, before_forget.name)
    restored = FaceLibrary(path, "test_model", D)
    bob = restored.person("Bob")
    assert bob is not None and bob.poses == {"frontal": 2}
    np.testing.assert_array_equal(restored.second_descriptors(bob.person_id), d_bob)


def test_v1_library_on_s3_is_migrated_by_one_of_two_instances(moto_endpoint: str, bucket: str) -> None:  # noqa: F811
    rng = np.random.default_rng(5)
    uri, options = f"s3://{bucket}/faces", _options(moto_endpoint)
    _build_v1(uri, {"Anna": _unit(rng, 2)}, options)
    a = FaceLibrary(uri, "test_model", D, storage_options=options)
    b = FaceLibrary(uri, "test_model", D, storage_options=options)  # finds it migrated already
    assert a.schema_version == b.schema_version == "2"
    d2 = _desc(rng, 1)
    a.enroll("Anna", _unit(rng, 1), [b"j"], ["x"], yaws=[0.0], descriptors2=d2)
    assert b.refresh()
    anna = b.person("Anna")
    assert anna is not None and anna.poses == {UNKNOWN_POSE: 2, "frontal": 1}
    np.testing.assert_array_equal(b.second_descriptors(anna.person_id), d2)
