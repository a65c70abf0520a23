"""Which face an enrolment takes (:meth:`FaceRecognizer.enrolment_face`): a photo's only (or clearly
dominant) face, or a camera snapshot's largest usable face among several; the ``enroll`` command's
``pick`` and its answer (the face's box, how many faces were seen).

The several-face image is insightface's ``t1.jpg`` (a group photo of six, faces of similar size).
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.commands import CommandHandler, LibraryVerbsContext
from facetrack.config import FaceTrackerConfig
from facetrack.images import read_image
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.quality import assess
from facetrack.recognizer import FaceRecognizer, UnusableImageError
from facetrack.verbs import CommandError

GROUP = "insightface_wheel/insightface/data/images/t1.jpg"
SINGLE = "deepface/tests/unit/dataset/img1.jpg"


@pytest.fixture(scope="module")
def group_photo(data_dir: Path) -> np.ndarray:
    return read_image(data_dir / GROUP)


@pytest.fixture
def recognizer(backend: InferenceBackend, config: FaceTrackerConfig, tmp_path: Path) -> FaceRecognizer:
    library = FaceLibrary(tmp_path / "faces.lance", backend.model_id, backend.embedding_dim)
    return FaceRecognizer(backend, config, library)


def _largest_usable(rec: FaceRecognizer, image: np.ndarray) -> list[float]:
    for det in sorted(rec.backend.detect(image), key=lambda d: -d.size):
        if assess(det, rec.backend.aligned_crop(image, det), rec.enrol_filters).usable:
            return [round(float(v), 1) for v in det.box]
    raise AssertionError("no usable face")


def test_a_photo_with_several_similar_faces_is_refused(recognizer: FaceRecognizer, group_photo: np.ndarray) -> None:
    with pytest.raises(UnusableImageError, match="faces of similar size"):
        recognizer.enrolment_face(group_photo)


def test_a_snapshot_enrols_its_largest_usable_face(recognizer: FaceRecognizer, group_photo: np.ndarray) -> None:
    seen = len(recognizer.backend.detect(group_photo))
    assert seen >= 5
    face = recognizer.enrolment_face(group_photo, "largest")
    assert face.faces == seen
    assert list(face.box) == _largest_usable(recognizer, group_photo)
    assert face.embedding.shape == (recognizer.backend.embedding_dim,)
    assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-3
    crop = cv2.imdecode(np.frombuffer(face.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3)


def test_a_snapshot_without_a_usable_face_says_how_many_were_seen(
    recognizer: FaceRecognizer, group_photo: np.ndarray
) -> None:
    # Far away: the faces are still found, but all below the size an enrolment needs.
    h, w = group_photo.shape[:2]
    small = cv2.resize(group_photo, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    seen = len(recognizer.backend.detect(small))
    assert seen >= 2
    with pytest.raises(UnusableImageError) as err:
        recognizer.enrolment_face(small, "largest")
    message = str(err.value)
    assert f"none of the {seen} faces seen is usable" in message
    assert "enroll_track" in message and "face too small" in message
    with pytest.raises(UnusableImageError, match="no face found"):
        recognizer.enrolment_face(np.zeros((240, 320, 3), np.uint8), "largest")


def test_the_enroll_command_picks_and_names_the_face(recognizer: FaceRecognizer, data_dir: Path) -> None:
    assert recognizer.library is not None
    ctx = LibraryVerbsContext(recognizer.library, recognizer, None, lambda _name: None, lambda: [])
    handler = CommandHandler(ctx, respond=lambda _rid, _payload: None)
    photo = base64.b64encode((data_dir / GROUP).read_bytes()).decode()
    handler.start()
    try:
        with pytest.raises(CommandError) as err:
            handler.call("enroll", {"name": "Front", "image_base64": photo}, timeout=120)
        assert err.value.code == "bad_request" and "similar size" in str(err.value)
        single = base64.b64encode((data_dir / SINGLE).read_bytes()).decode()
        answer = handler.call("enroll", {"name": "Single", "image_base64": single}, timeout=120)
        assert set(answer) == {"person", "person_id", "embeddings"}  # a photo's answer is as it was
        result = handler.call("enroll", {"name": "Front", "image_base64": photo, "pick": "largest"}, timeout=120)
        assert result["person"] == "Front" and result["embeddings"] == 1
        assert result["faces"] >= 5
        assert result["box"] == _largest_usable(recognizer, read_image(data_dir / GROUP))
        with pytest.raises(CommandError) as err:
            handler.call("enroll", {"name": "Front", "image_base64": photo, "pick": "all"}, timeout=120)
        assert err.value.code == "bad_request"
    finally:
        handler.stop()
