"""Clip storage: the same behaviour on a local folder and on S3 (moto's server, real minio client, HTTP)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from facetrack.errors import ConfigError, FaceTrackError
from facetrack.record.storage import (
    ClipNotFoundError,
    ClipStorage,
    LocalClipStorage,
    StorageConfig,
    StorageError,
    clip_key,
    clip_time,
    create_storage,
    new_clip_id,
    parse_key,
)

ACCESS, SECRET = "facetrack-test", "s3cr3t-Never-Log-Me-42"
DAY = 86400.0
NOW = time.time()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's standalone S3 server on a free loopback port, for the whole module."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start on port {port}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Factory = Callable[..., ClipStorage]


@pytest.fixture(params=["local", "s3"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """``make(**config overrides)``: a fresh storage of the parametrised kind (own folder / bucket)."""
    kind = request.param

    def factory(**overrides: Any) -> ClipStorage:
        base: dict[str, Any] = {"max_age_days": None, "max_total_mb": None}
        if kind == "local":
            base |= {"kind": "local", "path": str(tmp_path / "clips")}
            signer = overrides.pop("url_signer", None)
            return create_storage(StorageConfig(**(base | overrides)), signer)
        overrides.pop("url_signer", None)
        return make_s3(request.getfixturevalue("moto_endpoint"), **(base | overrides))

    return factory


def make_s3(endpoint: str, **overrides: Any) -> ClipStorage:
    """An S3 storage on moto with a fresh bucket."""
    config: dict[str, Any] = {
        "kind": "s3",
        "endpoint": endpoint,
        "bucket": f"clips-{uuid.uuid4().hex[:12]}",
        "access_key": ACCESS,
        "secret_key": SECRET,
        "secure": False,
    }
    return create_storage(StorageConfig(**(config | overrides)))


@pytest.fixture
def storage(make: Factory) -> ClipStorage:
    return make()


def cid(days_ago: float, tag: str = "1a2b3c4d") -> str:
    return new_clip_id(NOW - days_ago * DAY, tag)


def blob(tmp_path: Path, size: int, fill: bytes | None = None) -> Path:
    path = tmp_path / f"src-{uuid.uuid4().hex}"
    path.write_bytes((fill * size)[:size] if fill else os.urandom(size))
    return path


def put_clip(s: ClipStorage, tmp_path: Path, camera: str, clip_id: str, sizes: dict[str, int]) -> None:
    for kind, size in sizes.items():
        s.put(clip_key(camera, clip_id, kind), blob(tmp_path, size), "application/octet-stream")


def raw_s3(s: ClipStorage) -> tuple[Minio, str]:
    c = s.config
    assert c.endpoint is not None
    return Minio(c.endpoint, access_key=ACCESS, secret_key=SECRET, secure=False), c.bucket


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# -- keys ------------------------------------------------------------------------------------


def test_key_helpers() -> None:
    clip_id = new_clip_id(1795335303.0, "1A2B3C4D-0000-4000-8000-000000000000")
    assert clip_id == "20261122T081503Z_1a2b3c4d"
    assert clip_time(clip_id) == 1795335303.0
    assert new_clip_id(0, "not hex at all").startswith("19700101T000000Z_")
    assert clip_key("front_door", clip_id, "annotations") == f"front_door/{clip_id}/annotations.json"
    assert parse_key(f"front_door/{clip_id}/snapshot.jpg") == ("front_door", clip_id, "snapshot")
    for bad in [
        ("Door", clip_id, "original"),
        ("door", "x", "original"),
        ("door", clip_id, "video"),
        ("a" * 33, clip_id, "original"),
    ]:
        with pytest.raises(ValueError):
            clip_key(*bad)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        StorageConfig(kind="s3", endpoint="http://minio:9000")
    with pytest.raises(ConfigError, match="bucket"):
        StorageConfig(kind="s3", endpoint="minio:9000", bucket="Bad_Bucket")
    with pytest.raises(ConfigError, match="secret_key"):
        StorageConfig(kind="s3", endpoint="minio:9000", access_key="a")
    with pytest.raises(ConfigError, match="url_expiry_seconds"):
        StorageConfig(url_expiry_seconds=8 * 24 * 3600)
    assert SECRET not in repr(StorageConfig(kind="s3", endpoint="m:9000", access_key="a", secret_key=SECRET))


# -- the same behaviour on both kinds ---------------------------------------------------------


def test_put_then_list_groups_by_clip_newest_first(storage: ClipStorage, tmp_path: Path) -> None:
    old, new = cid(2, "aaaaaaaa"), cid(1, "bbbbbbbb")
    sizes = {"original": 1000, "annotated": 2000, "annotations": 300, "snapshot": 50}
    put_clip(storage, tmp_path, "door", old, sizes)
    put_clip(storage, tmp_path, "yard", new, {"original": 700})
    clips = storage.list_clips()
    assert [(c.camera, c.clip_id) for c in clips] == [("yard", new), ("door", old)]
    door = clips[1]
    assert list(door.files) == ["original", "annotated", "annotations", "snapshot"]
    assert {k: f.size for k, f in door.files.items()} == sizes
    assert door.size == 3350
    assert door.files["annotations"].key == f"door/{old}/annotations.json"
    assert door.created == pytest.approx(NOW - 2 * DAY, abs=1)
    assert all(abs(f.modified - time.time()) < 120 for f in door.files.values())
    # put replaces
    storage.put(clip_key("door", old, "original"), blob(tmp_path, 10), "video/mp4")
    assert storage.list_clips()[1].files["original"].size == 10
    assert storage.list_clips()[1].size == 2360


def test_download_round_trip(storage: ClipStorage, tmp_path: Path) -> None:
    clip_id = cid(0)
    key = clip_key("door", clip_id, "original")
    src = blob(tmp_path, 6 * 1024 * 1024 + 123)  # above the 5 MiB multipart threshold of S3 clients
    storage.put(key, src, "video/mp4")
    dest = storage.download(key, tmp_path / "out" / "copy.mp4")
    assert dest == tmp_path / "out" / "copy.mp4"
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["copy.mp4"]  # no temporary left behind
    with pytest.raises(ClipNotFoundError) as err:
        storage.download(clip_key("door", clip_id, "snapshot"), tmp_path / "none.jpg")
    assert "snapshot.jpg" in str(err.value) and storage.kind in str(err.value)
    assert not (tmp_path / "none.jpg").exists()


def test_remove_file_clip_all(storage: ClipStorage, tmp_path: Path) -> None:
    a, b, c = cid(3, "aaaaaaaa"), cid(2, "bbbbbbbb"), cid(1, "cccccccc")
    full = {"original": 10, "annotated": 20, "annotations": 30, "snapshot": 40}
    put_clip(storage, tmp_path, "door", a, full)
    put_clip(storage, tmp_path, "door", b, full)
    put_clip(storage, tmp_path, "yard", c, {"original": 5, "snapshot": 6})
    # a foreign file beside the clips must survive remove_all
    if isinstance(storage, LocalClipStorage):
        (storage.root / "README.txt").write_text("keep me")
    else:
        client, bucket = raw_s3(storage)
        client.fput_object(bucket, "README.txt", str(blob(tmp_path, 7)))

    storage.remove_file(clip_key("door", a, "annotated"))
    storage.remove_file(clip_key("door", a, "annotated"))  # missing: no error
    assert set(storage.list_clips()[2].files) == {"original", "annotations", "snapshot"}
    assert storage.remove_clip(b) == 4
    assert storage.remove_clip(b) == 0
    assert [x.clip_id for x in storage.list_clips()] == [c, a]
    assert storage.remove_all() == 5
    assert storage.list_clips() == []
    if isinstance(storage, LocalClipStorage):
        assert (storage.root / "README.txt").read_text() == "keep me"
        assert not (storage.root / "door" / a).exists()  # emptied clip folders go too
    else:
        client, bucket = raw_s3(storage)
        assert [o.object_name for o in client.list_objects(bucket, recursive=True)] == ["README.txt"]


def test_purge_by_age(make: Factory, tmp_path: Path) -> None:
    s = make(max_age_days=30)
    old, mid, new = cid(40, "aaaaaaaa"), cid(10, "bbbbbbbb"), cid(0, "cccccccc")
    for clip_id in (old, mid, new):
        put_clip(s, tmp_path, "door", clip_id, {"original": 100, "snapshot": 10})
    assert s.purge() == [old]
    assert [c.clip_id for c in s.list_clips()] == [new, mid]
    assert s.purge(now=NOW + 25 * DAY) == [mid]
    assert s.purge(now=NOW + 25 * DAY) == []
    assert s.purge(now=NOW + 31 * DAY) == [new]
    assert s.list_clips() == []


def test_purge_by_total_size_oldest_first(make: Factory, tmp_path: Path) -> None:
    s = make(max_total_mb=0.0025)  # 2500 bytes
    ids = [cid(d, f"{i:08x}") for i, d in enumerate([4, 3, 2, 1])]
    for clip_id in ids:
        put_clip(s, tmp_path, "door", clip_id, {"original": 900, "annotations": 100})  # 1000 bytes each
    assert s.purge() == ids[:2]  # 4000 -> 3000 -> 2000 bytes
    assert [c.clip_id for c in s.list_clips()] == ids[:1:-1]
    assert sum(c.size for c in s.list_clips()) == 2000
    assert s.purge() == []


def test_purge_age_then_size(make: Factory, tmp_path: Path) -> None:
    s = make(max_age_days=7, max_total_mb=0.0015)
    ids = [cid(d, f"{i:08x}") for i, d in enumerate([9, 3, 2, 1])]
    for clip_id in ids:
        put_clip(s, tmp_path, "cam_1", clip_id, {"original": 1000})
    assert s.purge() == ids[:3]
    assert [c.clip_id for c in s.list_clips()] == ids[3:]


BAD_KEYS = [
    "../x",
    "door/../../etc/passwd",
    "/etc/passwd",
    "door\\x",
    "door//x",
    "door/clip/../../../x",
    "",
    "door/20261122T081503Z_1a2b3c4d/../original.mp4",
    "door/20261122T081503Z_1a2b3c4d/original.mp4/",
    "/door/20261122T081503Z_1a2b3c4d/original.mp4",
    "door/20261122T081503Z_1a2b3c4d/original.mp4\n",
    "door/20261122T081503Z_1a2b3c4d/passwd",
    "Door/20261122T081503Z_1a2b3c4d/original.mp4",
    "door/\uff120261122T081503Z_1a2b3c4d/original.mp4",  # a non-ASCII digit
]


def try_every_method(s: ClipStorage, key: str, src: Path, dest: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: s.put(key, src, "video/mp4"),
        lambda: s.download(key, dest),
        lambda: s.remove_file(key),
        lambda: s.url(key),
        lambda: s.local_path(key),
        lambda: s.remove_clip(key),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_rejected_before_any_access(key: str, tmp_path: Path) -> None:
    # Local: the tree around the root must stay exactly as it was.
    root = tmp_path / "srv" / "clips"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0")
    local = create_storage(StorageConfig(kind="local", path=str(root)), lambda k, e: f"http://h/{k}")
    src = blob(tmp_path, 10)
    before = all_files(tmp_path)
    try_every_method(local, key, src, tmp_path / "dest")
    assert all_files(tmp_path) == before
    # S3: the endpoint is dead, so any request would raise StorageError instead of ValueError.
    s3 = create_storage(StorageConfig(kind="s3", endpoint=f"127.0.0.1:{free_port()}", secure=False))
    try_every_method(s3, key, src, tmp_path / "dest")
    assert all_files(tmp_path) == before


def test_local_symlink_out_of_root_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    s = create_storage(StorageConfig(kind="local", path=str(tmp_path / "clips")))
    assert isinstance(s, LocalClipStorage)
    (s.root / "door").symlink_to(outside)
    key = clip_key("door", cid(0), "original")
    with pytest.raises(ValueError, match="outside"):
        s.put(key, blob(tmp_path, 5), "video/mp4")
    with pytest.raises(ValueError, match="outside"):
        s.local_path(key)
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]
    assert s.list_clips() == []


def test_writes_are_atomic_for_readers(storage: ClipStorage, tmp_path: Path) -> None:
    key = clip_key("door", cid(0), "annotated")
    small, large = blob(tmp_path, 200_000, b"a"), blob(tmp_path, 600_000, b"b")
    valid = {small.read_bytes(), large.read_bytes()}
    storage.put(key, small, "video/mp4")
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(30):
                storage.put(key, large if i % 2 == 0 else small, "video/mp4")
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    while not stop.is_set() or reads == 0:
        got = storage.download(key, tmp_path / "read.mp4").read_bytes()
        assert got in valid, f"reader saw a partial file of {len(got)} bytes"
        reads += 1
    t.join()
    assert not errors
    assert reads > 0
    if isinstance(storage, LocalClipStorage):
        assert sorted(p.name for p in (storage.root / key).parent.iterdir()) == ["annotated.mp4"]


def test_url_and_local_path(make: Factory, tmp_path: Path) -> None:
    signed: list[tuple[str, int]] = []

    def signer(key: str, expires_in: int) -> str:
        signed.append((key, expires_in))
        return f"http://ha:8099/clips/{key}?exp={expires_in}&sig=x"

    s = make(url_signer=signer, url_expiry_seconds=600)
    key = clip_key("door", cid(0), "snapshot")
    src = blob(tmp_path, 4096)
    s.put(key, src, "image/jpeg")
    url = s.url(key)
    assert url is not None
    if isinstance(s, LocalClipStorage):
        assert url == f"http://ha:8099/clips/{key}?exp=600&sig=x"
        assert s.url(key, expires_in=5) is not None and signed == [(key, 600), (key, 5)]
        path = s.local_path(key)
        assert path is not None and path.read_bytes() == src.read_bytes()
        assert s.local_path(clip_key("door", cid(0), "original")) is None
        assert make().url(key) is None  # no signer, no URL
    else:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert query["X-Amz-Expires"] == ["600"] and "X-Amz-Signature" in query
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert resp.read() == src.read_bytes()
        assert s.local_path(key) is None
    with pytest.raises(ValueError):
        s.url(key, expires_in=0)


def test_s3_expired_presigned_url_refused(moto_endpoint: str, tmp_path: Path) -> None:
    s = make_s3(moto_endpoint)
    key = clip_key("door", cid(0), "snapshot")
    s.put(key, blob(tmp_path, 100), "image/jpeg")
    url = s.url(key, expires_in=1)
    assert url is not None
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Expires"] == ["1"]
    time.sleep(2)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status == 200:
        pytest.skip("moto's S3 server does not enforce X-Amz-Expires on presigned URLs (it served an expired one)")
    assert status == 403


def test_s3_unreachable_raises_storage_error_without_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    config = StorageConfig(kind="s3", endpoint=f"127.0.0.1:{port}", access_key=ACCESS, secret_key=SECRET, secure=False)
    s = create_storage(config)
    assert SECRET not in repr(s)
    key = clip_key("door", cid(0), "original")
    t0 = time.monotonic()
    for call in (
        s.list_clips,
        lambda: s.put(key, blob(tmp_path, 5), "video/mp4"),
        lambda: s.download(key, tmp_path / "d"),
    ):
        with pytest.raises(StorageError) as err:
            call()
        assert isinstance(err.value, FaceTrackError)
        assert err.value.kind == "s3" and "s3 clip storage" in str(err.value)
        assert f"127.0.0.1:{port}" in str(err.value)
        assert SECRET not in str(err.value) and SECRET not in repr(err.value)
    with pytest.raises(StorageError, match=r"original\.mp4") as err:
        s.put(key, blob(tmp_path, 5), "video/mp4")
    assert err.value.key == key
    assert time.monotonic() - t0 < 15
    assert SECRET not in caplog.text


def test_s3_bucket_created_and_content_type(moto_endpoint: str, tmp_path: Path) -> None:
    s = make_s3(moto_endpoint)
    client, bucket = raw_s3(s)
    assert not client.bucket_exists(bucket)
    assert s.list_clips() == []  # first use creates the bucket
    assert client.bucket_exists(bucket)
    key = clip_key("door", cid(0), "annotations")
    s.put(key, blob(tmp_path, 10), "application/json")
    assert client.stat_object(bucket, key).content_type == "application/json"
    s.check()
