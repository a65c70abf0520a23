"""``facetrack find-faces`` on the real street clip: per track, best crops (JPEG), embeddings,
identity and clusters; the same on a stored alert clip by name; clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from facetrack.cli import main
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.record.storage import StorageConfig, clip_key, create_storage

CLIP_ID = "20261122T081503Z_1a2b3c4d"


def _run(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["find-faces", "--no-progress", *args])
    lines = capfd.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1])


@pytest.fixture(scope="module")
def first_run(video_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One run with an empty library: JSON file, crops, annotated video."""
    tmp = tmp_path_factory.mktemp("ff")
    out = tmp / "faces.json"
    code = main([
        "find-faces", str(video_path), "--db", str(tmp / "lib"), "--clusters", "--no-progress",
        "--crops", str(tmp / "crops"), "--json", str(out), "--annotated", str(tmp / "annotated.mp4"),
    ])  # fmt: skip
    assert code == 0
    return tmp, json.loads(out.read_text())


def test_tracks_crops_embeddings_clusters(first_run: tuple[Path, dict[str, Any]], backend: InferenceBackend) -> None:
    tmp, result = first_run
    tracks = result["tracks"]
    assert result["frames"] == 105
    assert len(tracks) >= 8
    with_faces = [t for t in tracks if t["crops"]]
    assert len(with_faces) >= 8
    for t in with_faces:
        ranks = [c["rank"] for c in t["crops"]]
        assert ranks == sorted(ranks, reverse=True), "crops must come best first"
        assert t["state"] in ("unknown", "pending") and t["person"] is None  # the library is empty
        mean = np.asarray(t["mean_embedding"], np.float32)
        assert mean.shape == (backend.embedding_dim,)
        assert abs(float(np.linalg.norm(mean)) - 1.0) < 1e-3
        for c in t["crops"]:
            img = cv2.imread(c["path"])
            assert img is not None and img.shape == (112, 112, 3)
            emb = np.asarray(c["embedding"], np.float32)
            assert float(emb @ mean) > 0.2  # a crop's embedding belongs to its track
            assert t["first_frame"] <= c["frame"] <= t["last_frame"]
        assert t["cluster"] is not None
    # Clusters partition the tracks that have a usable face.
    in_clusters = sorted(i for c in result["clusters"] for i in c["tracks"])
    assert in_clusters == sorted(t["track_id"] for t in with_faces)
    assert len(result["clusters"]) < len(with_faces)  # some tracks were joined (a person seen twice)
    assert all(Path(c["crop"]).is_file() for c in result["clusters"])
    video = cv2.VideoCapture(str(tmp / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 105
    video.release()


def test_identity_of_an_enrolled_track(
    first_run: tuple[Path, dict[str, Any]],
    video_path: Path,
    backend: InferenceBackend,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Enrol one track's crops under a name: the next find-faces names that track and its cluster."""
    _, result = first_run
    track = max(result["tracks"], key=lambda t: t["embeddings"])
    library = FaceLibrary(tmp_path / "lib", backend.model_id, backend.embedding_dim)
    crops = [Path(c["path"]).read_bytes() for c in track["crops"]]
    library.enroll("Walker", np.asarray([c["embedding"] for c in track["crops"]], np.float32), crops,
                   ["find-faces"] * len(crops))  # fmt: skip
    code, again = _run(capfd, str(video_path), "--db", str(tmp_path / "lib"), "--clusters", "--no-embeddings")
    assert code == 0
    named = [t for t in again["tracks"] if t["person"] == "Walker"]
    assert named, "the enrolled track is recognised"
    assert all(t["state"] == "known" and t["similarity"] >= 0.52 for t in named)
    assert any(abs(t["first_frame"] - track["first_frame"]) <= 3 for t in named)
    assert any(c["person"] == "Walker" for c in again["clusters"])
    assert all("mean_embedding" not in t and all("embedding" not in c for c in t["crops"]) for t in again["tracks"])
    others = [t for t in again["tracks"] if t["person"] not in (None, "Walker")]
    assert not others


def test_stored_clip_by_name(
    first_run: tuple[Path, dict[str, Any]], video_path: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    storage_dir = tmp_path / "clips"
    storage = create_storage(StorageConfig(kind="local", path=str(storage_dir)))
    storage.put(clip_key("door", CLIP_ID, "original"), video_path)
    cfg = tmp_path / "service.yaml"
    cfg.write_text(yaml.safe_dump({
        "db_path": str(tmp_path / "lib"),
        "cameras": [{"name": "door", "source": str(video_path)}],
        "clips": {"storage": {"path": str(storage_dir)}},
    }))  # fmt: skip
    code, result = _run(capfd, "--clip", f"door/{CLIP_ID}", "--service-config", str(cfg), "--clusters")
    assert code == 0
    assert result["frames"] == 105
    assert len(result["tracks"]) == len(first_run[1]["tracks"])
    assert result["source"].endswith(f"door_{CLIP_ID}.mp4")
    assert not Path(result["source"]).exists()  # the downloaded copy is temporary

    code, err = _run(capfd, "--clip", "door/20261122T081503Z_ffffffff", "--service-config", str(cfg))
    assert code == 1 and "error" in err
    code, err = _run(capfd, "--clip", "../../etc/passwd", "--service-config", str(cfg))
    assert code == 1 and "expected <camera>/<clip id>" in err["error"]
    code, err = _run(capfd, "--clip", f"door/{CLIP_ID}")
    assert code == 1 and "--service-config" in err["error"]


def test_bad_input_is_a_clear_error(tmp_path: Path, video_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capfd, str(tmp_path / "missing.mp4"), "--db", str(tmp_path / "lib"))
    assert code == 1 and "missing.mp4" in err["error"]
    code, err = _run(capfd, "--db", str(tmp_path / "lib"))
    assert code == 1 and "either a VIDEO" in err["error"]
    code, err = _run(capfd, str(video_path), "--clip", f"door/{CLIP_ID}", "--db", str(tmp_path / "lib"))
    assert code == 1 and "either a VIDEO" in err["error"]
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video")
    code, err = _run(capfd, str(not_video), "--db", str(tmp_path / "lib"))
    assert code == 1 and "error" in err
