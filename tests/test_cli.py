"""The ``facetrack`` CLI contract, run as subprocesses on real photos and the real clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from facetrack.config.schema import DEFAULT_COSINE_THRESHOLD

DEEPFACE = "deepface/tests/unit/dataset"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "facetrack", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def enrolled_db(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    db = tmp_path_factory.mktemp("cli") / "faces.lance"
    d = data_dir / DEEPFACE
    proc = cli("enroll", "--db", str(db), "--name", "Angelina Jolie", str(d / "img1.jpg"), str(d / "img2.jpg"))
    out = lines(proc)
    assert out == [{"person": "Angelina Jolie", "enrolled": 2, "skipped": []}]
    return db


def test_enroll_skips_with_reasons_and_fails_when_nothing_enrolled(tmp_path: Path, data_dir: Path) -> None:
    db = tmp_path / "db"
    group = data_dir / "insightface_wheel"
    t1 = next(group.rglob("t1.jpg"))
    no_face = data_dir / "dlib/examples/faces/dogs.jpg"
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    proc = cli(
        "enroll",
        "--db",
        str(db),
        "--name",
        "Nobody",
        str(t1),
        str(no_face),
        str(not_image),
        str(tmp_path / "missing.jpg"),
        check=False,
    )
    assert proc.returncode == 1
    (out,) = lines(proc)
    assert out["enrolled"] == 0 and out["person"] == "Nobody"
    reasons = {Path(s["path"]).name: s["reason"] for s in out["skipped"]}
    assert "similar size" in reasons["t1.jpg"]
    assert reasons["dogs.jpg"] == "no face found"
    assert "not an image" in reasons["notes.txt"]
    assert "no such file" in reasons["missing.jpg"]
    # Nothing was enrolled, so the library lists nobody.
    assert lines(cli("persons", "--db", str(db))) == [{"persons": []}]


def test_recognize_known_and_stranger(enrolled_db: Path, data_dir: Path) -> None:
    probe = data_dir / DEEPFACE / "img4.jpg"
    stranger = data_dir / "debian_opencv-doc/examples/data/messi5.jpg"
    out = lines(cli("recognize", "--db", str(enrolled_db), str(probe), str(stranger)))
    assert [o["image"] for o in out] == [str(probe), str(stranger)]
    face = max(out[0]["faces"], key=lambda f: f["bbox"][2] - f["bbox"][0])
    assert face["person"] == "Angelina Jolie" and face["similarity"] >= DEFAULT_COSINE_THRESHOLD
    assert len(face["bbox"]) == 4 and 0 < face["score"] <= 1
    assert out[1]["faces"] and all(f["person"] is None for f in out[1]["faces"])


def test_verify_same_and_different(data_dir: Path) -> None:
    d = data_dir / DEEPFACE
    same = lines(cli("verify", str(d / "img1.jpg"), str(d / "img4.jpg")))[0]
    diff = lines(cli("verify", str(d / "img1.jpg"), str(data_dir / "debian_opencv-doc/examples/data/messi5.jpg")))[0]
    assert set(same) == {"similarity", "same_person", "threshold"}
    assert same["same_person"] is True and same["similarity"] >= same["threshold"]
    assert diff["same_person"] is False and diff["similarity"] < diff["threshold"]


def test_detect_boxes_scores_landmarks(data_dir: Path) -> None:
    img = data_dir / DEEPFACE / "img1.jpg"
    (out,) = lines(cli("detect", str(img)))
    assert out["image"] == str(img) and len(out["faces"]) == 1
    f = out["faces"][0]
    assert len(f["bbox"]) == 4 and len(f["landmarks"]) == 5 and f["score"] > 0.5


def test_persons_rename_forget(enrolled_db: Path, tmp_path: Path) -> None:
    import shutil

    db = tmp_path / "copy.lance"
    shutil.copytree(enrolled_db, db)
    (persons,) = lines(cli("persons", "--db", str(db)))
    assert [(p["name"], p["embeddings"]) for p in persons["persons"]] == [("Angelina Jolie", 2)]
    assert sum(persons["persons"][0]["poses"].values()) == 2  # embeddings per head pose
    out = lines(cli("rename", "--db", str(db), "--name", "Angelina Jolie", "--to", "AJ"))[0]
    assert out["person"] == "AJ"
    bad = cli("forget", "--db", str(db), "--name", "Angelina Jolie", check=False)
    assert bad.returncode == 1 and "no person" in lines(bad)[0]["error"]
    assert lines(cli("forget", "--db", str(db), "--name", "AJ"))[0]["embeddings_removed"] == 2
    assert lines(cli("persons", "--db", str(db)))[0]["persons"] == []


def test_track_events_summary_and_annotated_video(enrolled_db: Path, video_path: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    annotated = tmp_path / "annotated.mp4"
    proc = cli(
        "track",
        "--db",
        str(enrolled_db),
        "--source",
        str(video_path),
        "--events",
        str(events),
        "--annotated",
        str(annotated),
    )
    assert proc.stdout == ""  # events went to the file
    out = [json.loads(x) for x in events.read_text().splitlines()]
    summary = out[-1]
    assert summary["type"] == "summary" and summary["frames"] == 105 and summary["tracks"] >= 3
    body = out[:-1]
    assert {e["type"] for e in body} <= {"track_started", "identity", "track_ended"}
    for e in body:
        assert {"type", "frame", "ts", "track_id", "person", "similarity", "bbox"} <= set(e)
    started = {e["track_id"] for e in body if e["type"] == "track_started"}
    ended = {e["track_id"] for e in body if e["type"] == "track_ended"}
    assert started == ended and len(started) == summary["tracks"]
    # Every track starts before it gets an identity or ends.
    first = {}
    for e in body:
        first.setdefault(e["track_id"], e["type"])
    assert set(first.values()) == {"track_started"}
    cap = cv2.VideoCapture(str(annotated))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 105
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 1920
    cap.release()


def test_track_to_stdout(enrolled_db: Path, video_path: Path) -> None:
    out = lines(cli("track", "--db", str(enrolled_db), "--source", str(video_path), "--max-frames", "20"))
    assert out[-1]["type"] == "summary" and out[-1]["frames"] == 20


def test_enroll_many_people_in_one_call(tmp_path: Path, data_dir: Path) -> None:
    """--folders and --person NAME=PATH in one process: per person one commit, one JSON line;
    a bad path, an unusable photo or a refused name is reported and does not stop the others."""
    d = data_dir / DEEPFACE
    people = tmp_path / "people"
    (people / "Angelina").mkdir(parents=True)
    for img in ("img1.jpg", "img2.jpg"):
        (people / "Angelina" / img).symlink_to(d / img)
    (people / "Angelina" / "notes.txt").write_text("not a photo, left alone")
    (people / "Empty").mkdir()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    db = tmp_path / "db"
    too_long = "A" * 101
    proc = cli(
        "enroll",
        "--db",
        str(db),
        "--folders",
        str(people),
        "--person",
        f"John Simm={data_dir / 'dlib/examples/johns/John_Simm/000288_00470387.jpg'}",
        f"John Simm={broken}",
        f"Ghost={tmp_path / 'missing.jpg'}",
        f"{too_long}={d / 'img4.jpg'}",
        check=False,
    )
    assert proc.returncode == 1  # some people got nothing
    out = {o["person"]: o for o in lines(proc)}
    assert list(out) == ["John Simm", "Ghost", too_long, "Angelina", "Empty"]  # --person first, then --folders
    assert out["Angelina"] == {"person": "Angelina", "enrolled": 2, "skipped": []}
    assert out["John Simm"]["enrolled"] == 1
    assert [(Path(s["path"]).name, "not an image" in s["reason"]) for s in out["John Simm"]["skipped"]] == [
        ("broken.jpg", True)
    ]
    assert out["Ghost"]["enrolled"] == 0 and "no such file" in out["Ghost"]["skipped"][0]["reason"]
    assert out["Empty"]["skipped"] == [{"path": str(people / "Empty"), "reason": "no image files in the folder"}]
    assert out[too_long]["enrolled"] == 0 and "limited to 100 characters" in out[too_long]["error"]
    # Only what was enrolled is in the library: nothing half-written for the others.
    (persons,) = lines(cli("persons", "--db", str(db)))
    assert sorted((p["name"], p["embeddings"]) for p in persons["persons"]) == [("Angelina", 2), ("John Simm", 1)]


def test_enroll_refuses_mixed_or_malformed_arguments(tmp_path: Path, data_dir: Path) -> None:
    img = str(data_dir / DEEPFACE / "img1.jpg")
    db = str(tmp_path / "db")
    for args, error in (
        (["--person", img], "NAME=PATH"),
        (["--name", "A", "--person", f"B={img}"], "either --name"),
        (["--name", "A"], "needs --name NAME and image paths"),
        (["--folders", img], "one sub-folder per person"),
    ):
        proc = cli("enroll", "--db", db, *args, check=False)
        assert proc.returncode == 1 and error in lines(proc)[0]["error"], args
    assert not Path(db).exists()  # refused before the library was opened
