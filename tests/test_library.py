"""Face library: enrol, list, rename, forget, delete one embedding, match, model binding, atomicity."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facetrack.errors import LibraryError, ModelMismatchError
from facetrack.library import FaceLibrary

D = 128


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _enrol(lib: FaceLibrary, name: str, emb: np.ndarray) -> None:
    lib.enroll(name, emb, [b"\xff\xd8jpeg"] * len(emb), [f"src{i}" for i in range(len(emb))])


@pytest.fixture
def lib(tmp_path: Path) -> FaceLibrary:
    return FaceLibrary(tmp_path / "faces.lance", "test_model", D)


def test_enrol_list_match_and_several_embeddings_per_person(lib: FaceLibrary) -> None:
    rng = np.random.default_rng(0)
    anna, bob = _unit(rng, 3), _unit(rng, 2)
    _enrol(lib, "Anna", anna)
    _enrol(lib, "Bob", bob)
    _enrol(lib, "Anna", _unit(rng, 1))  # adds to the same person
    persons = {p.name: p for p in lib.persons()}
    assert set(persons) == {"Anna", "Bob"}
    assert persons["Anna"].embedding_count == 4
    assert persons["Bob"].embedding_count == 2
    assert len(lib) == 6
    # A noisy copy of one of Bob's embeddings matches Bob; a random probe matches nobody.
    probe = bob[1] + 0.05 * _unit(rng, 1)[0]
    probe /= np.linalg.norm(probe)
    m = lib.match(probe, 0.5)[0]
    assert m.name == "Bob" and m.similarity > 0.9
    stranger = lib.match(_unit(rng, 1), 0.5)[0]
    assert stranger.name is None and stranger.person_id is None and stranger.similarity < 0.5
    assert len(lib.embeddings("Anna")) == 4


@pytest.mark.parametrize("name", ["O'Brien", 'x" OR 1=1', "x' OR '1'='1", "Zoë -- ; DROP TABLE faces"])
def test_hostile_names_just_work(lib: FaceLibrary, name: str) -> None:
    rng = np.random.default_rng(1)
    _enrol(lib, "Victim", _unit(rng, 2))
    _enrol(lib, name, _unit(rng, 1))
    assert lib.person(name) is not None
    assert len(lib.embeddings(name)) == 1
    renamed = lib.rename(name, name + " Jr")
    assert renamed.name == name + " Jr"
    assert lib.forget(name + " Jr") == 1
    # Nobody else was touched by the filters.
    assert [p.name for p in lib.persons()] == ["Victim"]
    assert lib.persons()[0].embedding_count == 2


def test_rename_forget_delete_embedding(lib: FaceLibrary) -> None:
    rng = np.random.default_rng(2)
    _enrol(lib, "Anna", _unit(rng, 2))
    _enrol(lib, "Bob", _unit(rng, 1))
    with pytest.raises(LibraryError, match="already exists"):
        lib.rename("Anna", "Bob")
    with pytest.raises(LibraryError, match="no person"):
        lib.rename("Nobody", "X")
    pid = lib.person("Anna").person_id  # type: ignore[union-attr]
    assert lib.rename("Anna", "Anne").person_id == pid
    first = lib.embeddings("Anne")[0]
    owner = lib.delete_embedding(first.embedding_id)
    assert owner is not None and owner.embedding_count == 1
    with pytest.raises(LibraryError, match="no embedding"):
        lib.delete_embedding(first.embedding_id)
    last = lib.embeddings("Anne")[0]
    assert lib.delete_embedding(last.embedding_id) is None  # last embedding: person gone
    assert lib.person("Anne") is None
    with pytest.raises(LibraryError, match="no person"):
        lib.forget("Anne")


def test_persisted_and_reopened(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    emb = _unit(rng, 2)
    lib = FaceLibrary(tmp_path / "db", "test_model", D)
    lib.enroll("Anna", emb, [b"a", b"b"], ["x", "y"], metadata={"role": "family"})
    again = FaceLibrary(tmp_path / "db", "test_model", D)
    person = again.person("Anna")
    assert person is not None and person.metadata == {"role": "family"} and person.embedding_count == 2
    assert again.match(emb[0], 0.9)[0].name == "Anna"


def test_refresh_sees_another_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    reader = FaceLibrary(tmp_path / "db", "test_model", D)
    writer = FaceLibrary(tmp_path / "db", "test_model", D)
    _enrol(writer, "Anna", _unit(rng, 1))
    assert reader.person("Anna") is None
    assert reader.refresh() is True
    assert reader.person("Anna") is not None


def test_other_model_is_a_clear_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    _enrol(FaceLibrary(tmp_path / "db", "sface_2021dec", D), "Anna", _unit(rng, 1))
    with pytest.raises(ModelMismatchError, match="sface_2021dec") as err:
        FaceLibrary(tmp_path / "db", "arcface_mobilefacenet", 512)
    assert "new library" in str(err.value)
    # Nothing was changed by the failed open.
    assert FaceLibrary(tmp_path / "db", "sface_2021dec", D).persons()[0].name == "Anna"


def test_bad_arguments_write_nothing(lib: FaceLibrary) -> None:
    rng = np.random.default_rng(6)
    for bad_name in ["", "   ", "a\x00b", "x" * 101]:
        with pytest.raises(LibraryError):
            _enrol(lib, bad_name, _unit(rng, 1))
    with pytest.raises(LibraryError, match="expected"):
        lib.enroll("Anna", np.zeros((1, 64), np.float32), [b""], [""])
    with pytest.raises(LibraryError, match="NaN"):
        lib.enroll("Anna", np.full((1, D), np.nan, np.float32), [b""], [""])
    with pytest.raises(LibraryError, match="same length"):
        lib.enroll("Anna", _unit(rng, 2), [b""], [""])
    with pytest.raises(LibraryError, match="JSON"):
        lib.enroll("Anna", _unit(rng, 1), [b""], [""], metadata={"x": object()})
    assert len(lib) == 0 and lib.persons() == []


def test_not_a_library(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryError, match="is a file"):
        FaceLibrary(tmp_path / "file", "m", D)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "stuff.txt").write_text("x")
    with pytest.raises(LibraryError, match="no FaceTrack face library"):
        FaceLibrary(tmp_path / "dir", "m", D)


def test_failed_commit_leaves_library_as_it_was(lib: FaceLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    _enrol(lib, "Anna", _unit(rng, 2))
    before = lib._table.version

    def boom(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(lib._table, "add", boom)
    with pytest.raises(OSError, match="disk full"):
        _enrol(lib, "Bob", _unit(rng, 3))
    monkeypatch.undo()
    assert lib._table.version == before
    assert [p.name for p in lib.persons()] == ["Anna"] and len(lib) == 2


_KILLED_WRITER = """
import sys, numpy as np
from facetrack.library import FaceLibrary
lib = FaceLibrary(sys.argv[1], "test_model", 128)
rng = np.random.default_rng(0)
print("ready", flush=True)
while True:  # keep enrolling big batches until killed mid-write
    e = rng.standard_normal((2000, 128)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    lib.enroll("Bulk", e, [b"x" * 2048] * 2000, ["s"] * 2000)
"""


def test_process_killed_mid_enrolment_leaves_whole_commits_only(tmp_path: Path) -> None:
    db = tmp_path / "db"
    rng = np.random.default_rng(8)
    _enrol(FaceLibrary(db, "test_model", D), "Anna", _unit(rng, 2))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    proc.kill()
    proc.wait()
    lib = FaceLibrary(db, "test_model", D)
    counts = {p.name: p.embedding_count for p in lib.persons()}
    assert counts["Anna"] == 2
    # Each enrolment is all-or-nothing: Bulk holds a whole number of 2000-row commits.
    assert counts.get("Bulk", 0) % 2000 == 0
    assert len(lib) == sum(counts.values())


def test_match_is_fast_at_10k(tmp_path: Path) -> None:
    """Functional check that a 10k index answers; the latency figure lives in benchmarks/."""
    lib = FaceLibrary(tmp_path / "db", "test_model", D)
    rng = np.random.default_rng(9)
    emb = _unit(rng, 10_000)
    lib.enroll("Many", emb, [b""] * 10_000, ["s"] * 10_000)
    assert len(lib) == 10_000
    m = lib.match(emb[1234], 0.99)[0]
    assert m.name == "Many" and m.similarity == pytest.approx(1.0, abs=1e-5)


def test_two_writers_see_each_other_after_writing(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    a = FaceLibrary(tmp_path / "db", "test_model", D)
    b = FaceLibrary(tmp_path / "db", "test_model", D)
    _enrol(a, "Anna", _unit(rng, 1))
    _enrol(b, "Bob", _unit(rng, 1))  # b was stale: its index must now hold Anna too
    assert {p.name for p in b.persons()} == {"Anna", "Bob"} and len(b) == 2


def test_compaction_keeps_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import facetrack.library.store as store

    monkeypatch.setattr(store, "COMPACT_EVERY", 3)
    rng = np.random.default_rng(11)
    lib = FaceLibrary(tmp_path / "db", "test_model", D)
    emb = _unit(rng, 7)
    for i in range(7):
        _enrol(lib, f"P{i}", emb[i : i + 1])
    lib.forget("P3")
    reopened = FaceLibrary(tmp_path / "db", "test_model", D)
    assert sorted(p.name for p in reopened.persons()) == ["P0", "P1", "P2", "P4", "P5", "P6"]
    assert reopened.match(emb[5], 0.99)[0].name == "P5"
    assert len(reopened.embeddings("P6")) == 1
