"""The OpenCV backend's memory savings keep its output: alignment without ``FaceRecognizerSF``
gives the very crops OpenCV's ``alignCrop`` gives, and one SFace network serves every backend."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.inference.opencv import SFACE_FILE, OpenCVBackend, SharedSFace, model_path, similarity_transform


def _faces(data_dir: Path, backend: OpenCVBackend, limit: int = 40) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for path in sorted((data_dir / "deepface").rglob("*.jpg")):
        image: Any = cv2.imread(str(path))
        if image is None:
            continue
        out.extend((image, d) for d in backend.detect(image)[:2])
        if len(out) >= limit:
            break
    return out


def test_alignment_matches_opencv_aligncrop_pixel_for_pixel(data_dir: Path) -> None:
    backend = OpenCVBackend()
    reference = cv2.FaceRecognizerSF.create(str(model_path(SFACE_FILE)), "")
    faces = _faces(data_dir, backend)
    assert len(faces) >= 20
    for image, det in faces:
        row = np.zeros((1, 15), np.float32)
        x1, y1, x2, y2 = det.box
        row[0, :4] = (x1, y1, x2 - x1, y2 - y1)
        row[0, 4:14] = det.landmarks.reshape(-1)
        expected = reference.alignCrop(image, row)
        got = backend.aligned_crop(image, det)
        assert got.shape == (112, 112, 3) and got.dtype == np.uint8
        assert np.array_equal(got, expected)


def test_similarity_transform_maps_the_template_onto_itself() -> None:
    template = np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
        dtype=np.float32,
    )
    m = similarity_transform(template * 2 + 10)  # the same face, twice as big, shifted
    mapped = (template * 2 + 10) @ m[:, :2].T + m[:, 2]
    assert np.allclose(mapped, template, atol=1e-3)
    assert np.isclose(np.linalg.det(m[:, :2]), 0.25, atol=1e-4)  # scale 1/2 in each direction


def test_one_sface_network_shared_by_backends_and_threads(data_dir: Path) -> None:
    a, b = OpenCVBackend(), OpenCVBackend()
    assert a._sface is b._sface is SharedSFace.get(str(model_path(SFACE_FILE)))
    image, det = _faces(data_dir, a, limit=1)[0]
    crop = a.aligned_crop(image, det)
    expected = a.embed_crops([crop])
    results: list[np.ndarray] = []

    def worker(backend: OpenCVBackend) -> None:
        for _ in range(5):
            results.append(backend.embed_crops([crop, crop]))

    threads = [threading.Thread(target=worker, args=(x,)) for x in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20
    for r in results:
        assert r.shape == (2, 128)
        assert np.allclose(r, expected[0], atol=1e-5)


def test_as_many_cameras_as_cores_run_opencv_on_one_thread_each() -> None:
    """``backend_from_config(config, cameras)``: one camera keeps OpenCV's threads (a lone camera's
    latency); a camera per core or more runs each forward pass on one thread."""
    import os

    from facetrack.config import parse_config
    from facetrack.inference import backend_from_config

    before = cv2.getNumThreads()
    try:
        cfg = parse_config({})
        backend_from_config(cfg, cameras=1)
        assert cv2.getNumThreads() == before
        backend_from_config(cfg, cameras=os.cpu_count() or 1)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
