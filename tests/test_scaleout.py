"""Scale-out: several engine instances sharing one MQTT broker and one face library on S3.

moto's standalone S3 server on loopback is the object store (it honours ``If-None-Match: *`` on
PUT, the conditional put Lance commits with), mosquitto the broker, and two real
``facetrack serve`` processes the instances (docs/scale-out.md).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

import test_service_e2e
from facetrack.config.addon import options_to_service_config
from facetrack.config.service import parse_service_config
from facetrack.errors import ConfigError, LibraryError
from facetrack.library import FaceLibrary
from facetrack.library.sync import LibraryWatcher
from mqtt_helpers import Broker, Subscriber, free_port
from test_service_e2e import Engine, demo_clip  # noqa: F401 - demo_clip is a fixture
from test_storage import ACCESS, SECRET, moto_endpoint  # noqa: F401 - moto_endpoint is a fixture

compose = test_service_e2e.compose  # demo/compose.py: the demo clip's people and photos

pytestmark = pytest.mark.timeout(300)
D = 128


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _enrol(lib: FaceLibrary, name: str, emb: np.ndarray) -> None:
    lib.enroll(name, emb, [b"\xff\xd8jpeg"] * len(emb), [f"src{i}" for i in range(len(emb))])


def _options(endpoint: str) -> dict[str, str]:
    return {
        "aws_endpoint": f"http://{endpoint}",
        "aws_region": "us-east-1",
        "aws_access_key_id": ACCESS,
        "aws_secret_access_key": SECRET,
        "allow_http": "true",
    }


def _s3(endpoint: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=f"http://{endpoint}",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(moto_endpoint: str) -> str:  # noqa: F811 - the imported fixture
    """A fresh, empty bucket on moto."""
    name = f"faces-{uuid.uuid4().hex[:12]}"
    _s3(moto_endpoint).create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


def _library(endpoint: str, bucket: str, **kw: object) -> FaceLibrary:
    return FaceLibrary(f"s3://{bucket}/faces", "test_model", D, storage_options=_options(endpoint), **kw)  # type: ignore[arg-type]


# ---- the library on an object store --------------------------------------------------------------


def test_library_on_s3_enrols_matches_and_reopens(moto_endpoint: str, bucket: str) -> None:  # noqa: F811
    rng = np.random.default_rng(0)
    lib = _library(moto_endpoint, bucket)
    anna = _unit(rng, 3)
    _enrol(lib, "Anna", anna)
    _enrol(lib, "Bob", _unit(rng, 2))
    lib.rename("Bob", "Robert")
    again = _library(moto_endpoint, bucket)  # a second process would see exactly this
    assert sorted(p.name for p in again.persons()) == ["Anna", "Robert"] and len(again) == 5
    assert again.match(anna[1], 0.5)[0].name == "Anna"
    assert again.embeddings("Anna")[0].crop_jpeg == b"\xff\xd8jpeg"
    keys = [o["Key"] for o in _s3(moto_endpoint).list_objects_v2(Bucket=bucket)["Contents"]]  # type: ignore[attr-defined]
    assert any(k.startswith("faces/faces.lance/_versions/") for k in keys)


def test_commit_never_overwrites_an_existing_manifest(moto_endpoint: str, bucket: str) -> None:  # noqa: F811
    """Lance commits with a conditional put: another writer's manifest for the same version
    makes this commit fail; it is never replaced (the safety two instances rely on)."""
    rng = np.random.default_rng(1)
    lib = _library(moto_endpoint, bucket)
    _enrol(lib, "Anna", _unit(rng, 1))
    s3 = _s3(moto_endpoint)
    prefix = "faces/faces.lance/_versions/"
    manifests = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]  # type: ignore[attr-defined]
    # Lance's V2 naming: <u64::MAX - version>.manifest, zero-padded to 20 digits.
    numbers = sorted(int(Path(k).stem) for k in manifests)
    assert numbers[0] == 2**64 - 1 - lib.version, manifests
    taken = f"{prefix}{numbers[0] - 1:020d}.manifest"
    s3.put_object(Bucket=bucket, Key=taken, Body=b"another writer's commit")  # type: ignore[attr-defined]
    before = lib.version
    with pytest.raises(LibraryError) as err:
        _enrol(lib, "Bob", _unit(rng, 1))
    assert SECRET not in str(err.value) and ACCESS not in str(err.value)
    assert s3.get_object(Bucket=bucket, Key=taken)["Body"].read() == b"another writer's commit"  # type: ignore[attr-defined]
    assert lib.version == before and [p.name for p in lib.persons()] == ["Anna"]


def test_concurrent_writers_lose_nothing_and_names_stay_unique(moto_endpoint: str, bucket: str) -> None:  # noqa: F811
    rng = np.random.default_rng(2)
    a, b = _library(moto_endpoint, bucket), _library(moto_endpoint, bucket)
    # B has not refreshed since A enrolled Anna: B's write refreshes first and adds to A's Anna.
    _enrol(a, "Anna", _unit(rng, 1))
    _enrol(b, "Anna", _unit(rng, 1))
    assert a.refresh() is True
    assert [(p.name, p.embedding_count) for p in a.persons()] == [("Anna", 2)]
    # Two writers at once (separate connections, as two instances): every commit lands.
    vectors = {f"P{w}{i}": _unit(rng, 2) for w in range(2) for i in range(6)}
    errors: list[BaseException] = []

    def writer(lib: FaceLibrary, w: int) -> None:
        try:
            for i in range(6):
                _enrol(lib, f"P{w}{i}", vectors[f"P{w}{i}"])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(lib, w)) for w, lib in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for lib in (a, b):
        lib.refresh()
        assert len(lib) == 2 + 24 and len(lib.persons()) == 13
        for name, vec in vectors.items():
            assert lib.match(vec[0], 0.9)[0].name == name


def test_bad_store_settings_give_clear_errors_without_secrets(moto_endpoint: str) -> None:  # noqa: F811
    with pytest.raises(LibraryError, match="bucket does not exist") as err:
        _library(moto_endpoint, "no-such-bucket")
    assert SECRET not in str(err.value)
    with pytest.raises(LibraryError, match="cannot connect") as err:
        _library(f"127.0.0.1:{free_port()}", "faces")
    assert SECRET not in str(err.value)


# ---- refresh: periodic and on notice ---------------------------------------------------------------


def _wait(pred: object, timeout: float) -> float:
    start = time.monotonic()
    while not pred():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)
    return time.monotonic() - start


def test_refresh_on_notice_and_periodically(moto_endpoint: str, bucket: str) -> None:  # noqa: F811
    rng = np.random.default_rng(3)
    changes: list[tuple[str, int]] = []
    a = _library(moto_endpoint, bucket, on_change=lambda op, v: changes.append((op, v)))
    b = _library(moto_endpoint, bucket)
    refreshed = threading.Event()
    watcher = LibraryWatcher(b, interval=0, on_refreshed=refreshed.set)  # notices only
    watcher.start()
    try:
        # A refresh that finds nothing new is cheap (one listing of the version manifests).
        costs = []
        for _ in range(10):
            t0 = time.perf_counter()
            assert b.refresh() is False
            costs.append(time.perf_counter() - t0)
        anna = _unit(rng, 2)
        _enrol(a, "Anna", anna)
        assert changes == [("enroll", a.version)]
        time.sleep(0.5)
        assert len(b) == 0 and watcher.refreshes == 0  # no polling: B does not know yet
        watcher.notify(a.version - 1)  # a notice for a version B already has is ignored...
        time.sleep(0.3)
        assert watcher.refreshes == 0
        t0 = time.monotonic()
        watcher.notify(changes[-1][1])  # ... the announced one is fetched at once
        assert refreshed.wait(5)
        latency = time.monotonic() - t0
        assert b.version == a.version and b.match(anna[0], 0.9)[0].name == "Anna"
        median = sorted(costs)[5] * 1000
        print(f"refresh without change: median {median:.1f} ms; notice to index: {latency * 1000:.0f} ms")
    finally:
        watcher.stop()
        watcher.join(5)
    # Periodic: without any notice, B catches up within the interval.
    periodic = LibraryWatcher(b, interval=0.3)
    periodic.start()
    try:
        _enrol(a, "Bob", _unit(rng, 1))
        # The index swaps in before the watcher counts the refresh: wait for both.
        waited = _wait(lambda: b.person("Bob") is not None and periodic.refreshes >= 1, 10)  # 0.3 s (+ load)
        assert periodic.refreshes == 1
        print(f"periodic refresh (0.3 s interval) caught up after {waited:.2f} s")
    finally:
        periodic.stop()
        periodic.join(5)


def test_refresh_failure_keeps_the_index_and_recovers(tmp_path: Path) -> None:
    """The object store goes away: refreshes fail quietly, matching goes on with the index in memory."""
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                _s3(endpoint).create_bucket(Bucket="faces")  # type: ignore[attr-defined]
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        rng = np.random.default_rng(4)
        lib = _library(endpoint, "faces")
        anna = _unit(rng, 1)
        _enrol(lib, "Anna", anna)
        watcher = LibraryWatcher(lib, interval=10)
        server.terminate()
        server.wait(10)
        assert watcher.refresh_now() is False and watcher.failures == 1
        assert lib.match(anna[0], 0.9)[0].name == "Anna"  # never waits for the store
        with pytest.raises(LibraryError, match="cannot"):
            _enrol(lib, "Bob", _unit(rng, 1))  # a write fails cleanly: nothing half-written
        assert [p.name for p in lib.persons()] == ["Anna"]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# ---- configuration ---------------------------------------------------------------------------------


def test_service_config_for_a_shared_library() -> None:
    raw = {
        "db_path": "s3://faces/lib",
        "library_storage": {
            "endpoint": "http://127.0.0.1:9000",
            "access_key": "AK",
            "secret_key": "very-secret-value",
            "allow_http": True,
            "options": {"timeout": "30s"},
        },
        "library_refresh_seconds": 5,
        "mqtt": {"topic_prefix": "facetrack/garden", "library_topic": "facetrack/library"},
        "cameras": [{"name": "garden", "source": "x.mp4"}],
    }
    cfg = parse_service_config(raw)
    assert cfg.library_storage.storage_options() == {
        "aws_endpoint": "http://127.0.0.1:9000",
        "aws_access_key_id": "AK",
        "aws_secret_access_key": "very-secret-value",
        "allow_http": "true",
        "timeout": "30s",
    }
    assert cfg.library_refresh_seconds == 5 and cfg.mqtt.library_topic == "facetrack/library"
    assert cfg.mqtt.client_id == "facetrack-garden"  # unique per instance unless set
    assert "very-secret-value" not in repr(cfg)
    # Local state cannot live "next to" an s3:// library: it goes to the working directory.
    assert cfg.http.secret_file == str(Path.cwd() / "url_secret")
    assert cfg.clips.storage.path == str(Path.cwd() / "clips")
    default = parse_service_config({"cameras": [{"name": "door", "source": "x.mp4"}]})
    assert (default.mqtt.client_id, default.mqtt.library_topic) == ("facetrack", "facetrack/library")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"library_storage": {"endpoint": "http://minio:9000"}}, "allow_http"),
        ({"db_path": "faces.lance", "library_storage": {"region": "eu"}}, "needs an s3://"),
        ({"db_path": "gs://bucket/x"}, "unsupported scheme"),
        ({"db_path": "s3:///nobucket"}, "needs a bucket"),
        ({"library_refresh_seconds": -1}, "library_refresh_seconds"),
        ({"mqtt": {"library_topic": "facetrack/#"}}, "library_topic"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_service_config({**raw, **extra})


def test_app_options_for_a_shared_library() -> None:
    """The HA app's library_* options become db_path, library_storage and mqtt.library_topic."""
    options = {
        "cameras": [{"name": "hall", "source": "rtsp://cam/1"}],
        "topic_prefix": "facetrack/hall",
        "library_uri": "s3://faces/library",
        "library_endpoint": "http://minio.local:9000",
        "library_access_key": "AK",
        "library_secret_key": "very-secret-value",
        "library_allow_http": "true",  # bashio hands booleans over as strings
        "library_topic": "facetrack/library",
    }
    raw = options_to_service_config(options, None)
    cfg = parse_service_config(raw)
    assert cfg.db_path == "s3://faces/library" and cfg.mqtt.library_topic == "facetrack/library"
    assert cfg.library_storage.storage_options()["aws_secret_access_key"] == "very-secret-value"
    assert cfg.library_storage.allow_http and cfg.mqtt.client_id == "facetrack-hall"
    local = parse_service_config(options_to_service_config({"cameras": options["cameras"]}, None))
    assert local.db_path == "/config/faces.lance" and local.library_storage.storage_options() == {}
    # The inbox stays the instance's own, in the app config folder, not the working directory.
    assert cfg.inbox.path == local.inbox.path == "/config/inbox.npz"


# ---- two real instances -------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def test_enrolment_on_one_instance_is_recognised_by_another(
    tmp_path: Path,
    broker: Broker,
    moto_endpoint: str,  # noqa: F811
    bucket: str,
    demo_clip: Path,  # noqa: F811
) -> None:
    """Instance A (a camera group) enrols John_Salley by MQTT command; instance B, watching the
    demo clip with the same S3 library, recognises him. B polls never (refresh only on notice),
    so the MQTT library notice is what tells it."""
    shared: dict[str, Any] = {
        "db_path": f"s3://{bucket}/faces",
        "library_storage": {
            "endpoint": f"http://{moto_endpoint}",
            "region": "us-east-1",
            "access_key": ACCESS,
            "secret_key": SECRET,
            "allow_http": True,
        },
        "library_refresh_seconds": 0,
        "alerts": {"alert_mode": "NONE"},
    }

    def instance(name: str, camera: str, **cam: object) -> Engine:
        (tmp_path / name).mkdir()
        mqtt = {"port": broker.port, "topic_prefix": f"facetrack/{name}", "library_topic": "facetrack/library"}
        return Engine(
            tmp_path / name, broker.port, tmp_path / "none", demo_clip,
            **shared, mqtt={**mqtt, "discovery": True},
            cameras=[{"name": camera, "source": str(demo_clip), **cam}],
            clips={"enabled": False},
            http={"host": "127.0.0.1", "port": free_port(), "secret_file": str(tmp_path / name / "url_secret")},
        )  # fmt: skip

    subs = {n: Subscriber(broker.port, prefix=f"facetrack/{n}").start() for n in ("a", "b")}
    notices = Subscriber(broker.port, prefix="facetrack").start()  # validates facetrack/library
    disc = Subscriber(broker.port, prefix="homeassistant").start()
    a = instance("a", "door_a", fps=2)
    b = instance("b", "door_b")
    try:
        a.start()
        b.start()
        for n in ("a", "b"):
            subs[n].wait_for(f"facetrack/{n}/status", lambda m: m.payload == "online", timeout=90)
        subs["b"].wait_for("door_b/track", lambda m: m.payload["type"] == "track_started", timeout=60)
        assert not subs["b"].find("door_b/track", lambda m: m.payload["person"] is not None)
        photo = compose.enrolment_photos("John_Salley")[0]
        image = base64.b64encode(photo.read_bytes()).decode()
        request = {"request_id": "enrol-a", "name": "John_Salley", "image_base64": image}
        sent = time.time()
        subs["a"].publish("facetrack/a/command/enroll", request)
        ok = subs["a"].wait_for("response/enrol-a", timeout=60)[0]
        assert ok.payload["ok"] is True, ok.payload
        notice = notices.wait_for("facetrack/library", timeout=10)[0]
        assert not notice.retain and notice.payload["instance"] == "facetrack/a"
        assert notice.payload["operation"] == "enroll" and notice.payload["library"] == shared["db_path"]
        persons_b = subs["b"].wait_for(
            "facetrack/b/persons", lambda m: any(p["name"] == "John_Salley" for p in m.payload["persons"]), timeout=15
        )[0]
        identity = subs["b"].wait_for(
            "door_b/track",
            lambda m: m.payload["type"] == "identity" and m.payload["person"] == "John_Salley",
            timeout=60,
        )[0]
        print(
            f"enrol command -> A's response {ok.at - sent:.2f} s, -> notice {notice.at - sent:.2f} s, "
            f"-> B's persons {persons_b.at - sent:.2f} s, -> B identifies {identity.at - sent:.2f} s"
        )
        assert identity.payload["person_id"] == ok.payload["result"]["person_id"]
        disc.wait_for("/config", lambda m: "_person_" in m.topic, count=2, timeout=15)
        assert a.terminate() == 0 and b.terminate() == 0
    finally:
        a.kill()
        b.kill()
        for s in (*subs.values(), notices, disc):
            s.stop()
    for s in (*subs.values(), notices):
        assert not s.errors, s.errors[:5]
    # No collisions: one connection each for the whole run (a shared client id would make the
    # broker drop one instance for the other, again and again), their own availability topics.
    for n in ("a", "b"):
        assert [m.payload for m in subs[n].find(f"facetrack/{n}/status")] == ["online", "offline"]
        assert subs[n].find(f"facetrack/{n}/info")[0].payload["cameras"] == [f"door_{n}"]
    assert len(notices.find("facetrack/library")) == 1  # B changed nothing, so it announced nothing
    configs = {m.topic: json.loads(m.payload) for m in disc.messages if m.payload}
    ids = [c["dev"]["ids"][0] for c in configs.values()]
    assert len(ids) == len(set(ids)) == 4, sorted(configs)  # 2 cameras + 1 person seen by each
    assert {c["avty_t"] for c in configs.values() if "avty_t" in c} >= {"facetrack/a/status", "facetrack/b/status"}
    for engine in (a, b):
        log = engine.log.read_text()
        assert SECRET not in log
