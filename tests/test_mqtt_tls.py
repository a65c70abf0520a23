"""MQTT credentials and TLS against a real Mosquitto (password file, TLS listener, own CA)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from facetrack.comms.mqtt import MqttClient
from facetrack.config.service import MQTTConfig, TLSConfig
from mqtt_helpers import Broker

PASSWORD = "s3cret-Pa55"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required (apt-get install openssl)")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=FaceTrack test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    for name, san in (("ip", "IP:127.0.0.1"), ("other", "DNS:broker.invalid")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)  # fmt: skip
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)  # fmt: skip
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(d / "passwd"), "facetrack", PASSWORD], check=True)
    (d / "passwd").chmod(0o644)
    return d


def _broker(tmp: Path, pki: Path, cert: str) -> Broker:
    conf = (
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / f'{cert}.crt'}\nkeyfile {pki / f'{cert}.key'}\n"
        f"password_file {pki / 'passwd'}\n"
    )
    b = Broker(tmp, extra_conf=conf)
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    return b


def _client(port: int, pki: Path, password: str, insecure: bool = False) -> MqttClient:
    cfg = MQTTConfig(
        host="127.0.0.1", port=port, username="facetrack", password=password, client_id="tls-test",
        tls=TLSConfig(enabled=True, ca_file=str(pki / "ca.crt"), insecure=insecure),
    )  # fmt: skip
    return MqttClient(cfg, reconnect_max_seconds=1)


def test_tls_with_credentials_connects(tmp_path: Path, pki: Path) -> None:
    broker = _broker(tmp_path, pki, "ip")
    client = _client(broker.port, pki, PASSWORD)
    try:
        client.start()
        assert client.connected.wait(15), (tmp_path / "mosquitto.log").read_text()
    finally:
        client.stop()
        broker.stop()


def test_wrong_password_is_refused_and_never_logged(
    tmp_path: Path, pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = _broker(tmp_path, pki, "ip")
    client = _client(broker.port, pki, "wrong-" + PASSWORD)
    caplog.set_level(logging.DEBUG)
    try:
        client.start()
        assert not client.connected.wait(4)
    finally:
        client.stop()
        broker.stop()
    assert "refused" in caplog.text.lower() or "not authorized" in caplog.text.lower()
    assert PASSWORD not in caplog.text


def test_hostname_mismatch_needs_insecure(tmp_path: Path, pki: Path) -> None:
    broker = _broker(tmp_path, pki, "other")  # certificate for broker.invalid, reached as 127.0.0.1
    strict = _client(broker.port, pki, PASSWORD)
    try:
        strict.start()
        assert not strict.connected.wait(4)
    finally:
        strict.stop()
    relaxed = _client(broker.port, pki, PASSWORD, insecure=True)
    try:
        relaxed.start()
        assert relaxed.connected.wait(15)
    finally:
        relaxed.stop()
        broker.stop()
