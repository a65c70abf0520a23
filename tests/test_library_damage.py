"""A damaged face library: found at open with a one-line error, restored from the automatic backup.

The library is enrolled from real photos (``../shared/data``), then damaged as a disk or a clumsy
user would: bytes overwritten or cut off, files deleted or emptied, a garbage table folder,
unreadable permissions. Two of these Lance does not notice at all (it reads a crop with 200
overwritten bytes, and silently opens the previous version when the newest manifest is gone); the
others made it raise a raw Rust error. Every kind must now be refused with one line naming the
library and the restore command, and restoring must bring back every acknowledged embedding.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pytest

from facetrack import cli
from facetrack.config import FaceTrackerConfig
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.library import backup as bk
from facetrack.library.integrity import RECORD_NAME, LibraryCorruptError
from facetrack.library.sync import LibraryWatcher
from facetrack.recognizer import FaceRecognizer
from mqtt_helpers import Broker, Subscriber
from test_service_e2e import Engine

PEOPLE = 4  # persons enrolled, 2 photos each, one commit per person


# --- damage kinds (each takes the library folder, ``db_path``) ---------------------------------


def _table(db: Path) -> Path:
    return db / "faces.lance"


def _data_files(db: Path) -> list[Path]:
    """Data files, oldest first."""
    return sorted((_table(db) / "data").glob("*.lance"), key=lambda p: p.stat().st_mtime_ns)


def _manifests(db: Path) -> list[Path]:
    """Version manifests, newest first (Lance names them ``2**64 - 1 - version``)."""
    return sorted((_table(db) / "_versions").glob("*.manifest"), key=lambda p: int(p.stem))


def truncate_newest_data(db: Path) -> None:
    f = _data_files(db)[-1]
    os.truncate(f, f.stat().st_size // 2)


def overwrite_crop_bytes(db: Path) -> None:
    """200 random bytes over the middle of a face crop in the newest data file."""
    f = _data_files(db)[-1]
    blob = f.read_bytes()
    start = blob.find(b"\xff\xd8\xff")  # a JPEG crop stored in the file
    offset = start + 1000 if start >= 0 and start + 1200 < len(blob) else len(blob) // 2
    with f.open("r+b") as fh:
        fh.seek(offset)
        fh.write(random.Random(0).randbytes(200))


def delete_latest_manifest(db: Path) -> None:
    _manifests(db)[0].unlink()


def delete_data_file(db: Path) -> None:
    _data_files(db)[0].unlink()


def garbage_latest_manifest(db: Path) -> None:
    m = _manifests(db)[0]
    m.write_bytes(random.Random(1).randbytes(m.stat().st_size))


def delete_versions_dir(db: Path) -> None:
    shutil.rmtree(_table(db) / "_versions")


def empty_every_file(db: Path) -> None:
    for f in _table(db).rglob("*"):
        if f.is_file():
            os.truncate(f, 0)


def garbage_table_dir(db: Path) -> None:
    shutil.rmtree(_table(db))
    rng = random.Random(2)
    for rel in ("data/0.lance", "_versions/1.manifest", "notes.txt"):
        (_table(db) / rel).parent.mkdir(parents=True, exist_ok=True)
        (_table(db) / rel).write_bytes(rng.randbytes(4096))


def delete_table_dir(db: Path) -> None:
    shutil.rmtree(_table(db))


def delete_deletion_file(db: Path) -> None:
    files = list((_table(db) / "_deletions").iterdir())
    assert files, "the fixture library has a deleted embedding, so a deletion file"
    for f in files:
        f.unlink()


def unreadable_files(db: Path) -> None:
    for f in (_table(db) / "data").iterdir():
        f.chmod(0)


#: kind -> damage. The comment is what today's main did with it (see the report of issue 17).
DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated newest data file": truncate_newest_data,  # raw Lance traceback
    "200 random bytes in a crop of the newest data file": overwrite_crop_bytes,  # silent: a bad crop
    "latest manifest deleted": delete_latest_manifest,  # silent: rolled back (a forgotten face is back)
    "a data file deleted": delete_data_file,  # raw Lance traceback
    "garbage in the latest manifest": garbage_latest_manifest,  # raw Lance traceback
    "_versions folder deleted": delete_versions_dir,  # raw ValueError traceback
    "every table file emptied": empty_every_file,  # raw Lance traceback
    "garbage table folder": garbage_table_dir,  # raw Lance traceback
    "table folder deleted": delete_table_dir,  # silent: a new, empty library
    "deletion file deleted": delete_deletion_file,  # raw Lance traceback
    "unreadable files (permissions)": unreadable_files,  # raw Lance traceback
}
# --- end damage kinds ----------------------------------------------------------------------------


def _snapshot(lib: FaceLibrary) -> dict[str, dict[str, Any]]:
    """Everything acknowledged: ``{embedding id: {person, name, crop}}``."""
    return {
        e.embedding_id: {"person_id": e.person_id, "name": p.name, "crop": e.crop_jpeg, "source": e.source}
        for p in lib.persons()
        for e in lib.embeddings(p.name)
    }


@pytest.fixture(scope="module")
def golden(
    tmp_path_factory: pytest.TempPathFactory,
    backend: InferenceBackend,
    config: FaceTrackerConfig,
    data_dir: Path,
    labels: list[dict[str, str]],
) -> dict[str, Any]:
    """A library enrolled from real photos (one commit per person, then one more photo for the
    first person, then one embedding forgotten), with its automatic backups."""
    base = tmp_path_factory.mktemp("golden")
    db = base / "faces.lance"
    lib = FaceLibrary(db, backend.model_id, backend.embedding_dim)
    rec = FaceRecognizer(backend, config, lib)
    by_person: dict[str, list[str]] = {}
    for r in labels:
        by_person.setdefault(r["person"], []).append(r["path"])
    people = sorted(p for p, paths in by_person.items() if len(paths) >= 3)[:PEOPLE]
    for person in people:
        assert rec.enroll(person, [data_dir / p for p in sorted(by_person[person])[:2]]).enrolled >= 1
    rec.enroll(people[0], [data_dir / sorted(by_person[people[0]])[2]])  # the newest data file
    wrong = lib.embeddings(people[1])[0].embedding_id
    assert lib.delete_embedding(wrong) is not None  # a deletion file, and a dated backup
    acknowledged = _snapshot(lib)
    assert len(acknowledged) >= 2 * PEOPLE and wrong not in acknowledged
    return {
        "base": base,
        "model": backend.model_id,
        "dim": backend.embedding_dim,
        "acknowledged": acknowledged,
        "version": lib.version,
        "wrong": wrong,
    }


def _copy(golden: dict[str, Any], dest: Path) -> Path:
    shutil.copytree(golden["base"], dest)
    return dest / "faces.lance"


def _open(golden: dict[str, Any], db: Path) -> FaceLibrary:
    return FaceLibrary(db, golden["model"], golden["dim"])


def _assert_one_line_restore_error(msg: str, db: Path) -> None:
    assert "\n" not in msg, msg
    assert f"the face library at {db}" in msg, msg
    assert f"facetrack restore-library --db {db}" in msg, msg
    assert "Traceback" not in msg and "lance error" not in msg.lower(), msg


_OPEN_AS_UNPRIVILEGED = """
import sys
from facetrack.errors import LibraryError
from facetrack.library import FaceLibrary
try:
    FaceLibrary(sys.argv[1], sys.argv[2], int(sys.argv[3]))
except LibraryError as err:
    print(type(err).__name__, err)
else:
    print("opened")
"""


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damage_is_found_at_open_and_the_backup_restores_everything(
    kind: str, golden: dict[str, Any], tmp_path: Path
) -> None:
    db = _copy(golden, tmp_path / "lib")
    DAMAGE[kind](db)
    if kind.startswith("unreadable"):
        # The tests run as root, which reads any file: open as root without the capabilities that
        # bypass file permissions, as the engine's own user would.
        out = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search",
             sys.executable, "-c", _OPEN_AS_UNPRIVILEGED, str(db), golden["model"], str(golden["dim"])],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout.strip()  # fmt: skip
        assert out.startswith("LibraryCorruptError ") and "cannot be read" in out, out
        assert "\n" not in out and f"facetrack restore-library --db {db}" in out, out
    else:
        with pytest.raises(LibraryCorruptError) as err:
            _open(golden, db)
        _assert_one_line_restore_error(str(err.value), db)
        with pytest.raises(LibraryCorruptError):  # the failed open changed nothing: still refused
            _open(golden, db)
    chosen, moved = bk.restore(db)
    assert chosen.reason == bk.LATEST and moved is not None and moved.exists()  # nothing deleted
    restored = _open(golden, db)
    assert _snapshot(restored) == golden["acknowledged"]
    assert restored.version == golden["version"]


def test_the_silent_kinds_are_silent_for_lance_itself(golden: dict[str, Any], tmp_path: Path) -> None:
    """Why a record is needed: Lance reads these two damages without any error."""
    db = _copy(golden, tmp_path / "bytes")
    overwrite_crop_bytes(db)
    rows = lancedb.connect(db).open_table("faces").to_arrow().to_pylist()
    crops = {r["embedding_id"]: r["crop"] for r in rows}
    assert set(crops) == set(golden["acknowledged"])
    assert any(crops[k] != v["crop"] for k, v in golden["acknowledged"].items())

    db = _copy(golden, tmp_path / "manifest")
    delete_latest_manifest(db)
    table = lancedb.connect(db).open_table("faces")
    assert table.version == golden["version"] - 1
    assert golden["wrong"] in table.to_arrow().column("embedding_id").to_pylist()  # rolled back


def test_damage_while_running_never_stops_matching(golden: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(golden, tmp_path / "lib")
    lib = _open(golden, db)
    probe = lib._index.matrix[0].copy()
    expected = lib.match(probe, 0.9)[0]
    assert expected.name is not None
    rng = np.random.default_rng(1)

    def unit() -> np.ndarray:
        e = rng.standard_normal((1, golden["dim"])).astype(np.float32)
        return e / np.linalg.norm(e)

    # The newest manifest deleted under a running engine: Lance commits the next write on top of
    # the version it holds, so nothing acknowledged is lost (the loss was at the next start).
    delete_latest_manifest(db)
    lib.enroll("Newcomer", unit(), [b"\xff\xd8x"], ["x"])
    reopened = _snapshot(_open(golden, db))
    assert set(golden["acknowledged"]) < set(reopened) and len(reopened) == len(golden["acknowledged"]) + 1

    # Another process (the CLI) enrols, then its data file is lost: the engine's refresh finds the
    # damage, the watcher logs it and keeps going, matching goes on with the index it has.
    cli_lib = _open(golden, db)
    cli_lib.enroll("Other", unit(), [b"\xff\xd8y"], ["y"])
    _data_files(db)[-1].unlink()
    watcher = LibraryWatcher(lib, 0)
    assert watcher.refresh_now() is False and watcher.failures == 1  # logged, not raised
    with pytest.raises(LibraryCorruptError) as err:
        lib.refresh()
    _assert_one_line_restore_error(str(err.value), db)
    with pytest.raises(LibraryCorruptError):  # a write refreshes first: refused, nothing on top
        lib.enroll("Third", unit(), [b"\xff\xd8z"], ["z"])
    assert lib.match(probe, 0.9)[0] == expected  # camera loops match on the in-memory index
    with pytest.raises(LibraryCorruptError):  # reading crops of the damaged table: a clear error
        cli_lib.embeddings("Other")
    # The latest backup was refreshed after the CLI's commit: restoring it loses nothing.
    bk.restore(db)
    names = {p.name for p in _open(golden, db).persons()}
    assert {"Newcomer", "Other"} <= names


def test_backups_before_destructive_operations_rotate(
    golden: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bk, "KEEP_BACKUPS", 3)
    db = _copy(golden, tmp_path / "lib")
    lib = _open(golden, db)
    names = sorted({v["name"] for v in golden["acknowledged"].values()})
    rng = np.random.default_rng(0)
    for i in range(3):
        e = rng.standard_normal((1, golden["dim"])).astype(np.float32)
        lib.enroll(f"Extra {i}", e / np.linalg.norm(e), [b"\xff\xd8x"], ["x"])
    lib.rename("Extra 0", "Extra zero")
    for i in (1, 2):
        lib.forget(f"Extra {i}")
    lib.forget(names[0])
    dated = [b for b in bk.list_backups(db) if b.reason != bk.LATEST]
    assert [b.reason for b in dated] == ["forget", "forget", "forget"]  # the 3 newest; older ones gone
    assert {b.reason for b in bk.list_backups(db)} == {"forget", bk.LATEST}
    # The newest dated backup was taken just before names[0] was forgotten: restoring it brings
    # the person back; "latest" is the library as it is now.
    bk.restore(db, dated[0].name)
    assert _open(golden, db).person(names[0]) is not None
    bk.restore(db, bk.LATEST)
    back = _open(golden, db)
    assert back.person(names[0]) is None and back.person("Extra zero") is not None


def test_a_daily_backup_when_the_newest_is_a_day_old(golden: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(golden, tmp_path / "lib")
    before = {b.name for b in bk.list_backups(db)}
    _open(golden, db)
    assert {b.name for b in bk.list_backups(db)} == before  # a recent one exists: nothing new
    for b in bk.list_backups(db):
        old = b.created - 2 * bk.DAILY_SECONDS
        os.utime(b.path, (old, old))
    _open(golden, db)
    new = [b for b in bk.list_backups(db) if b.name not in before]
    assert [b.reason for b in new] == ["daily"]
    assert bk.check_backup(new[0].path).version == golden["version"]


def test_a_damaged_backup_is_skipped_for_an_intact_one(golden: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(golden, tmp_path / "lib")
    latest = bk.backup_root(db) / bk.LATEST
    truncate_newest_data(latest)
    delete_latest_manifest(db)
    chosen, _ = bk.restore(db)
    assert chosen.reason != bk.LATEST  # latest was damaged too: the newest intact dated one
    assert (db / RECORD_NAME).exists() and len(_open(golden, db)) > 0


def test_a_library_without_record_is_adopted(golden: dict[str, Any], tmp_path: Path) -> None:
    """A library written before records existed opens, and is protected from then on."""
    db = _copy(golden, tmp_path / "lib")
    (db / RECORD_NAME).unlink()
    assert _snapshot(_open(golden, db)) == golden["acknowledged"]
    assert (db / RECORD_NAME).exists()
    overwrite_crop_bytes(db)
    with pytest.raises(LibraryCorruptError):
        _open(golden, db)


def test_serve_refuses_a_damaged_library_in_one_line_and_starts_after_the_restore_command(
    golden: dict[str, Any], tmp_path: Path, video_path: Path
) -> None:
    """End to end: ``facetrack serve`` with a real broker, a silently damaged library."""
    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port).start()
    engine: Engine | None = None
    try:
        shutil.copytree(golden["base"], tmp_path, dirs_exist_ok=True)  # faces.lance + its backups
        db = tmp_path / "faces.lance"
        overwrite_crop_bytes(db)
        engine = Engine(tmp_path, broker.port, tmp_path / "no-such-db", video_path).start()
        assert engine.proc is not None
        assert engine.proc.wait(timeout=120) == 1
        log = engine.log.read_text()
        assert "Traceback" not in log and "lance error" not in log.lower(), log
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert len(errors) == 1, log
        _assert_one_line_restore_error(errors[0].split(": ", 1)[1], db)

        restore = subprocess.run(
            [sys.executable, "-m", "facetrack", "restore-library", "--db", str(db)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert restore.returncode == 0, restore.stderr
        engine.start()
        persons = sub.wait_for("facetrack/persons", timeout=120)[0].payload["persons"]
        assert sorted(p["name"] for p in persons) == sorted({v["name"] for v in golden["acknowledged"].values()})
        assert sum(p["embeddings"] for p in persons) == len(golden["acknowledged"])
        assert engine.terminate() == 0
    finally:
        if engine is not None:
            engine.kill()
        sub.stop()
        broker.stop()


def test_restore_library_cli_lists_and_reports(golden: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    db = _copy(golden, tmp_path / "lib")
    assert cli.main(["restore-library", "--db", str(db), "--list"]) == 0
    listed = capsys.readouterr().out
    assert '"latest"' in listed and '"delete_embedding"' in listed
    assert cli.main(["restore-library", "--db", str(db), "--from", "nope"]) == 1
    assert "no backup called 'nope'" in capsys.readouterr().out
