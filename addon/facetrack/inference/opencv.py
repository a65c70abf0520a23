"""OpenCV backend: YuNet detection + SFace embedding on the CPU (the offline default).

Models (shipped in ``facetrack/models``, see ``NOTICE.md`` there):
- YuNet 2023mar (Wu et al., Machine Intelligence Research 2023), run by ``cv2.FaceDetectorYN``.
- SFace 2021dec (Zhong et al., IEEE TIP 2021), alignment as ``cv2.FaceRecognizerSF.alignCrop``
  does it (the same similarity transform of the 5 landmarks onto ArcFace's 112x112 template, see
  :func:`similarity_transform`, then ``cv2.warpAffine``), forward pass batched through ``cv2.dnn``
  with the same preprocessing as ``FaceRecognizerSF.feature`` (BGR->RGB, no scaling).

Memory (measured on this machine, OpenCV 4.14, benchmarks/README.md "Memory"): an SFace network
is about 50 MB once read and about 100 MB after its first forward pass (its layer buffers), and
``FaceRecognizerSF`` reads a second copy only to offer ``alignCrop``. So alignment is done here
without it, and one SFace network per process (:class:`SharedSFace`) serves every backend (every
camera and the command handler), its forward passes serialised by a lock (``cv2.dnn.Net`` is not
thread-safe). Each backend keeps its own YuNet detector (about 20 MB at 640x360 input): detection
runs on every frame of every camera, embedding only for new or re-checked faces.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np
import numpy.typing as npt

from facetrack.inference.base import (
    Detection,
    FloatArray,
    Frame,
    InferenceBackend,
    check_frame,
    l2_normalise,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

YUNET_FILE = "face_detection_yunet_2023mar_fp32.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_fp32.onnx"
SFACE_MODEL_ID = "sface_2021dec"
SFACE_INPUT = 112
#: Largest batch pushed through SFace at once. cv2.dnn sizes its layer buffers for the batch:
#: measured (benchmarks/README.md "Memory") 46 MB after a forward pass of 1 face, 70 MB of 4,
#: 173 MB of 16, for 72, 51 and 48 ms of CPU per face: 4 keeps most of the batching gain.
_MAX_BATCH = 4
#: ArcFace's 5-point template in a 112x112 crop (eye centres, nose tip, mouth corners), and its
#: mean, as OpenCV's ``FaceRecognizerSF`` uses them (modules/objdetect/src/face_recognize.cpp).
_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
_TEMPLATE_MEAN = np.array([56.0262, 71.9008], dtype=np.float32)


def model_path(name: str) -> Path:
    """Path of a model file shipped inside the package."""
    return Path(str(resources.files("facetrack") / "models" / name))


def similarity_transform(landmarks: FloatArray) -> npt.NDArray[np.float64]:
    """The ``(2, 3) float64`` similarity transform (rotation, uniform scale, translation) taking
    the 5 landmarks ``(5, 2)`` (pixels) onto ArcFace's template in a 112x112 crop.

    Umeyama's least-squares estimate (IEEE TPAMI 1991), computed as OpenCV's
    ``FaceRecognizerSF::getSimilarityTransformMatrix`` computes it (float32 means and products,
    float64 sums, reflection handled by the sign of ``det(A)``), so crops, and therefore the
    embeddings of an existing face library, are unchanged (tests/test_inference.py compares).
    """
    src = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    f32 = np.float32
    src_mean = [f32(0.0), f32(0.0)]
    for k in range(2):
        acc = f32(0.0)
        for p in range(5):
            acc = f32(acc + src[p, k])
        src_mean[k] = f32(acc / f32(5))
    src_d = src - np.array(src_mean, dtype=np.float32)
    dst_d = _TEMPLATE - _TEMPLATE_MEAN

    def mean_of_products(x: FloatArray, y: FloatArray) -> float:
        acc = 0.0  # float64, summed in order as OpenCV does
        for v in (x * y).astype(np.float32):  # float32 products
            acc += float(v)
        return acc / 5

    a00, a01 = mean_of_products(dst_d[:, 0], src_d[:, 0]), mean_of_products(dst_d[:, 0], src_d[:, 1])
    a10, a11 = mean_of_products(dst_d[:, 1], src_d[:, 0]), mean_of_products(dst_d[:, 1], src_d[:, 1])
    a = np.array([[a00, a01], [a10, a11]], dtype=np.float64)
    d = np.array([1.0, 1.0])
    if a00 * a11 - a01 * a10 < 0:
        d[1] = -1.0
    u, s, vt = np.linalg.svd(a)
    tol = float(s.max()) * 2 * float(np.finfo(np.float32).tiny)
    rank = int(s[0] > tol) + int(s[1] > tol)
    det_u = u[0, 0] * u[1, 1] - u[0, 1] * u[1, 0]
    det_vt = vt[0, 0] * vt[1, 1] - vt[0, 1] * vt[1, 0]
    if rank == 1 and det_u * det_vt > 0:
        t = u @ vt
    elif rank == 1:
        t = u @ np.diag([d[0], -1.0]) @ vt
    else:
        t = u @ np.diag(d) @ vt
    var = mean_of_products(src_d[:, 0], src_d[:, 0]) + mean_of_products(src_d[:, 1], src_d[:, 1])
    scale = 1.0 / var * float(s[0] * d[0] + s[1] * d[1])
    mx, my = float(src_mean[0]), float(src_mean[1])
    out = np.empty((2, 3), dtype=np.float64)
    for r in range(2):
        ts = t[r, 0] * mx + t[r, 1] * my
        out[r, 2] = float(_TEMPLATE_MEAN[r]) - scale * ts
        out[r, 0], out[r, 1] = t[r, 0] * scale, t[r, 1] * scale
    return out


class SharedSFace:
    """One SFace network per process (model file), read on first use and shared by every
    :class:`OpenCVBackend`; forward passes are serialised by a lock (``cv2.dnn.Net`` is not
    thread-safe). Cost of sharing: an embedding waits while another camera's runs (a few ms per
    face); saving: about 100 MB per camera."""

    _instances: ClassVar[dict[str, SharedSFace]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._net: cv2.dnn.Net | None = None

    @classmethod
    def get(cls, path: str) -> SharedSFace:
        """The process's network for the model at ``path`` (not read yet)."""
        with cls._instances_lock:
            inst = cls._instances.get(path)
            if inst is None:
                inst = cls._instances[path] = cls(path)
            return inst

    def forward(self, blob: npt.NDArray[Any]) -> FloatArray:
        """``(N, 3, 112, 112) float32`` blob -> ``(N, 128) float32`` raw features (any thread)."""
        with self._lock:
            if self._net is None:
                self._net = cv2.dnn.readNetFromONNX(self.path)
            self._net.setInput(blob)
            return np.asarray(self._net.forward(), dtype=np.float32).reshape(blob.shape[0], -1)


class OpenCVBackend(InferenceBackend):
    """YuNet + SFace through OpenCV's DNN module.

    Args:
        detector_input_size: the long side, in pixels, that frames are resized to before
            detection (only downscaled, never upscaled). 640 finds faces down to about 12 px in
            the resized frame; raise it for small faces in high-resolution streams.
        score_threshold: YuNet confidence below which candidates are dropped (``[0, 1]``). The
            tracker uses low-score detections for association (ByteTrack), so this is lower than
            OpenCV's 0.9 default; see ``docs/thresholds.md`` for the measurement.
        nms_threshold: IoU above which YuNet suppresses overlapping boxes.
        top_k: at most this many candidates before NMS.
        threads: OpenCV threads (``0`` keeps OpenCV's default: all cores).
    """

    model_id = SFACE_MODEL_ID
    embedding_dim = 128
    #: ``detect`` on a part of the frame downscaled to ``detector_input_size`` costs in proportion
    #: to its area and sees what the whole frame's detection sees (the motion gate's windows,
    #: :mod:`facetrack.track.motion`); a fixed-input detector (DeGirum's 640x640) gains nothing.
    window_detection = True

    def __init__(
        self,
        detector_input_size: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        top_k: int = 500,
        threads: int = 0,
    ) -> None:
        if detector_input_size < 32:
            raise ValueError(f"detector_input_size must be >= 32 pixels, got {detector_input_size}")
        if threads:
            cv2.setNumThreads(threads)
        self.detector_input_size = int(detector_input_size)
        self.score_threshold = float(score_threshold)
        self._input_wh = (self.detector_input_size, self.detector_input_size)
        self._detector = cv2.FaceDetectorYN.create(
            str(model_path(YUNET_FILE)), "", self._input_wh, score_threshold, nms_threshold, top_k
        )
        self._sface = SharedSFace.get(str(model_path(SFACE_FILE)))

    def detect(self, frame_bgr: Frame) -> list[Detection]:
        frame = check_frame(frame_bgr)
        h, w = frame.shape[:2]
        scale = min(1.0, self.detector_input_size / max(h, w))
        if scale < 1.0:
            small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        else:
            small = frame
        sh, sw = small.shape[:2]
        if (sw, sh) != self._input_wh:
            self._detector.setInputSize((sw, sh))
            self._input_wh = (sw, sh)
        _, faces = self._detector.detect(small)
        if faces is None:
            return []
        out: list[Detection] = []
        inv = 1.0 / (small.shape[1] / w)
        inv_y = 1.0 / (small.shape[0] / h)
        for row in faces:
            x, y, bw, bh = (float(v) for v in row[:4])
            box = np.array(
                [
                    max(0.0, x * inv),
                    max(0.0, y * inv_y),
                    min(float(w), (x + bw) * inv),
                    min(float(h), (y + bh) * inv_y),
                ],
                dtype=np.float32,
            )
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            lm = (row[4:14].reshape(5, 2) * np.array([inv, inv_y], dtype=np.float32)).astype(np.float32)
            out.append(Detection(box=box, score=float(row[14]), landmarks=lm))
        out.sort(key=lambda d: -d.score)
        return out

    def aligned_crop(self, frame_bgr: Frame, detection: Detection) -> Frame:
        m = similarity_transform(detection.landmarks)
        crop = cv2.warpAffine(frame_bgr, m, (SFACE_INPUT, SFACE_INPUT), flags=cv2.INTER_LINEAR)
        return np.ascontiguousarray(crop, dtype=np.uint8)

    def embed(self, frame_bgr: Frame, detections: Sequence[Detection]) -> FloatArray:
        frame = check_frame(frame_bgr)
        if not detections:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        crops = [self.aligned_crop(frame, d) for d in detections]
        return self.embed_crops(crops)

    def embed_crops(self, crops: Sequence[Frame]) -> FloatArray:
        """Embed already aligned ``(112, 112, 3) uint8`` BGR crops: ``(N, 128) float32``, L2-normalised."""
        feats = []
        for i in range(0, len(crops), _MAX_BATCH):
            blob = cv2.dnn.blobFromImages(
                list(crops[i : i + _MAX_BATCH]), 1.0, (SFACE_INPUT, SFACE_INPUT), (0, 0, 0), swapRB=True
            )
            feats.append(self._sface.forward(blob))
        return l2_normalise(np.concatenate(feats, axis=0))
