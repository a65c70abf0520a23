"""OpenCV backend: YuNet detection + SFace embedding on the CPU (the offline default).

Models (shipped in ``facetrack/models``, see ``NOTICE.md`` there):
- YuNet 2023mar (Wu et al., Machine Intelligence Research 2023), run by ``cv2.FaceDetectorYN``.
- SFace 2021dec (Zhong et al., IEEE TIP 2021), alignment by ``cv2.FaceRecognizerSF.alignCrop``
  (similarity transform of the 5 landmarks onto ArcFace's 112x112 template), forward pass batched
  through ``cv2.dnn`` with the same preprocessing as ``FaceRecognizerSF.feature`` (BGR->RGB, no scaling).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

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
# Largest batch pushed through SFace at once; bounds the blob to ~150 KB per face.
_MAX_BATCH = 16


def model_path(name: str) -> Path:
    """Path of a model file shipped inside the package."""
    return Path(str(resources.files("facetrack") / "models" / name))


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
        self._recognizer = cv2.FaceRecognizerSF.create(str(model_path(SFACE_FILE)), "")
        self._net = cv2.dnn.readNetFromONNX(str(model_path(SFACE_FILE)))

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
        row = np.zeros((1, 15), dtype=np.float32)
        x1, y1, x2, y2 = detection.box
        row[0, :4] = (x1, y1, x2 - x1, y2 - y1)
        row[0, 4:14] = detection.landmarks.reshape(-1)
        row[0, 14] = detection.score
        crop = self._recognizer.alignCrop(frame_bgr, row)
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
            self._net.setInput(blob)
            feats.append(np.asarray(self._net.forward()).reshape(blob.shape[0], -1))
        return l2_normalise(np.concatenate(feats, axis=0))
