"""The DeGirum backend against the OpenCV one, on real photos, through DeGirum's ONNX/CPU runtime.

The bundled zoo (YuNet + SFace float32 with model JSON files) runs through exactly the PySDK code
path a Hailo model uses (zoo -> ``load_model`` -> ``predict_batch``); only the runtime differs. The
two backends must agree: same faces, boxes and landmarks within a few pixels, embeddings of the
same aligned crop at cosine >= 0.99. Missing devices, models, zoos and Python postprocessors give
errors that say what to do, also in a camera's MQTT state.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facetrack.camera.runner import CameraRunner
from facetrack.comms.camera import CameraReporter
from facetrack.comms.publisher import Publisher
from facetrack.config import parse_config
from facetrack.config.service import AlertConfig, CameraConfig
from facetrack.errors import ConfigError, ModelMismatchError
from facetrack.images import read_image
from facetrack.inference import InferenceBackend, backend_from_config
from facetrack.inference.base import InferenceUnavailableError
from facetrack.inference.degirum import (
    HAILO_CLOUD_ZOO,
    DeGirumBackend,
    bundled_zoo_path,
    decode_keypoint_faces,
)
from facetrack.inference.opencv import OpenCVBackend
from facetrack.library import FaceLibrary

ROOT = Path(__file__).resolve().parents[1]
#: Photos compared (every labelled photo would take minutes on 2 cores; these cover 1-3 faces,
#: 400 px to 2300 px wide).
N_PHOTOS = 24
#: Both backends detect on the same downscaled frame (long side 640) and differ only in how it is
#: padded: OpenCV resizes the network to the frame rounded up to a multiple of 32 (its layers
#: zero-pad there), the ONNX model's input is fixed at 640x640 (zero pixels beyond the frame, whose
#: activations are not zero). Camera-sized frames fill the 640 input: boxes agree within 1.5 px and
#: own-pipeline embeddings at >= 0.99. Small photos (150x150 faces filling the frame) see the
#: border: measured up to 4.4 px and cosine 0.979 there, hence the looser bounds for them.
BOX_TOL_PX = 1.5
SMALL_BOX_TOL_PX = 5.0
SMALL_MIN_COSINE = 0.97
MIN_COSINE = 0.99


@pytest.fixture(scope="module")
def opencv(backend_factory: Callable[[str], InferenceBackend]) -> OpenCVBackend:
    b = backend_factory("opencv")
    assert isinstance(b, OpenCVBackend)
    return b


@pytest.fixture(scope="module")
def degirum(backend_factory: Callable[[str], InferenceBackend]) -> DeGirumBackend:
    b = backend_factory("degirum")
    assert isinstance(b, DeGirumBackend)
    return b


@pytest.fixture(scope="module")
def photos(labels: list[dict[str, str]], data_dir: Path) -> list[tuple[str, np.ndarray]]:
    rows = labels[:: max(1, len(labels) // N_PHOTOS)][:N_PHOTOS]
    return [(r["path"], read_image(data_dir / r["path"])) for r in rows]


@pytest.fixture(scope="module")
def compared(
    photos: list[tuple[str, np.ndarray]], opencv: OpenCVBackend, degirum: DeGirumBackend
) -> list[dict[str, Any]]:
    """Per photo: both backends' detections, embeddings of OpenCV's crops by both, own-pipeline embeddings."""
    out = []
    for path, img in photos:
        a, b = opencv.detect(img), degirum.detect(img)
        crops = [opencv.aligned_crop(img, d) for d in a]
        out.append(
            {
                "path": path,
                "shape": img.shape,
                "cv": a,
                "dg": b,
                "same_crops": (opencv.embed_crops(crops), degirum.embed_crops(crops)) if crops else None,
                "own": (opencv.embed(img, a), degirum.embed(img, b)),
            }
        )
    return out


def test_same_faces_found(compared: list[dict[str, Any]]) -> None:
    counts = [(c["path"], len(c["cv"]), len(c["dg"])) for c in compared]
    assert sum(n for _, n, _ in counts) >= N_PHOTOS, "too few faces to compare"
    assert all(a == b for _, a, b in counts), [c for c in counts if c[1] != c[2]]


def test_boxes_and_landmarks_agree(compared: list[dict[str, Any]]) -> None:
    worst = {True: 0.0, False: 0.0}  # frame fills the detector input -> worst error, detector px
    for c in compared:
        scale = min(1.0, 640 / max(c["shape"][:2]))
        full = max(c["shape"][:2]) >= 640
        for x, y in zip(c["cv"], c["dg"], strict=True):  # both sorted by score
            err = max(float(np.abs(x.box - y.box).max()), float(np.abs(x.landmarks - y.landmarks).max()))
            worst[full] = max(worst[full], err * scale)
            assert abs(x.score - y.score) < 0.05, (c["path"], x.score, y.score)
    assert worst[True] <= BOX_TOL_PX, worst
    assert worst[False] <= SMALL_BOX_TOL_PX, worst


def test_embeddings_of_same_crops_agree(compared: list[dict[str, Any]]) -> None:
    cos = np.concatenate([(a * b).sum(axis=1) for a, b in (c["same_crops"] for c in compared if c["same_crops"])])
    assert cos.size >= N_PHOTOS
    assert float(cos.min()) >= MIN_COSINE, cos.min()


def test_embeddings_of_own_pipelines_agree(compared: list[dict[str, Any]]) -> None:
    """Own detection + alignment + embedding on each side: still the same embedding space."""
    for full, bound in ((True, MIN_COSINE), (False, SMALL_MIN_COSINE)):
        pairs = [c["own"] for c in compared if len(c["own"][0]) and (max(c["shape"][:2]) >= 640) == full]
        assert pairs
        cos = np.concatenate([(a * b).sum(axis=1) for a, b in pairs])
        assert float(cos.min()) >= bound, (full, cos.min())


def test_embeddings_unit_norm_and_discriminative(compared: list[dict[str, Any]], degirum: DeGirumBackend) -> None:
    emb = np.concatenate([c["own"][1] for c in compared if len(c["own"][1])])
    assert emb.shape[1] == degirum.embedding_dim == 128
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    sims = emb @ emb.T
    off = sims[~np.eye(len(emb), dtype=bool)]
    assert float(off.min()) < 0.3  # different people are far apart: not a constant output


def test_detect_batch_equals_detect(photos: list[tuple[str, np.ndarray]], degirum: DeGirumBackend) -> None:
    frames = [img for _, img in photos[:6]]
    batched = degirum.detect_batch(frames)
    single = [degirum.detect(f) for f in frames]
    assert [len(b) for b in batched] == [len(s) for s in single]
    for bs, ss in zip(batched, single, strict=True):
        for b, s in zip(bs, ss, strict=True):
            assert np.allclose(b.box, s.box) and np.allclose(b.landmarks, s.landmarks)


def test_bad_frame_rejected(degirum: DeGirumBackend) -> None:
    with pytest.raises(ValueError, match="uint8 BGR frame"):
        degirum.detect(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="112, 112, 3"):
        degirum.embed_crops([np.zeros((50, 50, 3), dtype=np.uint8)])


# --- face library binding ----------------------------------------------------------------------


def test_library_shared_between_opencv_and_degirum_cpu(
    tmp_path: Path, opencv: OpenCVBackend, degirum: DeGirumBackend, compared: list[dict[str, Any]]
) -> None:
    """Same SFace weights -> same model_id: a library enrolled with OpenCV identifies with DeGirum."""
    assert degirum.model_id == opencv.model_id == "sface_2021dec"
    lib = FaceLibrary(tmp_path / "faces.lance", opencv.model_id, opencv.embedding_dim)
    c = next(c for c in compared if len(c["cv"]) == 1 and max(c["shape"][:2]) >= 640)
    person = lib.enroll("person", c["own"][0], [b""], [c["path"]])
    reopened = FaceLibrary(tmp_path / "faces.lance", degirum.model_id, degirum.embedding_dim)
    match = reopened.match(c["own"][1], MIN_COSINE)
    assert match[0].person_id == person.person_id and match[0].similarity >= MIN_COSINE


def test_hailo_embedder_cannot_open_sface_library(tmp_path: Path, opencv: OpenCVBackend) -> None:
    FaceLibrary(tmp_path / "faces.lance", opencv.model_id, opencv.embedding_dim)
    hailo = DeGirumBackend({"device": "HAILORT/HAILO8L"})  # models load lazily: no device needed here
    assert hailo.model_id == "arcface_mobilefacenet" and hailo.embedding_dim == 512
    assert hailo.detector_spec.model == "yolov8n_relu6_widerface_kpts--640x640_quant_hailort_hailo8l_1"
    assert hailo.embedder_spec.zoo == HAILO_CLOUD_ZOO
    with pytest.raises(ModelMismatchError, match=r"sface_2021dec.*arcface_mobilefacenet.*enrol the people again"):
        FaceLibrary(tmp_path / "faces.lance", hailo.model_id, hailo.embedding_dim)


# --- clear errors --------------------------------------------------------------------------------


def test_missing_device_says_what_to_check(tmp_path: Path) -> None:
    b = DeGirumBackend({"device": "HAILORT/HAILO8L", "zoo": str(tmp_path)})
    with pytest.raises(
        InferenceUnavailableError, match=r"HAILORT/HAILO8L is not available on @local.*ONNX/CPU.*/dev/hailo0"
    ):
        b.load()


def test_missing_zoo_folder(tmp_path: Path) -> None:
    b = DeGirumBackend({"device": "HAILORT/HAILO8", "zoo": str(tmp_path / "nowhere")})
    with pytest.raises(InferenceUnavailableError, match="does not exist; download the models"):
        b.load()


def test_missing_model(tmp_path: Path) -> None:
    b = DeGirumBackend({"detector": {"model": "yunet_2099--640x640_float_onnx_cpu_1", "family": "yunet"}})
    with pytest.raises(InferenceUnavailableError, match=r"yunet_2099.*is not in the zoo bundled"):
        b.detect(np.zeros((64, 64, 3), dtype=np.uint8))


def test_python_postprocessor_refused(tmp_path: Path) -> None:
    """A model JSON naming a PythonFile would start a worker listening on all interfaces."""
    src = bundled_zoo_path()
    conf = json.loads((src / "yunet_2023mar--640x640_float_onnx_cpu_1.json").read_text())
    conf["POST_PROCESS"][0].update({"OutputPostprocessType": "Detection", "PythonFile": "post.py"})
    (tmp_path / "yunet_py--640x640_float_onnx_cpu_1.json").write_text(json.dumps(conf))
    (tmp_path / "post.py").write_text("class PostProcessor: ...\n")
    (tmp_path / "face_detection_yunet_2023mar_fp32.onnx").symlink_to(src / "face_detection_yunet_2023mar_fp32.onnx")
    shutil.copy(src / "sface_2021dec--112x112_float_onnx_cpu_1.json", tmp_path)
    (tmp_path / "face_recognition_sface_2021dec_fp32.onnx").symlink_to(src / "face_recognition_sface_2021dec_fp32.onnx")
    b = DeGirumBackend({"zoo": str(tmp_path), "detector": {"model": "yunet_py--640x640_float_onnx_cpu_1"}})
    with pytest.raises(InferenceUnavailableError, match=r"Python postprocessor.*listens on all network interfaces"):
        b.load()


def test_unknown_embedder_needs_dimension() -> None:
    with pytest.raises(InferenceUnavailableError, match="embedding_dim"):
        DeGirumBackend({"embedder": {"model": "facenet--160x160_float_onnx_cpu_1", "family": "arcface"}})


def test_camera_state_reports_missing_device(tmp_path: Path, video_path: Path) -> None:
    """The camera goes offline with the backend's message in its retained MQTT state."""
    tracking = parse_config({"backend": "degirum", "degirum": {"device": "HAILORT/HAILO8", "zoo": str(tmp_path)}})
    cam = CameraConfig(name="door", source=str(video_path), tracking=tracking, alerts=AlertConfig())
    lib = FaceLibrary(tmp_path / "faces.lance", "arcface_mobilefacenet", 512)
    published: list[tuple[Any, dict[str, Any], bool]] = []
    stop = threading.Event()

    class Sink:  # the MQTT client, recording
        def topic(self, *parts: str) -> str:
            return "/".join(("facetrack", *parts))

        def publish_json(self, topic: str, payload: dict[str, Any], qos: int = 0, retain: bool = False) -> None:
            published.append((topic, payload, retain))

        def clear_retained(self, topic: str) -> None:
            pass

    backend = backend_from_config(cam.tracking)
    runner = CameraRunner(cam.name, cam.source, backend, lib, cam.tracking, stop=stop, reconnect_max_seconds=60.0)
    runner.sinks.append(CameraReporter(runner.status, Publisher(Sink(), "facetrack", "facetrack/library")))
    worker = threading.Thread(target=runner.run_forever)
    worker.start()
    deadline = time.monotonic() + 60
    errors: list[str] = []
    while time.monotonic() < deadline and not errors:
        errors = [p["error"] for t, p, r in list(published) if t == "facetrack/door/state" and r and p.get("error")]
        time.sleep(0.1)
    stop.set()
    worker.join(timeout=30)
    assert errors, published
    assert "HAILORT/HAILO8 is not available" in errors[0] and "/dev/hailo0" in errors[0], errors[0]
    assert runner.status.failed_frames == 0  # reported once, not as a failed frame per frame


# --- decoding of DeGirum's keypoint detectors (Hailo), configuration, packaging -------------------


def test_decode_keypoint_faces_pysdk_result_format() -> None:
    results = [
        {
            "bbox": [10.0, 20.0, 110.0, 140.0],
            "score": 0.9,
            "category_id": 0,
            "label": "face",
            "landmarks": [{"landmark": [40.0 + 20 * (i % 2), 60.0 + 10 * i], "score": 0.9} for i in range(5)],
        },
        {"bbox": [0, 0, 50, 50], "score": 0.2, "landmarks": [{"landmark": [1, 1]}] * 5},  # below threshold
        {"bbox": [0, 0, 50, 50], "score": 0.95, "landmarks": []},  # no landmarks: cannot be aligned
        {"bbox": [90, 90, 400, 400], "score": 0.7, "landmarks": [{"landmark": [100, 100]}] * 5},
    ]
    dets = decode_keypoint_faces(results, 200, 300, 0.5)
    assert [d.score for d in dets] == [0.9, 0.7]
    assert dets[0].landmarks.shape == (5, 2) and dets[0].landmarks[1].tolist() == [60.0, 70.0]
    assert dets[1].box.tolist() == [90.0, 90.0, 200.0, 300.0]  # clipped to the frame


def test_config_validation_and_token_masked() -> None:
    cfg = parse_config(
        {"backend": "degirum", "degirum": {"device": "HAILORT/HAILO8L", "host": "10.0.0.5:8778", "token": "s3cr3t"}}
    )
    assert cfg.degirum["host"] == "10.0.0.5:8778"
    assert "s3cr3t" not in json.dumps(cfg.to_dict())
    with pytest.raises(ConfigError, match=r"degirum.device.*RUNTIME/DEVICE"):
        parse_config({"backend": "degirum", "degirum": {"device": "hailo8"}})
    with pytest.raises(ConfigError, match=r"unknown key 'degirum.detector.weights'"):
        parse_config({"degirum": {"detector": {"weights": "x"}}})


def test_image_requirements_in_sync_with_extra() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    expected = sorted(re.sub(r"\s+", "", d) for d in pyproject["project"]["optional-dependencies"]["degirum"])
    text = (ROOT / "addon" / "requirements-degirum.txt").read_text(encoding="utf-8")
    actual = sorted(re.sub(r"\s+", "", ln) for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    assert actual == expected


def test_app_options_map_to_the_degirum_section() -> None:
    from facetrack.config.addon import options_to_service_config
    from facetrack.config.service import parse_service_config

    options = {
        "cameras": [{"name": "door", "source": "rtsp://cam/stream"}],
        "backend": "degirum",
        "degirum_device": "HAILORT/HAILO8",
        "degirum_host": " 192.168.1.50:8778 ",
        "degirum_zoo": "",
        "degirum_token": "tok",
    }
    raw = options_to_service_config(options, None)
    assert raw["backend"] == "degirum"
    assert raw["degirum"] == {"device": "HAILORT/HAILO8", "host": "192.168.1.50:8778", "token": "tok"}
    service = parse_service_config(raw)
    backend = DeGirumBackend(service.cameras[0].tracking.degirum)
    assert backend.detector_spec.host == "192.168.1.50:8778" and backend.detector_spec.zoo == "server"
    assert backend.embedder_spec.model == "arcface_mobilefacenet--112x112_quant_hailort_hailo8_1"
    opencv = options_to_service_config({**options, "backend": "opencv"}, None)
    assert opencv["backend"] == "opencv" and "degirum" not in opencv
