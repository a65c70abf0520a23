"""DeGirum backend: face detection + embedding through the DeGirum PySDK (Hailo-8/8L, AI server, cloud, CPU).

One code path for every DeGirum inference host: the PySDK loads a model from a *zoo* (a local folder
of model JSON files, or a cloud zoo such as ``degirum/hailo``) and runs it on an *inference host*
(``@local`` hardware, ``@cloud``, or ``host:port`` of a DeGirum AI server) on a *device type*
(``HAILORT/HAILO8``, ``HAILORT/HAILO8L``, ``ONNX/CPU``, ``TFLITE/CPU``...).

Two model families are understood:

- ``yunet``: YuNet 2023mar float32 (the OpenCV backend's detector, shipped in ``facetrack/models``
  with a model JSON, run by DeGirum's ``ONNX/CPU`` runtime). Its raw output tensors are decoded here
  in numpy exactly like OpenCV's ``FaceDetectorYN`` (``modules/objdetect/src/face_detect.cpp``:
  ``score = sqrt(clamp(cls) * clamp(obj))``, anchor-free boxes ``(c + dx) * stride``,
  ``exp(dw) * stride``, landmarks ``(c + kx) * stride``, then ``cv2.dnn.NMSBoxes`` on integer boxes).
  DeGirum's in-JSON Python postprocessor is never used: it starts a worker process that listens on
  all network interfaces; model JSON files that name a ``PythonFile`` are refused.
- ``yolov8_kpts``: DeGirum's ``yolov8n_relu6_widerface_kpts`` models (Hailo, and other accelerators),
  whose built-in keypoint-detection postprocessor returns ``bbox`` (xyxy, frame pixels), ``score`` and
  five ``landmarks`` per face (PySDK result format: ``{"bbox", "score", "landmarks": [{"landmark":
  [x, y]}, ...]}``). This path is written from DeGirum's documentation and examples; it cannot run
  on this project's CI (no Hailo device, no network).

Embeddings: faces are aligned on their five landmarks by the same similarity transform as the
OpenCV backend (``cv2.FaceRecognizerSF.alignCrop``: ArcFace's 112x112 template), then

- ``sface``: SFace 2021dec float32 (same weights as the OpenCV backend), NCHW float RGB ``0..255``
  input like ``FaceRecognizerSF.feature``: same embedding space, so a face library built by either
  backend stays valid (``model_id`` ``sface_2021dec``; measured cosine >= 0.99, tests/test_degirum.py);
- ``arcface``: DeGirum's ArcFace MobileFaceNet models (512-d), fed the aligned uint8 crop; PySDK
  returns the embedding as ``results[0]["data"]``. A different embedding space: its own ``model_id``.

Crops and frames go through ``predict_batch`` so that several inferences are in flight at once
(the accelerator or AI server is kept busy while the host prepares the next input).

ONNX/CPU on a plain machine: DeGirum's ONNX runtime plugin (``libonnx_runtime_agent.dgp``) links
against ``libonnxruntime.so.1`` of ONNX Runtime 1.20.1 and is skipped when that library cannot be
loaded. :func:`preload_onnxruntime` loads the library of the ``onnxruntime==1.20.1`` wheel into the
process (``RTLD_GLOBAL``, its SONAME is ``libonnxruntime.so.1``) before the PySDK first lists the
devices, so the plugin finds it without ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from facetrack.inference.base import (
    Detection,
    FloatArray,
    Frame,
    InferenceBackend,
    InferenceUnavailableError,
    check_frame,
    l2_normalise,
)

_LOG = logging.getLogger("facetrack.inference.degirum")

#: Inference host designators of the PySDK.
LOCAL = "@local"
CLOUD = "@cloud"
#: The zoo shipped with the engine: YuNet + SFace float32 model JSON files beside their ONNX weights.
BUNDLED_ZOO = "bundled"
#: The zoo an AI server serves itself (``degirum server start --zoo <folder>``): the default zoo
#: when ``host`` names an AI server and no zoo is configured.
SERVER_ZOO = "server"
#: DeGirum's public cloud zoo of Hailo models (also the place to download them from once).
HAILO_CLOUD_ZOO = "degirum/hailo"
#: Environment variables a cloud token is read from when the configuration has none (PySDK convention).
TOKEN_ENV_VARS = ("DEGIRUM_TOKEN", "DEGIRUM_CLOUD_TOKEN")
#: The HailoRT releases DeGirum PySDK 1.5 ships runtime plugins for.
SUPPORTED_HAILORT = ("4.19", "4.20", "4.21", "4.22", "4.23")
#: ONNX Runtime version the PySDK 1.5 ONNX plugin is linked against (symbol version ``VERS_1.20.1``).
ONNXRUNTIME_VERSION = "1.20.1"

YUNET_CPU_MODEL = "yunet_2023mar--640x640_float_onnx_cpu_1"
SFACE_CPU_MODEL = "sface_2021dec--112x112_float_onnx_cpu_1"
#: Registry names of DeGirum's Hailo face models (``degirum/hailo`` zoo). ``arcface_mobilefacenet`` is
#: the face-embedding model DeGirum's own face pipelines (``degirum_face``) use on Hailo.
HAILO_DETECTOR = "yolov8n_relu6_widerface_kpts--640x640_quant_hailort_{chip}_1"
HAILO_EMBEDDER = "arcface_mobilefacenet--112x112_quant_hailort_{chip}_1"

_STRIDES = (8, 16, 32)
_ALIGN_SIZE = 112
# ArcFace's 5-point template for a 112x112 crop (insightface; also OpenCV's FaceRecognizerSF).
_ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Where one model comes from and where it runs.

    Attributes:
        model: model name in the zoo (DeGirum registry name, e.g.
            ``yolov8n_relu6_widerface_kpts--640x640_quant_hailort_hailo8l_1``).
        zoo: ``"bundled"`` (the YuNet/SFace zoo shipped with the engine), ``"server"`` (the zoo
            of the AI server named by ``host``), a local zoo folder (or one model JSON file), or a
            cloud zoo ``organisation/zoo`` such as ``degirum/hailo``.
        host: ``"@local"``, ``"@cloud"`` or ``host[:port]`` of a DeGirum AI server.
        device: ``RUNTIME/DEVICE`` to run on (``HAILORT/HAILO8L``, ``ONNX/CPU``...); ``None`` lets
            the PySDK pick the first the model supports.
        family: output decoding: ``yunet`` / ``yolov8_kpts`` (detectors), ``sface`` / ``arcface``
            (embedders); ``None`` infers it from the model name.
    """

    model: str
    zoo: str = BUNDLED_ZOO
    host: str = LOCAL
    device: str | None = None
    family: str | None = None

    def resolved_family(self, task: str) -> str:
        """The decoding to use for this model (``task``: ``"detector"`` or ``"embedder"``).

        Raises:
            InferenceUnavailableError: the family cannot be inferred from the model name.
        """
        if self.family:
            return self.family
        name = self.model.lower()
        for key, fam in (("yunet", "yunet"), ("kpts", "yolov8_kpts"), ("sface", "sface"), ("arcface", "arcface")):
            if key in name:
                return fam
        raise InferenceUnavailableError(
            f"cannot tell how to decode the {task} model {self.model!r}: set 'family' in its spec "
            f"({'yunet or yolov8_kpts' if task == 'detector' else 'sface or arcface'})"
        )

    @property
    def base_name(self) -> str:
        """The model name without DeGirum's ``--WxH_precision_runtime_device_version`` suffix."""
        return self.model.split("--", 1)[0]


#: Embedding models whose embedding spaces are known: name prefix -> (``model_id``, dimension).
#: SFace in the bundled zoo has the OpenCV backend's weights, hence its ``model_id``.
KNOWN_EMBEDDERS: dict[str, tuple[str, int]] = {
    "sface_2021dec": ("sface_2021dec", 128),
    "arcface_mobilefacenet": ("arcface_mobilefacenet", 512),
}

#: Preset specs per device type; ``hailo8``/``hailo8l`` take the models from ``degirum/hailo``
#: (the cloud zoo, or a local folder they were downloaded into: see DOCS.md "Offline models").
PRESETS: dict[str, tuple[ModelSpec, ModelSpec]] = {
    "ONNX/CPU": (
        ModelSpec(YUNET_CPU_MODEL, BUNDLED_ZOO, LOCAL, "ONNX/CPU", "yunet"),
        ModelSpec(SFACE_CPU_MODEL, BUNDLED_ZOO, LOCAL, "ONNX/CPU", "sface"),
    ),
    "HAILORT/HAILO8": (
        ModelSpec(HAILO_DETECTOR.format(chip="hailo8"), HAILO_CLOUD_ZOO, LOCAL, "HAILORT/HAILO8", "yolov8_kpts"),
        ModelSpec(HAILO_EMBEDDER.format(chip="hailo8"), HAILO_CLOUD_ZOO, LOCAL, "HAILORT/HAILO8", "arcface"),
    ),
    "HAILORT/HAILO8L": (
        ModelSpec(HAILO_DETECTOR.format(chip="hailo8l"), HAILO_CLOUD_ZOO, LOCAL, "HAILORT/HAILO8L", "yolov8_kpts"),
        ModelSpec(HAILO_EMBEDDER.format(chip="hailo8l"), HAILO_CLOUD_ZOO, LOCAL, "HAILORT/HAILO8L", "arcface"),
    ),
}


@dataclass(frozen=True, slots=True)
class DeGirumOptions:
    """The ``degirum`` section of the configuration.

    Attributes:
        device: ``RUNTIME/DEVICE`` whose preset models are used (keys of :data:`PRESETS`), and the
            device both models run on unless their spec says otherwise.
        host: inference host for both models unless their spec says otherwise.
        zoo: zoo for both models (``None``: the preset's).
        token: DeGirum cloud token (cloud zoo or ``@cloud``); ``None`` reads ``DEGIRUM_TOKEN`` or
            ``DEGIRUM_CLOUD_TOKEN`` from the environment. Never logged.
        detector: per-key overrides of the detector's :class:`ModelSpec` (``model``, ``zoo``,
            ``host``, ``device``, ``family``).
        embedder: the same for the embedding model.
        embedding_dim: dimension of an embedding model not in :data:`KNOWN_EMBEDDERS`.
    """

    device: str = "ONNX/CPU"
    host: str | None = None
    zoo: str | None = None
    token: str | None = field(default=None, repr=False)
    detector: Mapping[str, str] = field(default_factory=dict)
    embedder: Mapping[str, str] = field(default_factory=dict)
    embedding_dim: int | None = None

    def specs(self) -> tuple[ModelSpec, ModelSpec]:
        """The detector and embedder specs: preset, then section-wide values, then per-model keys.

        Raises:
            InferenceUnavailableError: unknown device preset without explicit model names.
        """
        preset = PRESETS.get(self.device)
        out: list[ModelSpec] = []
        for i, (task, overrides) in enumerate((("detector", self.detector), ("embedder", self.embedder))):
            if preset is None and "model" not in overrides:
                raise InferenceUnavailableError(
                    f"no preset models for device {self.device!r} (presets: {', '.join(PRESETS)}); "
                    f"name the {task} model in degirum.{task}.model"
                )
            base = preset[i] if preset is not None else ModelSpec(overrides["model"], device=self.device)
            base = replace(base, device=self.device)
            if self.host is not None:
                base = replace(base, host=self.host)
                if self.host not in (LOCAL, CLOUD):
                    base = replace(base, zoo=SERVER_ZOO)  # the AI server's own models
            if self.zoo is not None:
                base = replace(base, zoo=self.zoo)
            if "model" in overrides and overrides["model"] != base.model:
                base = replace(base, family=None)  # another model: infer its decoding from its name
            out.append(replace(base, **dict(overrides)))
        return out[0], out[1]


def bundled_zoo_path() -> Path:
    """The folder of the bundled zoo (model JSON files beside the ONNX weights in ``facetrack/models``)."""
    return Path(str(resources.files("facetrack") / "models"))


def onnxruntime_library() -> Path | None:
    """``libonnxruntime.so.1.20.1`` of the installed ``onnxruntime`` wheel, without importing it."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        return None
    lib = Path(spec.origin).parent / "capi" / f"libonnxruntime.so.{ONNXRUNTIME_VERSION}"
    return lib if lib.is_file() else None


_preload_lock = threading.Lock()
_preloaded: list[ctypes.CDLL] = []


def preload_onnxruntime() -> bool:
    """Make ONNX Runtime 1.20.1 visible to DeGirum's ``ONNX/CPU`` plugin; ``True`` if it is.

    Loads the wheel's ``libonnxruntime.so.1.20.1`` globally once per process. Must run before the
    PySDK first enumerates devices (it caches the plugin list). A missing or other-version
    onnxruntime only leaves ``ONNX/CPU`` unavailable (the error then says what to install).
    """
    with _preload_lock:
        if _preloaded:
            return True
        lib = onnxruntime_library()
        if lib is None:
            return False
        try:
            _preloaded.append(ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL))
        except OSError as err:
            _LOG.warning("cannot load %s: %s", lib, err)
            return False
        return True


def _import_degirum() -> Any:
    preload_onnxruntime()
    try:
        import degirum as dg
    except ImportError as err:
        raise InferenceUnavailableError(
            f"the degirum backend needs the DeGirum PySDK: pip install 'facetrack[degirum]' (import failed: {err})"
        ) from None
    return dg


def _token(configured: str | None) -> str:
    if configured:
        return configured
    for var in TOKEN_ENV_VARS:
        value = os.environ.get(var)
        if value:
            return value
    return ""


def _is_cloud_zoo(zoo: str) -> bool:
    return zoo.startswith(("http://", "https://")) or (
        zoo.count("/") == 1 and not zoo.startswith((".", "/", "~")) and not Path(zoo).exists()
    )


def _device_hint(device: str) -> str:
    runtime = device.split("/", 1)[0]
    if runtime == "HAILORT":
        return (
            "check that the Hailo device is present (/dev/hailo0, mapped into the container) and that "
            f"HailoRT {'/'.join(SUPPORTED_HAILORT)}.x (library and driver of the same version) is installed"
        )
    if runtime == "ONNX":
        return (
            f"install onnxruntime=={ONNXRUNTIME_VERSION} (pip install 'facetrack[degirum]'); DeGirum's ONNX "
            f"runtime plugin needs exactly that version's libonnxruntime.so.1"
        )
    return "check the DeGirum runtime for this device is installed on the inference host"


@dataclass(slots=True)
class _Letterbox:
    scale: float  # model pixels per frame pixel
    width: int
    height: int


def similarity_transform(src: FloatArray, dst: FloatArray) -> npt.NDArray[np.float64]:
    """``(2, 3)`` least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form (IEEE TPAMI 1991), the estimate OpenCV's ``FaceRecognizerSF.alignCrop``
    and insightface's ``SimilarityTransform`` use. ``src``/``dst``: ``(K, 2)`` points, ``K >= 2``.
    Degenerate input (all source points equal) gives the identity.
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mu_s, d - mu_d
    var_s = float((sc**2).sum() / len(s))
    if var_s < 1e-12:
        return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cov = dc.T @ sc / len(s)
    u, sing, vt = np.linalg.svd(cov)
    sign = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ np.diag(sign) @ vt
    scale = float((sing * sign).sum() / var_s)
    t = mu_d - scale * rot @ mu_s
    out: npt.NDArray[np.float64] = np.hstack([scale * rot, t[:, None]])
    return out


def align_face(frame_bgr: Frame, landmarks: FloatArray) -> Frame:
    """Aligned ``(112, 112, 3) uint8`` BGR crop: the 5 landmarks mapped onto ArcFace's template.

    Same similarity and bilinear warp as ``cv2.FaceRecognizerSF.alignCrop`` (the OpenCV backend).
    """
    matrix = similarity_transform(np.asarray(landmarks, dtype=np.float32).reshape(5, 2), _ARCFACE_TEMPLATE)
    crop = cv2.warpAffine(frame_bgr, matrix, (_ALIGN_SIZE, _ALIGN_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.ascontiguousarray(crop, dtype=np.uint8)


class DeGirumBackend(InferenceBackend):
    """Face detection + embedding through the DeGirum PySDK.

    Models load on first use (or :meth:`load`), so the engine starts, and a camera can report a
    missing device or model in its MQTT state, instead of the whole service failing at start-up.

    Args:
        options: the ``degirum`` configuration section (default: the bundled YuNet + SFace zoo on
            ``ONNX/CPU``).
        detector_input_size: long side, in pixels, that frames are downscaled to for the YuNet
            detector (its ONNX input is fixed at 640x640: frames are letterboxed into it, so values
            above 640 are capped). Models with an image input (Hailo) resize inside the PySDK.
        score_threshold: detection confidence below which faces are dropped (``[0, 1]``).
        nms_threshold: IoU above which overlapping detections are suppressed.
        top_k: at most this many candidates before NMS (YuNet).
        batch_size: frames/crops in flight at once in ``predict_batch``.

    Raises:
        InferenceUnavailableError: from :meth:`load` (or the first inference): PySDK missing,
            device type not available on the host, model not in the zoo, model with a Python
            postprocessor, host unreachable.
    """

    def __init__(
        self,
        options: DeGirumOptions | Mapping[str, Any] | None = None,
        detector_input_size: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        top_k: int = 500,
        batch_size: int = 8,
    ) -> None:
        if options is None:
            options = DeGirumOptions()
        elif isinstance(options, Mapping):
            options = DeGirumOptions(**options)
        if detector_input_size < 32:
            raise ValueError(f"detector_input_size must be >= 32 pixels, got {detector_input_size}")
        self.options = options
        self.detector_spec, self.embedder_spec = options.specs()
        self.detector_family = self.detector_spec.resolved_family("detector")
        self.embedder_family = self.embedder_spec.resolved_family("embedder")
        known = KNOWN_EMBEDDERS.get(self.embedder_spec.base_name)
        if known is not None:
            self.model_id, self.embedding_dim = known
        elif options.embedding_dim:
            self.model_id, self.embedding_dim = self.embedder_spec.base_name, int(options.embedding_dim)
        else:
            raise InferenceUnavailableError(
                f"unknown embedding model {self.embedder_spec.model!r}: set degirum.embedding_dim to its "
                f"embedding dimension (known: {', '.join(KNOWN_EMBEDDERS)})"
            )
        self.detector_input_size = int(detector_input_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.batch_size = max(1, int(batch_size))
        self._detector: Any = None
        self._embedder: Any = None
        self._load_lock = threading.Lock()

    # ---- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        """Connect to the zoos and hosts and load both models (idempotent).

        Raises:
            InferenceUnavailableError: see the class docstring; the message names what to do.
        """
        with self._load_lock:
            if self._detector is not None and self._embedder is not None:
                return
            dg = _import_degirum()
            detector = self._load_model(dg, self.detector_spec, "detector")
            embedder = self._load_model(dg, self.embedder_spec, "embedder")
            self._detector, self._embedder = detector, embedder
            _LOG.info(
                "degirum backend: detector %s, embedder %s (%s, model_id %s)",
                self.detector_spec.model, self.embedder_spec.model, self.embedder_spec.host, self.model_id,
            )  # fmt: skip

    def _zoo_url(self, spec: ModelSpec) -> str:
        if spec.zoo == SERVER_ZOO:
            return ""  # PySDK: an empty zoo URL on an AI server means the server's local zoo
        if spec.zoo == BUNDLED_ZOO:
            return str(bundled_zoo_path())
        if _is_cloud_zoo(spec.zoo) or spec.host != LOCAL:
            return spec.zoo
        path = Path(spec.zoo).expanduser()
        if not path.exists():
            raise InferenceUnavailableError(
                f"model zoo folder {path} does not exist; download the models into it once "
                "(DOCS.md: 'Offline models') or name a cloud zoo such as degirum/hailo"
            )
        return str(path)

    def _load_model(self, dg: Any, spec: ModelSpec, task: str) -> Any:
        from degirum.exceptions import DegirumException

        zoo_url = self._zoo_url(spec)
        needs_token = spec.host == CLOUD or (_is_cloud_zoo(spec.zoo) and spec.zoo not in (BUNDLED_ZOO, SERVER_ZOO))
        token = _token(self.options.token) if needs_token else ""
        where = f"{spec.host} (zoo {spec.zoo})"
        try:
            zoo = dg.connect(spec.host, zoo_url, token)
        except (DegirumException, RuntimeError, OSError) as err:
            # An unreachable AI server surfaces as a plain RuntimeError from the PySDK's C++ client.
            hint = ""
            if needs_token and not token:
                hint = f"; no cloud token set (degirum.token, or {' / '.join(TOKEN_ENV_VARS)})"
            elif spec.host not in (LOCAL, CLOUD):
                hint = "; is the DeGirum AI server running and reachable (degirum server start --zoo <folder>)?"
            detail = " ".join(str(err).split())  # the C++ client's message spans lines
            raise InferenceUnavailableError(
                f"cannot connect to the DeGirum inference host {where}: {detail}{hint}"
            ) from None
        try:
            devices = list(zoo.supported_device_types())
        except DegirumException as err:
            raise InferenceUnavailableError(f"cannot list the devices of {spec.host}: {err}") from None
        if spec.device and spec.device not in devices:
            raise InferenceUnavailableError(
                f"the {task} device {spec.device} is not available on {spec.host} "
                f"(available: {', '.join(sorted(devices)) or 'none'}): {_device_hint(spec.device)}"
            )
        try:
            info = zoo.model_info(spec.model)
        except DegirumException as err:
            raise InferenceUnavailableError(
                f"the {task} model {spec.model!r} is not in the zoo {spec.zoo} ({err}); download it once into "
                "a local zoo folder (DOCS.md: 'Offline models') or check its name"
            ) from None
        if getattr(info, "PythonFile", None):
            raise InferenceUnavailableError(
                f"the {task} model {spec.model!r} uses a Python postprocessor ({info.PythonFile}); FaceTrack "
                "refuses it because the PySDK runs it in a worker that listens on all network interfaces. "
                "Use a model with a built-in postprocessor or raw outputs."
            )
        try:
            model = zoo.load_model(spec.model)
            if spec.device:
                model.device_type = spec.device
        except DegirumException as err:
            hint = f": {_device_hint(spec.device)}" if spec.device else ""
            raise InferenceUnavailableError(
                f"cannot load the {task} model {spec.model!r} on {where}: {err}{hint}"
            ) from None
        if "Image" in list(getattr(info, "InputType", [])):
            model.input_numpy_colorspace = "BGR"  # frames and crops are OpenCV BGR arrays
        model.frame_queue_depth = max(self.batch_size, 2)
        if task == "detector" and self.detector_family == "yolov8_kpts":
            model.output_confidence_threshold = self.score_threshold
            model.output_nms_threshold = self.nms_threshold
            model.input_pad_method = "letterbox"
        return model

    def _models(self) -> tuple[Any, Any]:
        if self._detector is None or self._embedder is None:
            self.load()
        return self._detector, self._embedder

    # ---- detection ---------------------------------------------------------------------------

    def detect(self, frame_bgr: Frame) -> list[Detection]:
        return self.detect_batch([frame_bgr])[0]

    def detect_batch(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """Detect faces in several frames with one pipelined ``predict_batch``.

        Args:
            frames: ``(H, W, 3) uint8`` BGR images (sizes may differ).

        Returns:
            Per frame, detections sorted by descending score, boxes clipped to the frame.

        Raises:
            ValueError: a frame is not ``(H, W, 3) uint8``.
            InferenceUnavailableError: the models cannot be loaded.
        """
        checked = [check_frame(f) for f in frames]
        if not checked:
            return []
        detector, _ = self._models()
        if self.detector_family == "yunet":
            return self._detect_yunet(detector, checked)
        if self.detector_family == "yolov8_kpts":
            return self._detect_kpts(detector, checked)
        raise InferenceUnavailableError(f"unknown detector family {self.detector_family!r} (yunet, yolov8_kpts)")

    def _yunet_inputs(self, frames: Sequence[Frame], boxes: list[_Letterbox]) -> Iterator[tuple[FloatArray, int]]:
        side = 640
        limit = min(self.detector_input_size, side)
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            scale = min(1.0, limit / max(h, w))
            if scale < 1.0:
                small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            else:
                small = frame
            sh, sw = small.shape[:2]
            boxes.append(_Letterbox(scale=scale, width=sw, height=sh))
            # YuNet's ONNX input is fixed at 640x640: pad bottom/right with zeros like FaceDetectorYN
            # pads to a multiple of 32 (the network is fully convolutional; the padding adds no faces).
            blob = np.zeros((1, 3, side, side), dtype=np.float32)
            blob[0, :, :sh, :sw] = small.transpose(2, 0, 1)
            yield blob, i

    def _detect_yunet(self, detector: Any, frames: Sequence[Frame]) -> list[list[Detection]]:
        boxes: list[_Letterbox] = []
        out: list[list[Detection]] = [[] for _ in frames]
        for result in detector.predict_batch(self._yunet_inputs(frames, boxes)):
            i = int(result.info)
            h, w = frames[i].shape[:2]
            lb = boxes[i]
            out[i] = self._decode_yunet(result.results, lb, w, h)
        return out

    def _decode_yunet(self, tensors: list[dict[str, Any]], lb: _Letterbox, w: int, h: int) -> list[Detection]:
        # Output order of the ONNX graph: cls_8/16/32, obj_8/16/32, bbox_8/16/32, kps_8/16/32.
        ordered = [np.asarray(t["data"], dtype=np.float32) for t in sorted(tensors, key=lambda t: int(t["id"]))]
        if len(ordered) != 12:
            raise InferenceUnavailableError(f"YuNet model returned {len(ordered)} tensors, expected 12 raw outputs")
        # FaceDetectorYN decodes over the frame padded to a multiple of 32, not the 640x640 input.
        pad_w = ((lb.width - 1) // 32 + 1) * 32
        pad_h = ((lb.height - 1) // 32 + 1) * 32
        rows_out: list[FloatArray] = []
        for s_idx, stride in enumerate(_STRIDES):
            grid = 640 // stride
            cls = ordered[s_idx].reshape(grid, grid)
            obj = ordered[3 + s_idx].reshape(grid, grid)
            bbox = ordered[6 + s_idx].reshape(grid, grid, 4)
            kps = ordered[9 + s_idx].reshape(grid, grid, 10)
            rows, cols = pad_h // stride, pad_w // stride
            cls, obj, bbox, kps = cls[:rows, :cols], obj[:rows, :cols], bbox[:rows, :cols], kps[:rows, :cols]
            score = np.sqrt(np.clip(cls, 0.0, 1.0) * np.clip(obj, 0.0, 1.0))
            r_idx, c_idx = np.nonzero(score >= self.score_threshold)
            if r_idx.size == 0:
                continue
            b = bbox[r_idx, c_idx]
            k = kps[r_idx, c_idx].reshape(-1, 5, 2)
            cx = (c_idx + b[:, 0]) * stride
            cy = (r_idx + b[:, 1]) * stride
            bw = np.exp(b[:, 2]) * stride
            bh = np.exp(b[:, 3]) * stride
            lm_x = (k[:, :, 0] + c_idx[:, None]) * stride
            lm_y = (k[:, :, 1] + r_idx[:, None]) * stride
            lm = np.stack([lm_x, lm_y], axis=2).reshape(-1, 10)
            rows_out.append(
                np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, lm, score[r_idx, c_idx]]).astype(np.float32)
            )
        if not rows_out:
            return []
        faces = np.concatenate(rows_out, axis=0)
        # Same NMS as FaceDetectorYN: integer boxes, then OpenCV's NMSBoxes with top_k.
        int_boxes = [[int(v) for v in r] for r in faces[:, :4]]
        keep = cv2.dnn.NMSBoxes(
            int_boxes, faces[:, 14].tolist(), self.score_threshold, self.nms_threshold, 1.0, self.top_k
        )
        inv = 1.0 / lb.scale
        dets: list[Detection] = []
        for j in np.asarray(keep, dtype=np.int64).reshape(-1):
            row = faces[j]
            x, y, fw, fh = (float(v) * inv for v in row[:4])
            box = np.array([max(0.0, x), max(0.0, y), min(float(w), x + fw), min(float(h), y + fh)], dtype=np.float32)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            lm = (row[4:14].reshape(5, 2) * inv).astype(np.float32)
            dets.append(Detection(box=box, score=float(row[14]), landmarks=lm))
        dets.sort(key=lambda d: -d.score)
        return dets

    def _detect_kpts(self, detector: Any, frames: Sequence[Frame]) -> list[list[Detection]]:
        out: list[list[Detection]] = [[] for _ in frames]
        for result in detector.predict_batch((f, i) for i, f in enumerate(frames)):
            i = int(result.info)
            h, w = frames[i].shape[:2]
            out[i] = decode_keypoint_faces(result.results, w, h, self.score_threshold)
        return out

    # ---- embedding ---------------------------------------------------------------------------

    def aligned_crop(self, frame_bgr: Frame, detection: Detection) -> Frame:
        return align_face(check_frame(frame_bgr), detection.landmarks)

    def embed(self, frame_bgr: Frame, detections: Sequence[Detection]) -> FloatArray:
        frame = check_frame(frame_bgr)
        if not detections:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self.embed_crops([align_face(frame, d.landmarks) for d in detections])

    def embed_crops(self, crops: Sequence[Frame]) -> FloatArray:
        """Embed aligned ``(112, 112, 3) uint8`` BGR crops: ``(N, D) float32``, L2-normalised.

        Raises:
            ValueError: a crop is not ``(112, 112, 3) uint8``.
            InferenceUnavailableError: the models cannot be loaded, or the model's output is not a
                ``D``-dimensional vector.
        """
        for c in crops:
            if not isinstance(c, np.ndarray) or c.shape != (_ALIGN_SIZE, _ALIGN_SIZE, 3) or c.dtype != np.uint8:
                raise ValueError(f"expected aligned (112, 112, 3) uint8 crops, got {getattr(c, 'shape', None)}")
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        _, embedder = self._models()
        feats = np.zeros((len(crops), self.embedding_dim), dtype=np.float32)
        for result in embedder.predict_batch(self._embed_inputs(crops)):
            feats[int(result.info)] = self._embedding_vector(result.results)
        return l2_normalise(feats)

    def _embed_inputs(self, crops: Sequence[Frame]) -> Iterable[tuple[Any, int]]:
        for i, crop in enumerate(crops):
            if self.embedder_family == "sface":
                # FaceRecognizerSF.feature: blobFromImage(crop, 1, 112x112, 0, swapRB=True): RGB float NCHW.
                yield np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32), i
            else:
                yield crop, i  # image input: the PySDK converts colour space and quantises

    def _embedding_vector(self, tensors: list[dict[str, Any]]) -> FloatArray:
        if not tensors or "data" not in tensors[0]:
            raise InferenceUnavailableError(
                f"the embedding model {self.embedder_spec.model!r} returned no tensor (expected raw output)"
            )
        vec = np.asarray(tensors[0]["data"], dtype=np.float32).reshape(-1)
        if vec.size != self.embedding_dim:
            raise InferenceUnavailableError(
                f"the embedding model {self.embedder_spec.model!r} returned {vec.size} values, expected a "
                f"{self.embedding_dim}-d embedding: is it a face-embedding model?"
            )
        return vec

    def close(self) -> None:
        """Release the models (and their device or server connections)."""
        for m in (self._detector, self._embedder):
            if m is not None:
                with contextlib.suppress(Exception):
                    m.__exit__(None, None, None)
        self._detector = self._embedder = None


def decode_keypoint_faces(
    results: Sequence[Mapping[str, Any]], width: int, height: int, min_score: float
) -> list[Detection]:
    """Faces from a PySDK keypoint-detection result (``yolov8n_relu6_widerface_kpts`` models).

    Args:
        results: ``InferenceResults.results``: dicts with ``bbox`` (``x1, y1, x2, y2`` frame pixels),
            ``score`` and ``landmarks`` (5 dicts with ``landmark: [x, y]``, in the order of the
            WIDER FACE / RetinaFace annotations: the eye and mouth corner on the image's left
            first, i.e. the subject's right eye, left eye, nose, right and left mouth corners,
            the order of :class:`~facetrack.inference.base.Detection` and ArcFace's template).
        width, height: frame size, to clip boxes.
        min_score: faces below this score are dropped.

    Returns:
        Detections sorted by descending score; entries without five landmarks are skipped.
    """
    dets: list[Detection] = []
    for r in results:
        try:
            score = float(r["score"])
            x1, y1, x2, y2 = (float(v) for v in r["bbox"])
            pts = [lm["landmark"] for lm in r.get("landmarks", [])]
        except (KeyError, TypeError, ValueError):
            continue
        if score < min_score or len(pts) != 5:
            continue
        box = np.array([max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)], dtype=np.float32)
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        lm = np.array([[float(p[0]), float(p[1])] for p in pts], dtype=np.float32)
        dets.append(Detection(box=box, score=score, landmarks=lm))
    dets.sort(key=lambda d: -d.score)
    return dets
