"""Reading still images with clear errors and bounded memory.

A photo is checked from its header before a single pixel is decoded: a decompression bomb (a
0.4 MB PNG declaring 20000 x 20000 grey pixels, which OpenCV would expand to 1.2 GB of BGR) is
refused with ``too_large`` in microseconds. Pillow reads the header (``Image.open`` is lazy: format,
width, height only); OpenCV then decodes, as before, on a small decode pool under a process-wide
memory budget (:class:`DecodeBudget`), so parallel decodes cannot add up past it and a caller (the
command thread) waits at most :data:`DECODE_TIMEOUT_SECONDS` for one.

Why Pillow for the header rather than OpenCV's own ``OPENCV_IO_MAX_IMAGE_PIXELS``: OpenCV reads
that variable once per process (at its first decode, so it must be set before anything imports and
uses ``cv2``), applies it to every caller, and when an image exceeds it ``cv2.imdecode`` logs and
returns ``None``, the same as for a corrupt file, so the user could not be told "too large, the
limit is N". Pillow is restricted to the formats OpenCV decodes with the same dimensions
(:data:`FORMATS`), and anything Pillow cannot identify is refused rather than handed to OpenCV.

Errors are :class:`ImageError` (an :class:`~facetrack.errors.ImageReadError`) with a ``code``:
``too_large`` (file, pixel or decoded-size limit, the limit in the message), ``not_an_image``,
``busy`` (the decode budget stayed full), ``bad_request`` (missing file, a folder, a bad path).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import io
import os
import re
import stat
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from facetrack.errors import ImageReadError
from facetrack.inference.base import Frame

#: Larger files are refused before decoding (a 50 MB JPEG is not a face photo).
MAX_IMAGE_BYTES = 50 * 1024 * 1024
#: Largest image accepted, width x height, read from the header (40 MP: 7300 x 5480; phone
#: cameras give 12-24 MP by default). Face detection works on a downscaled copy anyway
#: (``detector_input_size``, 640 px), so nothing a face photo needs is lost.
MAX_IMAGE_PIXELS = 40_000_000
#: The decoded array is always ``(H, W, 3) uint8`` BGR, whatever the source depth (OpenCV
#: converts 16-bit and alpha rows as it reads them), so the decoded size is 3 bytes a pixel.
DECODED_BYTES_PER_PIXEL = 3
#: Largest decoded array: :data:`MAX_IMAGE_PIXELS` x 3 bytes (120 MB).
MAX_DECODED_BYTES = MAX_IMAGE_PIXELS * DECODED_BYTES_PER_PIXEL
#: Memory reserved while one image decodes, as a multiple of its decoded size. Measured with
#: OpenCV 4.14 (``ru_maxrss`` around one ``cv2.imdecode``): a 36 MP PNG (8-bit grey, 8-bit RGB or
#: 16-bit RGBA alike) peaks at 2.0x its 108 MB output, a 40 MP JPEG at 1.0x; EXIF rotation copies
#: the output once.
DECODE_WORK_FACTOR = 2
#: Decoded bytes that may be in flight at once across the process (:class:`DecodeBudget`): one
#: largest image (240 MB reserved) or several ordinary ones (a 12 MP photo reserves 72 MB).
DECODE_BUDGET_BYTES = 256 * 1024 * 1024
#: Threads that decode (OpenCV releases the GIL while decoding).
DECODE_THREADS = 2
#: How long a caller waits for room in the budget before ``busy``, and for its decode to finish
#: before giving up (a 40 MP image decodes in about a second; the decode goes on in its thread and
#: keeps its reservation until it ends, so the budget stays true).
DECODE_WAIT_SECONDS = 60.0
DECODE_TIMEOUT_SECONDS = 60.0
#: Pillow format names accepted; OpenCV decodes these to the dimensions in their headers. (Pillow
#: reports a camera JPEG holding several pictures as ``MPO``: OpenCV decodes its first, the size
#: Pillow reports.)
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
_MIN_SIDE = 8
_LIMIT = f"images are limited to {MAX_IMAGE_PIXELS / 1e6:g} megapixels ({MAX_DECODED_BYTES / 1e6:.0f} MB decoded)"


class ImageError(ImageReadError):
    """An image refused or unreadable; ``code`` is the command error code (``too_large``,
    ``not_an_image``, ``busy``, ``bad_request``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an image's header says: Pillow ``format`` name, ``width`` and ``height`` in pixels,
    Pillow ``mode`` (``"L"``, ``"RGB"``, ...)."""

    format: str
    width: int
    height: int
    mode: str

    @property
    def pixels(self) -> int:
        """``width * height``."""
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Size of the decoded ``(H, W, 3) uint8`` array, bytes."""
        return self.pixels * DECODED_BYTES_PER_PIXEL

    @property
    def work_bytes(self) -> int:
        """Memory reserved in the decode budget while it decodes, bytes."""
        return self.decoded_bytes * DECODE_WORK_FACTOR


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def probe_image(data: bytes, name: str = "<bytes>") -> ImageInfo:
    """Read an image's header (no pixel is decoded) and check it against the limits.

    Raises:
        ImageError: ``too_large`` (over :data:`MAX_IMAGE_BYTES`, :data:`MAX_IMAGE_PIXELS` or
            :data:`MAX_DECODED_BYTES`), ``not_an_image`` (empty, not one of :data:`FORMATS`, a
            corrupt header, under 8 pixels a side).
    """
    if not data:
        raise ImageError("not_an_image", f"{name}: empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError("too_large", f"{name}: {_mb(len(data))}; images are limited to {_mb(MAX_IMAGE_BYTES)}")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns past 89 MP and raises past 179 MP; ours is stricter.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                info = ImageInfo(str(im.format), int(im.width), int(im.height), str(im.mode))
    except Image.DecompressionBombError as err:  # Pillow's own check, past twice its 89 MP
        said = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(said.group(1)) / 1e6:.0f} MP" if said else "over 179 MP"
        raise ImageError("too_large", f"{name}: {size} (a decompression bomb); {_LIMIT}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error):
        kinds = ", ".join(FORMATS)
        raise ImageError("not_an_image", f"{name}: not an image, or corrupt (accepted: {kinds})") from None
    if info.pixels > MAX_IMAGE_PIXELS or info.decoded_bytes > MAX_DECODED_BYTES:
        raise ImageError(
            "too_large",
            f"{name}: {info.width} x {info.height} pixels ({info.pixels / 1e6:.1f} MP, {_mb(info.decoded_bytes)} "
            f"decoded); {_LIMIT}",
        )
    if min(info.width, info.height) < _MIN_SIDE:
        raise ImageError("not_an_image", f"{name}: {info.width} x {info.height} pixels is not a photo")
    return info


class DecodeBudget:
    """A counting semaphore over bytes: reservations wait until the bytes in use plus theirs fit
    ``limit_bytes`` (thread-safe). ``peak`` is the most ever reserved at once."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError("limit_bytes must be positive")
        self.limit = limit_bytes
        self.in_use = 0
        self.peak = 0
        self._cond = threading.Condition()

    def reserve(self, nbytes: int, timeout: float) -> bool:
        """Reserve ``nbytes`` (at most ``limit``), waiting up to ``timeout`` s; False if no room came."""
        if not 0 <= nbytes <= self.limit:
            raise ValueError(f"cannot reserve {nbytes} bytes of a {self.limit}-byte budget")
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_use + nbytes <= self.limit, timeout):
                return False
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
            return True

    def release(self, nbytes: int) -> None:
        """Give back a reservation."""
        with self._cond:
            self.in_use -= nbytes
            self._cond.notify_all()


#: The process-wide budget every :func:`decode_image` call shares.
BUDGET = DecodeBudget(DECODE_BUDGET_BYTES)
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="facetrack-decode")


def _decode(data: bytes, budget: DecodeBudget, reserved: int) -> Frame | None:
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)  # EXIF orientation applied
        return None if img is None else np.ascontiguousarray(img)
    finally:
        budget.release(reserved)


def decode_image(
    data: bytes,
    name: str = "<bytes>",
    *,
    budget: DecodeBudget | None = None,
    timeout: float = DECODE_TIMEOUT_SECONDS,
) -> Frame:
    """Decode JPEG/PNG/WebP/BMP/TIFF bytes to ``(H, W, 3) uint8`` BGR (EXIF orientation applied).

    The header is checked first (:func:`probe_image`); the pixels are decoded on the decode pool
    once :attr:`ImageInfo.work_bytes` fit in ``budget`` (default :data:`BUDGET`).

    Raises:
        ImageError: ``too_large``, ``not_an_image`` (see :func:`probe_image`; also a body that
            does not decode), ``busy`` (no room in the budget within :data:`DECODE_WAIT_SECONDS`,
            or the decode took over ``timeout`` s).
    """
    info = probe_image(data, name)
    budget = budget or BUDGET
    reserved = min(info.work_bytes, budget.limit)
    if not budget.reserve(reserved, DECODE_WAIT_SECONDS):
        raise ImageError("busy", f"{name}: other images are being decoded; try again")
    try:
        future = _POOL.submit(_decode, data, budget, reserved)
    except RuntimeError:  # the pool is shut down: the interpreter is exiting
        budget.release(reserved)
        raise ImageError("busy", f"{name}: the engine is stopping") from None
    try:
        img = future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise ImageError("busy", f"{name}: decoding took over {timeout:g} s; refused") from None
    if img is None or img.ndim != 3 or min(img.shape[:2]) < _MIN_SIDE:
        raise ImageError("not_an_image", f"{name}: not an image, or corrupt")
    return img


def read_image(path: str | Path) -> Frame:
    """Read an image file to ``(H, W, 3) uint8`` BGR, reading at most :data:`MAX_IMAGE_BYTES`.

    Only regular files are read (a FIFO or a device would block or never end).

    Raises:
        ImageError: ``bad_request`` (missing, a folder, unreadable, a bad path), ``too_large``,
            ``not_an_image``, ``busy`` (see :func:`decode_image`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ImageError("bad_request", f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError("bad_request", f"{path}: is a directory") from None
    except OSError as err:
        raise ImageError("bad_request", f"{path}: cannot read ({err.strerror})") from None
    except ValueError:  # an embedded NUL
        raise ImageError("bad_request", f"{str(path)!r}: not a valid path") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("bad_request", f"{path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("not_an_image", f"{path}: not a regular file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageError("too_large", f"{path}: {_mb(st.st_size)}; images are limited to {_mb(MAX_IMAGE_BYTES)}")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_IMAGE_BYTES + 1)  # the file may have grown since fstat: probed below
    except OSError as err:
        raise ImageError("bad_request", f"{path}: cannot read ({err.strerror})") from None
    finally:
        os.close(fd)
    return decode_image(data, str(path))


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc() if os.name == "posix" else None


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op without it).

    Buffers of a few MB (uploaded photos, their base64) come from malloc's arenas, which keep
    freed space; without this, RSS stays at its peak after a burst of uploads.
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


#: glibc's ``mallopt`` parameter number of ``M_ARENA_MAX`` (malloc.h).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for threads created from now on (``mallopt(M_ARENA_MAX)``, the
    ``MALLOC_ARENA_MAX`` environment variable set from inside). By default glibc gives each
    thread that contends for the heap its own arena, up to 8 per core, and each keeps its freed
    memory; with several camera and clip-encoder threads handling multi-MB frames that is tens
    of MB per camera (measured in benchmarks/README.md "Memory"). Returns whether it was applied
    (False without glibc, or when the environment variable already decides)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, int(arenas)))


def encode_jpeg(img: Frame, quality: int = 90) -> bytes:
    """JPEG bytes of a ``(H, W, 3) uint8`` BGR image at ``quality`` (0-100, OpenCV's scale).

    Raises:
        ValueError: OpenCV could not encode it (e.g. an empty image).
    """
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf)


#: Margin around a face box kept as context (fraction of the box side, each way) and the longest
#: side of the kept context, pixels: enough for a second descriptor's own alignment (dlib's
#: 150x150 chip with its 25 % padding) without holding the frame.
CONTEXT_MARGIN = 0.5
CONTEXT_MAX_SIDE = 256


def face_context(frame: Frame, box: npt.ArrayLike) -> tuple[Frame, npt.NDArray[np.float32]]:
    """The face at ``box`` with context around it, as a small independent image.

    Args:
        frame: ``(H, W, 3) uint8`` BGR.
        box: ``(4,)`` ``x1, y1, x2, y2`` in frame pixels.

    Returns:
        ``(crop, box_in_crop)``: a copy ``(h, w, 3) uint8`` of the box enlarged by
        :data:`CONTEXT_MARGIN` (clipped to the frame), downscaled so its longer side is at most
        :data:`CONTEXT_MAX_SIDE`, and the face box ``(4,) float32`` in the crop's pixels.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    h, w = frame.shape[:2]
    mx, my = CONTEXT_MARGIN * (x2 - x1), CONTEXT_MARGIN * (y2 - y1)
    cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    cx2, cy2 = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    region = frame[cy1:cy2, cx1:cx2]
    scale = min(1.0, CONTEXT_MAX_SIDE / max(1, region.shape[0], region.shape[1]))
    size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
    small = cv2.resize(region, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else region.copy()
    crop: Frame = np.asarray(small, dtype=np.uint8)
    inner = np.array([(x1 - cx1) * scale, (y1 - cy1) * scale, (x2 - cx1) * scale, (y2 - cy1) * scale], dtype=np.float32)
    return crop, inner
