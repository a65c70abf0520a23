"""Gallery coverage (issue 15): enrolment records yaw and the dlib second descriptor, turned
photos may be enrolled, crops are chosen round-robin over pose bins, and automatic additions are
bounded per person and pose."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facetrack.commands import CommandHandler, LibraryVerbsContext
from facetrack.config import FaceTrackerConfig
from facetrack.images import face_context, read_image
from facetrack.inbox import FaceCrop, InboxConfig, InboxError, UnknownInbox
from facetrack.inference import InferenceBackend
from facetrack.inference.base import Detection, FloatArray, Frame, InferenceUnavailableError
from facetrack.inference.dlib_resnet import DlibResNet
from facetrack.library import FaceLibrary
from facetrack.library.diverse import MAX_AUTO_PER_POSE, automatic_room, is_automatic, select_diverse
from facetrack.library.second import SecondDescriber
from facetrack.quality import FaceFilters, assess, landmark_geometry
from facetrack.recognizer import ENROL_MAX_YAW, FaceRecognizer
from facetrack.track.face_tracker import BestCrop
from facetrack.verbs import CommandError

SINGLE = "deepface/tests/unit/dataset/img1.jpg"
D = 128


@dataclass(frozen=True)
class _Face:
    rank: float
    yaw: float
    tag: str = ""


def test_select_diverse_takes_the_bins_in_turn_best_first() -> None:
    crops = [
        _Face(0.9, 0.02, "f1"), _Face(0.8, -0.05, "f2"), _Face(0.7, 0.1, "f3"),
        _Face(0.5, 0.25, "t1"), _Face(0.6, -0.3, "t0"), _Face(0.2, 0.5, "p1"),
    ]  # fmt: skip
    assert [c.tag for c in select_diverse(crops, 3)] == ["f1", "t0", "p1"]
    assert [c.tag for c in select_diverse(crops, 5)] == ["f1", "t0", "p1", "f2", "t1"]
    assert [c.tag for c in select_diverse(crops, 10)] == ["f1", "t0", "p1", "f2", "t1", "f3"]
    assert select_diverse(crops, 0) == [] and select_diverse([], 3) == []
    # All frontal: simply the best k (what enroll_track took before).
    frontal = [c for c in crops if c.tag.startswith("f")]
    assert [c.tag for c in select_diverse(frontal, 2)] == ["f1", "f2"]
    # Room per bin: no frontal room left, one profile.
    room = {"frontal": 0, "three_quarter": 5, "profile": 1}
    assert [c.tag for c in select_diverse(crops, 5, room)] == ["t0", "p1", "t1"]  # type: ignore[arg-type]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_automatic_room_counts_only_automatic_embeddings_with_a_pose(tmp_path: Path) -> None:
    lib = FaceLibrary(tmp_path / "faces.lance", "test_model", D)
    rng = np.random.default_rng(0)
    assert automatic_room(lib, None) == dict.fromkeys(("frontal", "three_quarter", "profile"), MAX_AUTO_PER_POSE)
    srcs = ["photo.jpg", "inbox:ab", "auto:door/7", "door/track/3", "door/track/3", "inbox:cd"]
    yaws: list[float | None] = [0.0, 0.0, 0.4, 0.2, 0.0, None]
    p = lib.enroll("Anna", _unit(rng, 6), [b"j"] * 6, srcs, yaws=yaws)
    assert [is_automatic(s) for s in srcs] == [False, True, True, True, True, True]
    assert not is_automatic("/media/photos/track/3") and not is_automatic("mqtt:holiday/track/1.jpg")
    room = automatic_room(lib, p.person_id)
    assert room == {"frontal": MAX_AUTO_PER_POSE - 2, "three_quarter": MAX_AUTO_PER_POSE - 1,
                    "profile": MAX_AUTO_PER_POSE - 1}  # fmt: skip


class _FakeDlib(DlibResNet):
    """Descriptors from the box (so each face's is known), or unavailable."""

    def __init__(self, available: bool = True) -> None:
        super().__init__()
        self.available = available
        self.calls = 0

    def describe(self, image_bgr: Frame, boxes: FloatArray | list[Any]) -> FloatArray:
        self.calls += 1
        if not self.available:
            raise InferenceUnavailableError("the second-opinion model needs dlib: pip install dlib-bin")
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        return np.repeat(b[:, :1] / 100.0, 128, axis=1).astype(np.float32)


@dataclass
class _Camera:
    crops: list[BestCrop]

    def best_crops(self, track_id: int) -> list[BestCrop]:
        return sorted(self.crops, key=lambda c: -c.rank) if track_id == 7 else []


def _crop(rng: np.random.Generator, rank: float, yaw: float, x: float | None) -> BestCrop:
    ctx = np.zeros((200, 200, 3), np.uint8) if x is not None else None
    box = np.array([x, 20, x + 100, 120], np.float32) if x is not None else None
    return BestCrop(rank, 1, np.zeros((112, 112, 3), np.uint8), _unit(rng, 1)[0], yaw, ctx, box)


def _handler(lib: FaceLibrary, camera: _Camera, second: SecondDescriber) -> CommandHandler:
    recognizer = FaceRecognizer(None, FaceTrackerConfig(), lib, second)  # type: ignore[arg-type]
    ctx = LibraryVerbsContext(lib, recognizer, None, lambda name: camera if name == "door" else None, lambda: [])
    return CommandHandler(ctx, respond=lambda _rid, _payload: None)


def test_enroll_track_takes_one_crop_per_pose_with_yaw_and_second_descriptor(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lib = FaceLibrary(tmp_path / "faces.lance", "test_model", D)
    frontal = [_crop(rng, 0.9 - 0.1 * i, 0.01 * i, 10.0 * (i + 1)) for i in range(4)]
    profile = _crop(rng, 0.1, -0.45, None)  # no context kept: no second descriptor
    quarter = _crop(rng, 0.2, 0.25, 70.0)
    camera = _Camera([*frontal, profile, quarter])
    handler = _handler(lib, camera, SecondDescriber(_FakeDlib()))
    handler.start()
    try:
        answer = handler.call("enroll_track", {"camera": "door", "track_id": 7, "name": "Anna"}, timeout=60)
    finally:
        handler.stop()
    assert answer["enrolled"] == 3
    anna = lib.person("Anna")
    assert anna is not None and anna.poses == {"frontal": 1, "three_quarter": 1, "profile": 1}
    assert sorted(y for y in lib.embedding_yaws(anna.person_id) if y is not None) == pytest.approx([-0.45, 0.0, 0.25])
    # Descriptors of the frontal (box x 10) and three-quarter (x 70) crops; the profile has none.
    got = lib.second_descriptors(anna.person_id)
    assert sorted(float(r[0]) for r in got) == pytest.approx([0.1, 0.7])


def test_enroll_track_is_bounded_per_pose(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    lib = FaceLibrary(tmp_path / "faces.lance", "test_model", D)
    cap = MAX_AUTO_PER_POSE
    lib.enroll("Anna", _unit(rng, cap), [b"j"] * cap, ["door/track/1"] * cap, yaws=[0.0] * cap)
    camera = _Camera([_crop(rng, 0.9, 0.0, 10.0), _crop(rng, 0.8, 0.05, 20.0)])
    handler = _handler(lib, camera, SecondDescriber(_FakeDlib()))
    handler.start()
    try:
        with pytest.raises(CommandError, match="already has"):
            handler.call("enroll_track", {"camera": "door", "track_id": 7, "name": "Anna"}, timeout=60)
        camera.crops.append(_crop(rng, 0.1, 0.5, 30.0))  # a profile: room for it
        answer = handler.call("enroll_track", {"camera": "door", "track_id": 7, "name": "Anna"}, timeout=60)
    finally:
        handler.stop()
    assert answer["enrolled"] == 1
    anna = lib.person("Anna")
    assert anna is not None and anna.poses == {"frontal": cap, "profile": 1}


def test_enrolment_without_dlib_still_works_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: InferenceBackend, data_dir: Path
) -> None:
    lib = FaceLibrary(tmp_path / "faces.lance", backend.model_id, backend.embedding_dim)
    fake = _FakeDlib(available=False)
    rec = FaceRecognizer(backend, FaceTrackerConfig(), lib, SecondDescriber(fake))
    with caplog.at_level(logging.WARNING, "facetrack.library.second"):
        result = rec.enroll("Anna", [data_dir / SINGLE, data_dir / SINGLE])
    assert result.enrolled == 2 and result.person is not None
    assert result.person.poses == {"frontal": 2}
    assert lib.second_descriptors(result.person.person_id).shape == (0, 128)
    assert caplog.text.count("stores no second descriptor") == 1 and fake.calls == 1


def test_photo_enrolment_records_yaw_and_the_real_dlib_descriptor(
    tmp_path: Path, backend: InferenceBackend, data_dir: Path
) -> None:
    lib = FaceLibrary(tmp_path / "faces.lance", backend.model_id, backend.embedding_dim)
    rec = FaceRecognizer(backend, FaceTrackerConfig(), lib)
    image = read_image(data_dir / SINGLE)
    result = rec.enroll("Anna", [data_dir / SINGLE])
    assert result.person is not None
    det = max(backend.detect(image), key=lambda d: d.size)
    yaw = lib.embedding_yaws(result.person.person_id)[0]
    assert yaw == pytest.approx(landmark_geometry(det)[0], abs=1e-5)
    stored = lib.second_descriptors(result.person.person_id)
    assert stored.shape == (1, 128) and np.all(np.isfinite(stored))
    context, box = face_context(image, det.box)  # as the tracker computes its probes
    again = DlibResNet().describe(context, box[None, :])
    assert float(np.linalg.norm(stored[0] - again[0])) < 1e-4
    whole = DlibResNet().describe(image, det.box[None, :])  # the same face on the whole photo
    assert float(np.linalg.norm(stored[0] - whole[0])) < 0.3  # measured 0.07; dlib: same person below 0.6


def _turned(yaw: float, s: float = 200.0) -> Detection:
    """A face box with landmarks whose nose is shifted sideways to the yaw ratio ``yaw``."""
    x = y = 50.0
    lm = np.array(
        [[x + 0.3 * s, y + 0.4 * s], [x + 0.7 * s, y + 0.4 * s], [x + (0.5 + 0.4 * yaw) * s, y + 0.6 * s],
         [x + 0.35 * s, y + 0.8 * s], [x + 0.65 * s, y + 0.8 * s]],
        dtype=np.float32,
    )  # fmt: skip
    return Detection(np.array([x, y, x + s, y + s], np.float32), 0.95, lm)


@pytest.mark.parametrize(
    ("yaw", "enrol", "video"), [(0.1, True, True), (0.45, True, True), (0.7, False, True), (0.8, False, False)]
)
def test_turned_photos_may_be_enrolled_up_to_near_profile(yaw: float, enrol: bool, video: bool) -> None:
    config = FaceTrackerConfig()
    rec = FaceRecognizer(None, config, None)  # type: ignore[arg-type]
    det = _turned(yaw)
    assert landmark_geometry(det)[0] == pytest.approx(yaw, abs=1e-3)
    assert rec.enrol_filters.max_yaw == ENROL_MAX_YAW
    assert assess(det, None, rec.enrol_filters).usable is enrol
    video_filters: FaceFilters = config.face_filters
    assert assess(det, None, video_filters).usable is video


def _near(base: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    x = base[None, :] + 0.15 * _unit(rng, n)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_naming_an_inbox_group_takes_poses_in_turn_keeps_yaws_and_is_bounded(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lib = FaceLibrary(tmp_path / "faces.lance", "test_model", D)
    path = tmp_path / "inbox.npz"
    inbox = UnknownInbox(InboxConfig(), lib, path)
    base = _unit(rng, 1)[0]
    embs = _near(base, rng, 5)
    crop = np.zeros((112, 112, 3), np.uint8)
    yaws = [0.0, 0.05, 0.1, 0.3, -0.5]
    faces = [FaceCrop(r, crop, e, True, y) for r, e, y in zip([0.9, 0.8, 0.7, 0.5, 0.3], embs, yaws, strict=True)]
    added = inbox.add_track("door", embs.mean(axis=0), faces, 5, 1000.0, 1002.0)
    assert added is not None
    inbox.save()
    again = UnknownInbox(InboxConfig(), lib, path)  # the yaws survive a restart
    result = again.name(added.group_id, "Anna", max_embeddings=3)
    assert result.enrolled == 3
    anna = lib.person("Anna")
    assert anna is not None and anna.poses == {"frontal": 1, "three_quarter": 1, "profile": 1}
    assert sorted(y for y in lib.embedding_yaws(anna.person_id) if y is not None) == pytest.approx([-0.5, 0.0, 0.3])
    # Frontal room for automatic additions: MAX_AUTO_PER_POSE - 1 left; a frontal-only group of
    # more takes only that many, and the next one is refused (and stays in the inbox).
    for k in range(2):
        more = _near(base, rng, MAX_AUTO_PER_POSE)
        g = again.add_track(
            "door", more.mean(axis=0), [FaceCrop(0.9 - 0.01 * i, crop, e, True, 0.0) for i, e in enumerate(more)],
            5, 2000.0 + k, 2001.0 + k,
        )  # fmt: skip
        assert g is not None
        if k == 0:
            assert again.name(g.group_id, "Anna", max_embeddings=10).enrolled == MAX_AUTO_PER_POSE - 1
        else:
            with pytest.raises(InboxError, match="already has"):
                again.name(g.group_id, "Anna", max_embeddings=10)
            assert again.group(g.group_id) is not None
    anna = lib.person("Anna")
    assert anna is not None and anna.poses["frontal"] == MAX_AUTO_PER_POSE
