"""Reading still images with clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facetrack.errors import ImageReadError
from facetrack.inference.base import Frame

#: Larger files are refused before decoding (a 50 MB JPEG is not a face photo).
MAX_IMAGE_BYTES = 50 * 1024 * 1024


def decode_image(data: bytes, name: str = "<bytes>") -> Frame:
    """Decode JPEG/PNG/BMP/WebP/... bytes to ``(H, W, 3) uint8`` BGR (EXIF orientation applied).

    Raises:
        ImageReadError: empty, oversized or not a decodable image.
    """
    if not data:
        raise ImageReadError(f"{name}: empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageReadError(f"{name}: larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] < 8 or img.shape[1] < 8:
        raise ImageReadError(f"{name}: not an image, or corrupt")
    return np.ascontiguousarray(img)


def read_image(path: str | Path) -> Frame:
    """Read an image file to ``(H, W, 3) uint8`` BGR.

    Raises:
        ImageReadError: missing, unreadable, oversized or not an image.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory") from None
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror})") from None
    return decode_image(data, str(path))
