"""Hostile images: decompression bombs, files that are not images, oversized and parallel uploads.

The bombs are real files built here without allocating their pixels: a 20000 x 20000 grey PNG
(0.39 MB: zlib fed one zero row at a time; OpenCV would expand it to 1.2 GB of BGR, 2.4 GB at its
peak), a JPEG, a WebP and a BMP whose headers declare 144-900 megapixels. They go through
:func:`facetrack.images.decode_image` and then the real paths: the MQTT ``enroll`` command
(``image_base64`` and ``image_path``) and the web page's upload, against ``facetrack serve`` and a
real Mosquitto. What is asserted: a ``too_large`` answer naming the limit, the next command
answered, and the engine's peak RSS (sampled with psutil) under its baseline + 500 MB. No time
is asserted; the speed and memory figures are in ``benchmarks/bench_hostile_images.py``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

# Names are read at use (images.X), so that on an engine without them the tests fail one by one.
from facetrack import images
from facetrack.web import api
from mqtt_helpers import Subscriber
from test_web_api import CSRF, multipart
from webui_helpers import PeakRSS, WebEngine, engine_stack, http

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]
#: How far the engine's RSS may rise over its baseline while hostile images arrive.
RSS_MARGIN = 500 * 1024 * 1024


# ---- hostile files, built without allocating their pixels ------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int, idat: bool = True) -> bytes:
    """An 8-bit grey PNG of zeros, compressed one row at a time (``idat=False``: header only)."""
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    body = b""
    if idat:
        z = zlib.compressobj(9)
        row = bytes(1 + width)  # filter byte + the row
        body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A 64 x 64 JPEG whose frame header (SOF0) declares ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def webp_bomb(width: int, height: int) -> bytes:
    """A lossless 64 x 64 WebP whose VP8L header declares ``width`` x ``height`` (at most 16384)."""
    data = bytearray(cv2.imencode(".webp", np.full((64, 64, 3), 128, np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1])
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
    data[21:25] = (bits | (width - 1) | ((height - 1) << 14)).to_bytes(4, "little")
    return bytes(data)


def bmp_bomb(width: int, height: int) -> bytes:
    """An 8 x 8 BMP whose header declares ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".bmp", np.full((8, 8, 3), 128, np.uint8))[1].tobytes())
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """The incident's 0.4 MB PNG: 20000 x 20000 grey pixels."""
    data = png_bomb(20000, 20000)
    assert len(data) < 500_000
    return data


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> Path:
    """A real portrait (one face)."""
    return data_dir / "deepface" / "tests" / "unit" / "dataset" / "img1.jpg"


# ---- the decoder ------------------------------------------------------------------------------------


def test_bombs_are_refused_from_their_header(bomb: bytes) -> None:
    budget = images.DecodeBudget(1 << 30)
    for name, data in [
        ("bomb.png", bomb),
        ("bomb.jpg", jpeg_bomb(12000, 12000)),
        ("bomb.webp", webp_bomb(16000, 16000)),
        ("bomb.bmp", bmp_bomb(30000, 30000)),
    ]:
        with pytest.raises(images.ImageError) as err:
            images.decode_image(data, name, budget=budget)
        assert err.value.code == "too_large", (name, err.value)
        assert f"{images.MAX_IMAGE_PIXELS / 1e6:g} megapixels" in str(err.value) and name in str(err.value)
    assert budget.peak == 0  # nothing was ever reserved: no pixel was decoded


def test_the_pixel_limit_is_exact() -> None:
    width = 8000
    height = images.MAX_IMAGE_PIXELS // width  # 40 MP exactly
    info = images.probe_image(png_bomb(width, height, idat=False))
    assert (info.format, info.width, info.height, info.pixels) == ("PNG", width, height, images.MAX_IMAGE_PIXELS)
    assert info.decoded_bytes == images.MAX_IMAGE_PIXELS * 3
    with pytest.raises(images.ImageError) as err:
        images.probe_image(png_bomb(width, height + 1, idat=False), "one row more")
    assert err.value.code == "too_large" and f"{width} x {height + 1} pixels" in str(err.value)


def test_ordinary_images_decode_as_opencv_decodes_them(photo: Path) -> None:
    raw = photo.read_bytes()
    reference = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(images.decode_image(raw), reference)
    assert np.array_equal(images.read_image(photo), reference)
    for ext in (".png", ".webp", ".bmp", ".tiff"):
        encoded = cv2.imencode(ext, reference)[1].tobytes()
        expected = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(images.decode_image(encoded, ext), expected), ext
    # A camera photo stored on its side (EXIF orientation 6): turned upright, as before.
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(reference[:, :, ::-1]).save(buf, "JPEG", exif=exif)
    turned = images.decode_image(buf.getvalue())
    assert turned.shape == (reference.shape[1], reference.shape[0], 3)
    assert np.array_equal(turned, cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR))


def test_what_is_not_an_image_is_named(tmp_path: Path) -> None:
    gif = io.BytesIO()
    Image.new("L", (64, 64)).save(gif, "GIF")
    tiny = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    for data in [b"", (ROOT / "README.md").read_bytes(), gif.getvalue(), png_bomb(100, 100)[:30], tiny]:
        with pytest.raises(images.ImageError) as err:
            images.decode_image(data, "upload")
        assert err.value.code == "not_an_image", err.value
    with pytest.raises(images.ImageError) as err:
        images.decode_image(b"\xff\xd8\xff" + bytes(images.MAX_IMAGE_BYTES), "huge.jpg")
    assert err.value.code == "too_large" and f"{images.MAX_IMAGE_BYTES / 1e6:.0f} MB" in str(err.value)


def test_read_image_reads_only_regular_files_of_bounded_size(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read_fifo() -> None:
        try:
            images.read_image(fifo)
        except images.ImageError as err:
            outcome.append(err)

    reader = threading.Thread(target=read_fifo, daemon=True)
    reader.start()
    reader.join(60)
    if reader.is_alive():  # it blocks on a pipe no one writes to: unblock it, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("images.read_image blocked on a FIFO")
    assert [getattr(e, "code", None) for e in outcome] == ["not_an_image"]
    sparse = tmp_path / "sparse.jpg"
    with sparse.open("wb") as f:
        f.truncate(images.MAX_IMAGE_BYTES + 1)  # no disk used, and never read
    with pytest.raises(images.ImageError) as err:
        images.read_image(sparse)
    assert err.value.code == "too_large"
    for path in (tmp_path, tmp_path / "missing.jpg", "nul\0.jpg"):
        with pytest.raises(images.ImageError) as err:
            images.read_image(path)
        assert err.value.code == "bad_request"


def test_parallel_decodes_stay_within_the_budget(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = photo.read_bytes()
    work = images.probe_image(raw).work_bytes
    budget = images.DecodeBudget(int(work * 2.5))  # room for two at a time
    real = cv2.imdecode
    lock = threading.Lock()
    running = [0, 0]  # decodes running now, most ever at once

    def watched(buf: Any, flags: int) -> Any:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        try:
            return real(buf, flags)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(images.cv2, "imdecode", watched)
    expected = real(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    results: list[bool] = []

    def worker() -> None:
        for _ in range(4):
            results.append(bool(np.array_equal(images.decode_image(raw, budget=budget), expected)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert results == [True] * 32
    assert 1 <= running[1] <= 2 and running[1] * work <= budget.limit
    assert budget.in_use == 0 and work <= budget.peak <= budget.limit


def test_a_full_budget_waits_then_refuses() -> None:
    budget = images.DecodeBudget(100)
    with pytest.raises(ValueError):
        budget.reserve(101, 1)
    assert budget.reserve(80, 1)
    assert not budget.reserve(30, 0.05)  # no room came: the caller answers busy
    got = threading.Event()
    waiter = threading.Thread(target=lambda: budget.reserve(30, 60) and got.set())
    waiter.start()
    budget.release(80)
    waiter.join(60)
    assert got.is_set() and budget.in_use == 30 and budget.peak == 80


# ---- the real engine: MQTT commands and the web page's upload -----------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[tuple[WebEngine, Subscriber]]:
    tmp = tmp_path_factory.mktemp("images")
    video = data_dir / "facenet_pytorch" / "examples" / "video.mp4"
    cameras = [{"name": "door", "source": str(video), "enabled": False}]
    with engine_stack(tmp, lambda folder, port: WebEngine(folder, port, None, video, cameras=cameras)) as stack:
        yield stack


def command(sub: Subscriber, verb: str, request_id: str, **body: Any) -> None:
    sub.publish(f"facetrack/command/{verb}", {"request_id": request_id, **body})


def answer(sub: Subscriber, request_id: str, timeout: float = 120) -> Any:
    return sub.wait_for(f"/response/{request_id}", timeout=timeout)[0].payload


def test_mqtt_bombs_get_too_large_and_the_next_command_is_answered(
    stack: tuple[WebEngine, Subscriber], bomb: bytes, photo: Path
) -> None:
    engine, sub = stack
    assert engine.proc is not None
    b64 = base64.b64encode(photo.read_bytes()).decode()
    command(sub, "enroll", "warm", name="Warm Up", image_base64=b64)  # models and arenas warm
    assert answer(sub, "warm")["ok"] is True
    (engine.tmp / "bombs").mkdir()
    (engine.tmp / "bombs" / "big.png").write_bytes(bomb)
    with PeakRSS(engine.proc.pid) as rss:
        command(sub, "enroll", "bomb_b64", name="Bomb", image_base64=base64.b64encode(bomb).decode())
        command(sub, "enroll", "bomb_path", name="Bomb", image_path="bombs/big.png")
        jpeg = base64.b64encode(jpeg_bomb(12000, 12000)).decode()
        command(sub, "enroll", "bomb_jpeg", name="Bomb", image_base64=jpeg)
        command(sub, "list", "after")  # sent at once, behind the bombs
        command(sub, "enroll", "junk", name="Bomb", image_base64=base64.b64encode(b"not an image at all").decode())
        command(sub, "enroll", "fine", name="Ann", image_base64=b64)
        replies = {rid: answer(sub, rid) for rid in ("bomb_b64", "bomb_path", "bomb_jpeg", "after", "junk", "fine")}
    for rid in ("bomb_b64", "bomb_path", "bomb_jpeg"):
        assert replies[rid]["ok"] is False and replies[rid]["error"]["code"] == "too_large", replies[rid]
        assert "40 megapixels" in replies[rid]["error"]["message"]
    assert "400 MP" in replies["bomb_path"]["error"]["message"]  # 20000 x 20000
    assert replies["after"]["ok"] is True and "Bomb" not in {p["name"] for p in replies["after"]["result"]["persons"]}
    assert replies["junk"]["error"]["code"] == "not_an_image"
    assert replies["fine"]["ok"] is True and replies["fine"]["result"]["person"] == "Ann"
    assert rss.rise < RSS_MARGIN, f"engine RSS rose {rss.rise / 1e6:.0f} MB"


def _upload(engine: WebEngine, name: str, files: list[tuple[str, bytes]]) -> tuple[int, Any]:
    body, ctype = multipart([("name", "", name), *[("photo", fname, data) for fname, data in files]])
    status, _, raw = http("POST", f"{engine.ingress}/api/enroll", body, {**CSRF, "Content-Type": ctype})
    return status, json.loads(raw)


def test_web_upload_refuses_bombs_and_oversized_files_and_removes_them(
    stack: tuple[WebEngine, Subscriber], bomb: bytes, photo: Path
) -> None:
    engine, sub = stack
    assert engine.proc is not None
    uploads = engine.tmp / "uploads"  # the engine's state folder is its library's
    rng = np.random.default_rng(17)
    with PeakRSS(engine.proc.pid) as rss:
        status, body = _upload(
            engine,
            "Bea",
            [
                ("bomb.png", bomb),
                ("bomb.webp", webp_bomb(16000, 16000)),
                ("bea.jpg", photo.read_bytes()),
                ("notes.txt", b"hello"),
                ("huge.jpg", b"\xff\xd8\xff" + rng.bytes(api.MAX_PHOTO_BYTES)),
            ],
        )
        assert status == 200, body
        statuses = [r["status"] for r in body["results"]]
        assert statuses == ["too_large", "too_large", "enrolled", "not_an_image", "too_large"], body
        assert "40 megapixels" in body["results"][0]["message"]
        assert f"{api.MAX_PHOTO_BYTES >> 20} MB" in body["results"][4]["message"]
        assert body["person"] == "Bea"
        # Over the total: the photos past it are refused and said so, the others go through.
        chunk = 9 * 1024 * 1024
        n = api.MAX_UPLOAD_BYTES // chunk + 1
        status, body = _upload(engine, "Bea", [(f"noise{i}.jpg", rng.bytes(chunk)) for i in range(n)])
        assert status == 200, body
        statuses = [r["status"] for r in body["results"]]
        assert statuses == ["not_an_image"] * (n - 1) + ["too_large"], statuses
        assert f"{api.MAX_UPLOAD_BYTES >> 20} MB in all" in body["results"][-1]["message"]
        command(sub, "list", "after_upload")
        assert answer(sub, "after_upload")["ok"] is True
    assert rss.rise < RSS_MARGIN, f"engine RSS rose {rss.rise / 1e6:.0f} MB"
    assert uploads.is_dir() and list(uploads.iterdir()) == []  # every upload folder removed
