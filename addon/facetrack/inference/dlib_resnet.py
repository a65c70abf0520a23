"""dlib's ResNet face descriptor: the second opinion on matches SFace alone cannot decide.

Model: ``dlib_face_recognition_resnet_model_v1`` (Davis King, dlib 19.3+; a ResNet-29 trained
with a metric loss on about 3 million faces; 99.38 % on LFW; CC0), with dlib's 5-point
``shape_predictor_5_face_landmarks`` (CC0) to align its own 150x150 chip from our detector's box:
the network was trained on dlib's alignment, and feeding it SFace's 112x112 crop instead makes it
misidentify (measured on shared/data: 3 of 84 genuine probes wrong vs 0). dlib's 68-point
predictor (iBUG 300-W, not free for commercial use) is neither needed nor shipped.

Descriptors are compared by Euclidean distance; dlib's documented decision rule is "same person
below 0.6" (http://dlib.net/face_recognition.py.html). Failure modes differ from SFace's: on the
dev stills the look-alike stranger SFace scores 0.487 (kate_siegel vs angelina_jolie) is at
distance 0.61, while the weakest genuine SFace matches (0.54-0.61) are at 0.41-0.46.

Cost: about 150 ms per face on one core of this machine (2-core x86-64), so it is only consulted
for matches in SFace's grey zone (see :mod:`facetrack.track.identity`), never per frame.
The library is ``dlib-bin`` (PyPI wheels for x86-64 and aarch64, no compiler needed).
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.images import face_context
from facetrack.inference.base import FloatArray, Frame, InferenceUnavailableError

#: Model identity recorded with the descriptors a face library stores.
MODEL_ID = "dlib_resnet_v1"
DIM = 128
#: dlib's documented same-person distance (Euclidean, descriptors of its ResNet model).
DLIB_TOLERANCE = 0.6
_MODELS = "models"
_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
_SHAPE = "shape_predictor_5_face_landmarks.dat"


def _model_path(name: str) -> Path:
    return Path(str(resources.files("facetrack").joinpath(_MODELS, name)))


class DlibResNet:
    """Lazily loaded dlib ResNet descriptor; thread-safe (one inference at a time).

    Raises (from :meth:`describe`):
        InferenceUnavailableError: dlib (``dlib-bin``) is not installed or a model file is missing.
    """

    model_id = MODEL_ID
    dim = DIM

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shape: Any = None
        self._net: Any = None
        self._dlib: Any = None

    def _load(self) -> None:
        try:
            import dlib  # heavy and optional: loaded on the first grey-zone match
        except ImportError as err:
            raise InferenceUnavailableError("the second-opinion model needs dlib: pip install dlib-bin") from err
        paths = [_model_path(_SHAPE), _model_path(_RESNET)]
        for p in paths:
            if not p.is_file():
                raise InferenceUnavailableError(f"dlib model file missing: {p}")
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(paths[0]))
        self._net = dlib.face_recognition_model_v1(str(paths[1]))

    def describe(self, image_bgr: Frame, boxes: FloatArray | list[Any]) -> FloatArray:
        """Descriptors of the faces at ``boxes`` in ``image_bgr``.

        Each face is described on its context crop (:func:`facetrack.images.face_context`: the
        box with a margin, at most 256 px), whatever the source: a full photo at enrolment, a
        camera frame, or a track's kept context crop (cutting the context of a context crop gives
        the same crop). The descriptor depends on the resolution dlib's aligner samples from
        (0.07-0.16 apart between a whole photo and its context crop), so one input keeps stored
        and probe descriptors comparable.

        Args:
            image_bgr: ``(H, W, 3) uint8`` BGR image.
            boxes: ``(N, 4)`` ``x1, y1, x2, y2`` face boxes in pixels (our detector's boxes).

        Returns:
            ``(N, 128) float32`` descriptors (not normalised: compare with Euclidean distance).
        """
        arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if arr.shape[0] == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            if self._net is None:
                self._load()
            out = np.empty((arr.shape[0], DIM), dtype=np.float32)
            for i, box in enumerate(arr):
                context, (x1, y1, x2, y2) = face_context(image_bgr, box)
                rgb = np.ascontiguousarray(context[:, :, ::-1])
                rect = self._dlib.rectangle(round(x1), round(y1), round(x2), round(y2))
                shape = self._shape(rgb, rect)
                out[i] = np.asarray(self._net.compute_face_descriptor(rgb, shape), dtype=np.float32)
        return out


_SHARED: DlibResNet | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> DlibResNet:
    """The process-wide instance: every camera's tracker and the recogniser share one copy of
    the models (about 30 MB), loaded on the first grey-zone match."""
    global _SHARED  # noqa: PLW0603 - one lazily created instance per process
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = DlibResNet()
        return _SHARED


def distances(probe: FloatArray, gallery: FloatArray) -> FloatArray:
    """Euclidean distances ``(M,) float32`` from one ``(128,)`` descriptor to ``(M, 128)`` ones."""
    if gallery.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    out: FloatArray = np.linalg.norm(gallery - probe[None, :], axis=1).astype(np.float32)
    return out
