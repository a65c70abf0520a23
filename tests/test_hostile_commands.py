"""Hostile and clumsy commands (issue 17): bad request ids, deep nesting, oversized payloads, bad
Unicode and bad names. Each gets a clear error on the right response topic, nothing is answered
``internal``, and the engine stays connected. The end-to-end test sends them as an attacker would:
raw bytes to a real Mosquitto, read by the real ``facetrack serve``.
"""

from __future__ import annotations

import base64
import json
import sys
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facetrack.commands import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    RawCommandError,
    json_depth_exceeds,
    leading_request_id,
    parse_command,
)
from facetrack.errors import LibraryError
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.library.names import InvalidNameError, clean_name, name_key
from mqtt_helpers import Broker, Subscriber
from test_web_api import multipart
from webui_helpers import WebEngine, http

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
import compose  # noqa: E402

pytestmark = pytest.mark.timeout(600)
CSRF = {"X-Requested-With": "facetrack"}

# Names refused, and the code point the error must name.
REFUSED_NAMES = {
    "\u200b": "U+200B ZERO WIDTH SPACE",
    "\u202eevil": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "Bob\x7f": "U+007F",
    "a\x01b": "U+0001",
    "Anna\ufeff": "U+FEFF ZERO WIDTH NO-BREAK SPACE",
    "\ue000Anna": "U+E000",
    "Anna\u0378": "U+0378",
    "Anna\ud800": "U+D800",
    "Ann\u200da": "U+200D ZERO WIDTH JOINER",
}


# ---- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "kept"), [
    ("John Salley\u00a0", "John Salley"),
    ("\u3000John\t\u2003 Salley\n", "John Salley"),
    ("John\u2028Salley", "John Salley"),
    ("Jose\u0301", "Jos\u00e9"),
    ("Anna", "Anna"),
    ("Zo\u00eb O'Brien-M\u00fcller", "Zo\u00eb O'Brien-M\u00fcller"),
    ("\u5f20\u4f1f", "\u5f20\u4f1f"),
    ("\u0645\u062d\u0645\u062f", "\u0645\u062d\u0645\u062f"),
    ("x" * 100, "x" * 100),
])  # fmt: skip
def test_names_are_normalised_and_say_so(given: str, kept: str) -> None:
    clean = clean_name(given)
    assert clean.name == kept
    assert clean.normalised_from == (given if given != kept else None)
    assert unicodedata.is_normalized("NFC", clean.name)


@pytest.mark.parametrize(("bad", "named"), list(REFUSED_NAMES.items()))
def test_invisible_control_and_invalid_characters_are_refused(bad: str, named: str) -> None:
    with pytest.raises(InvalidNameError, match=named.replace("+", r"\+")):
        clean_name(bad)


@pytest.mark.parametrize("bad", ["", "   ", "\u00a0\u2003", "x" * 101, "\u0301", 5, None, ["Anna"]])
def test_empty_long_and_non_string_names_are_refused(bad: object) -> None:
    with pytest.raises(InvalidNameError, match="person's name"):
        clean_name(bad)


def test_lookup_is_lenient_so_an_old_bad_name_can_be_removed() -> None:
    # A name stored before the rules (a zero-width space inside) is still found, by the same key.
    assert name_key("Bob\u200b \u00a0") == "Bob\u200b"
    assert name_key("Jose\u0301") == clean_name("Jos\u00e9").name
    with pytest.raises(InvalidNameError):
        name_key(" \u00a0 ")


def test_library_merges_whitespace_variants_and_refuses_bad_names(tmp_path: Path, backend: InferenceBackend) -> None:
    lib = FaceLibrary(tmp_path / "db", backend.model_id, backend.embedding_dim)
    rng = np.random.default_rng(0)
    e = rng.normal(size=(2, backend.embedding_dim)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    first = lib.enroll("John Salley", e[:1], [b""], ["a"])
    again = lib.enroll("John Salley\u00a0", e[1:], [b""], ["b"])
    assert again.person_id == first.person_id and again.embedding_count == 2
    assert [p.name for p in lib.persons()] == ["John Salley"]
    for bad, named in REFUSED_NAMES.items():
        with pytest.raises(LibraryError, match=named.replace("+", r"\+")):
            lib.enroll(bad, e[:1], [b""], ["c"])
        with pytest.raises(LibraryError, match=named.replace("+", r"\+")):
            lib.rename("John Salley", bad)
    jose = lib.enroll("Jose\u0301", e[:1], [b""], ["d"])
    assert jose.name == "Jos\u00e9" and lib.person("Jose\u0301") == jose
    with pytest.raises(LibraryError, match="already exists"):
        lib.rename("John Salley", "Jose\u0301 ")  # the same name once normalised
    assert sorted(p.name for p in lib.persons()) == ["John Salley", "Jos\u00e9"]
    assert len(lib) == 3  # nothing refused was written


# ---- parsing a raw command ---------------------------------------------------------------------


def _refused(payload: bytes) -> RawCommandError:
    with pytest.raises(RawCommandError) as err:
        parse_command(payload)
    return err.value


@pytest.mark.parametrize("rid", ["x\n", "x\r\n", "\nx", "a\tb", "a\x00b", "a+b", "a#", "+", "#", "a/b",
                                 "x" * 65, "", "\u00e9t\u00e9", "a b", 5, None, True, ["a"], {"a": 1}])  # fmt: skip
def test_request_ids_are_matched_in_full(rid: object) -> None:
    err = _refused(json.dumps({"request_id": rid}).encode())
    assert (err.code, err.request_id) == ("bad_request", "invalid")
    assert "request_id must be" in str(err)


def test_deep_nesting_is_refused_before_parsing() -> None:
    assert json_depth_exceeds(b"[" * 50000)
    assert not json_depth_exceeds(json.dumps({"a": "[" * 5000, "b": [[{"c": '{{\\"['}]]}).encode())
    nested = json.dumps({"request_id": "r", "metadata": {"x": [[[1]]]}}).encode()
    assert not json_depth_exceeds(nested) and parse_command(nested)[0] == "r"
    assert json_depth_exceeds(b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}")
    # Escapes: only unescaped quotes open and close strings; an unterminated string of escaped
    # quotes stays linear (a regular expression for strings would be quadratic here).
    assert json_depth_exceeds(b"[" * 40 + b'"' + b'\\"' * 200_000)
    assert not json_depth_exceeds(b'["' + b"\\\\" * 100 + b'\\"' + b"[" * 40 + b'"]')
    assert json_depth_exceeds(b'["' + b"\\\\" * 100 + b'"' + b"[" * 40 + b'"]')
    err = _refused(b"[" * 50000)
    assert (err.code, err.request_id) == ("bad_request", "invalid") and "nested deeper" in str(err)
    err = _refused(b'{"request_id": "deep1", "metadata": ' + b"[" * 50000)
    assert (err.code, err.request_id) == ("bad_request", "deep1")


def test_oversized_payloads_are_answered_on_their_own_id() -> None:
    blob = "A" * (MAX_PAYLOAD_BYTES + 1)
    first = json.dumps({"request_id": "big-first", "name": "X", "image_base64": blob}).encode()
    last = json.dumps({"name": "X", "image_base64": blob, "request_id": "big-last"}).encode()
    bad_id = json.dumps({"name": "X", "image_base64": blob, "request_id": "x\n"}).encode()
    for payload, rid in [(first, "big-first"), (last, "big-last"), (bad_id, "invalid")]:
        err = _refused(payload)
        assert (err.code, err.request_id) == ("too_large", rid)
    assert leading_request_id(b' \n{ "request_id" : "r-1", "x": 1}') == "r-1"
    assert leading_request_id(b'{"request_id": "r-1\\n"}') is None  # an escape is never part of an id
    assert leading_request_id(b'{"x": "{\\"request_id\\": \\"r\\"}"}') is None


@pytest.mark.parametrize(("payload", "rid", "words"), [
    (b'{"request_id": "n1", "x": 1' + b"1" * 5000 + b"}", "n1", "4300 digits"),
    (b'{"request_id": "n2", "x": NaN}', "n2", "NaN is not JSON"),
    (b'{"request_id": "n3", "name": }', "n3", "not JSON"),
    (b'{"request_id": "n4", "name": "\\ud800"}', "n4", "lone surrogate"),
    (b'{"request_id": "n5", "metadata": {"\\udfff": 1}}', "n5", "lone surrogate"),
    (b"\xff\xfe\x00", "invalid", "not JSON"),
    (b'["request_id", "x"]', "invalid", "JSON object"),
])  # fmt: skip
def test_bad_json_and_bad_unicode_are_refused_on_the_id(payload: bytes, rid: str, words: str) -> None:
    err = _refused(payload)
    assert (err.code, err.request_id) == ("bad_request", rid) and words in str(err)


# ---- the real engine and a real broker ----------------------------------------------------------


@pytest.fixture
def small_clip(tmp_path: Path) -> Path:
    """A 2 s grey 160x120 clip: a cheap camera for an engine whose faces come from commands."""
    out = tmp_path / "grey.mp4"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), 10, (160, 120))
    for i in range(20):
        writer.write(np.full((120, 160, 3), 100 + i, np.uint8))
    writer.release()
    assert out.stat().st_size > 0
    return out


@pytest.fixture
def stack(tmp_path: Path, small_clip: Path) -> Iterator[tuple[WebEngine, Subscriber, Broker]]:
    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port).start()
    (tmp_path / "engine").mkdir()
    engine = WebEngine(tmp_path / "engine", broker.port, None, small_clip, clips={"enabled": False})
    try:
        engine.start()
        sub.wait_for("facetrack/status", lambda m: m.payload == "online", timeout=60)
        yield engine, sub, broker
    finally:
        engine.stop()
        sub.stop()
        broker.stop()


def _photo(i: int) -> str:
    return base64.b64encode(compose.enrolment_photos("John_Salley")[i].read_bytes()).decode()


class Client:
    """Sends raw payloads and waits for the answer on the expected response topic."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.invalid = 0

    def send(self, verb: str, payload: bytes | dict[str, Any], answer_on: str, timeout: float = 60) -> dict[str, Any]:
        before = len(self.sub.find(f"facetrack/response/{answer_on}"))
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.sub.publish(f"facetrack/command/{verb}", raw)
        got = self.sub.wait_for(f"facetrack/response/{answer_on}", timeout=timeout, count=before + 1)
        return dict(got[before].payload)

    def alive(self) -> None:
        """A valid command is still answered: the engine is connected and its command thread runs."""
        rid = "alive-" + uuid.uuid4().hex[:8]
        assert self.send("list", {"request_id": rid}, rid)["ok"] is True


def test_hostile_commands_never_cut_the_engine_off(stack: tuple[WebEngine, Subscriber, Broker]) -> None:
    engine, sub, broker = stack
    c = Client(sub)
    c.alive()

    # Request ids that are not a clean topic level: answered on response/invalid, engine stays on.
    for rid in ["x\n", "x\r\n", "a\tb", "a\x00b", "a+b", "a#", "+", "#", "x" * 65, "", 5, None, ["a"], {"a": 1}]:
        answer = c.send("list", {"request_id": rid}, "invalid")
        assert answer["error"]["code"] == "bad_request" and "request_id must be" in answer["error"]["message"], rid
        c.alive()

    # Deep nesting: a clear error, on the id when it can be read.
    answer = c.send("enroll", b"[" * 50000, "invalid")
    assert answer["error"]["code"] == "bad_request" and "nested deeper" in answer["error"]["message"]
    answer = c.send("enroll", b'{"request_id": "deep1", "metadata": ' + b"[" * 50000, "deep1")
    assert answer["error"]["code"] == "bad_request" and "nested deeper" in answer["error"]["message"]

    # 20 MB commands: too_large on their own response topic, wherever the id is.
    blob = "A" * (20 << 20)
    for body, rid in [({"request_id": "big-first", "name": "X", "image_base64": blob}, "big-first"),
                      ({"name": "X", "image_base64": blob, "request_id": "big-last"}, "big-last")]:  # fmt: skip
        answer = c.send("enroll", body, rid, timeout=120)
        assert answer["error"]["code"] == "too_large", answer
    del blob
    c.alive()

    # Bad JSON and bad Unicode: bad_request on the id, never internal.
    for raw, rid in [
        (b'{"request_id": "n1", "x": 1' + b"1" * 5000 + b"}", "n1"),
        (b'{"request_id": "n2", "name": "A", "image_path": "a.jpg", "metadata": {"x": NaN}}', "n2"),
        (b'{"request_id": "n3", "name": }', "n3"),
        (b'{"request_id": "n4", "name": "Anna\\ud800", "image_path": "a.jpg"}', "n4"),
        (b'{"request_id": "n5", "name": "Anna", "image_path": "a\\u0000.jpg"}', "n5"),
        (b'{"request_id": "n7", "name": "Anna", "image_path": "\\udc80.jpg"}', "n7"),
    ]:
        answer = c.send("enroll", raw, rid)
        assert answer["error"]["code"] == "bad_request", answer
    # A file name the OS refuses (ENAMETOOLONG): an image error, whatever its code, not internal.
    raw = b'{"request_id": "n6", "name": "Anna", "image_path": "' + b"a" * 300 + b'.jpg"}'
    answer = c.send("enroll", raw, "n6")
    assert answer["ok"] is False and answer["error"]["code"] != "internal", answer

    # Names: invisible, reordering, control and invalid characters are refused, naming the culprit
    # (with a real face photo: on the old engine these enrolled).
    photo = _photo(0)
    for i, (bad, named) in enumerate(REFUSED_NAMES.items()):
        answer = c.send("enroll", {"request_id": f"name{i}", "name": bad, "image_base64": photo}, f"name{i}")
        assert answer["ok"] is False and answer["error"]["code"] == "bad_request", answer
        assert named in answer["error"]["message"], answer
    for verb, body in [
        ("enroll_track", {"camera": "door", "track_id": 1, "name": "\u202eevil"}),
        ("inbox_name", {"group_id": "f" * 32, "name": "\u200b"}),
        ("rename", {"name": "Nobody", "new_name": "Bob\x7f"}),
    ]:
        answer = c.send(verb, {"request_id": "n-" + verb, **body}, "n-" + verb)
        assert answer["error"]["code"] == "bad_request" and "U+" in answer["error"]["message"], answer

    # Whitespace variants are one person, and the answer says the name was normalised.
    first = c.send("enroll", {"request_id": "e1", "name": "Anna Test", "image_base64": photo}, "e1")
    assert first["ok"] and "normalised_from" not in first["result"], first
    second = c.send("enroll", {"request_id": "e2", "name": "Anna Test\u00a0", "image_base64": _photo(1)}, "e2")
    assert second["ok"], second
    assert second["result"] | {"embeddings": 0} == {
        "person": "Anna Test", "person_id": first["result"]["person_id"], "embeddings": 0,
        "normalised_from": "Anna Test\u00a0",
    }  # fmt: skip
    assert second["result"]["embeddings"] == 2
    renamed = c.send("rename", {"request_id": "r1", "name": "Anna Test", "new_name": " Anna\u2003 Best "}, "r1")
    assert renamed["result"]["person"] == "Anna Best" and renamed["result"]["normalised_from"] == " Anna\u2003 Best "
    nfc = c.send("enroll", {"request_id": "e3", "name": "Jose\u0301", "image_base64": _photo(2)}, "e3")
    assert nfc["result"]["person"] == "Jos\u00e9" and nfc["result"]["normalised_from"] == "Jose\u0301"

    # The web page: the same rules, the same answer; a hostile body is a 400, never a 500.
    body, ctype = multipart([("name", "", "Web  Person\u00a0".encode()), ("photo", "a.jpg", _raw_photo(2))])
    status, _, raw = http("POST", f"{engine.ingress}/api/enroll", body, {**CSRF, "Content-Type": ctype})
    web = json.loads(raw)
    assert status == 200 and web["person"] == "Web Person" and web["normalised_from"] == "Web  Person\u00a0", web
    for name in ["\u202eWeb".encode(), b"Web\xff\xfe", " \u00a0 ".encode()]:
        body, ctype = multipart([("name", "", name), ("photo", "a.jpg", _raw_photo(2))])
        status, _, raw = http("POST", f"{engine.ingress}/api/enroll", body, {**CSRF, "Content-Type": ctype})
        assert status == 400 and json.loads(raw)["error"] == "bad_request", (name, raw)
    pid = web["person_id"]
    hdrs = {**CSRF, "Content-Type": "application/json"}
    url = f"{engine.ingress}/api/persons/{pid}/rename"
    status, _, raw = http("POST", url, json.dumps({"name": "Web\tPerson 2 "}).encode(), hdrs)
    assert status == 200 and json.loads(raw)["normalised_from"] == "Web\tPerson 2 ", raw
    status, _, raw = http("POST", url, json.dumps({"name": "\u200bWeb"}).encode(), hdrs)
    assert status == 400 and "U+200B" in json.loads(raw)["message"], raw
    assert http("POST", url, b"[" * 60000, hdrs)[0] == 400

    persons = sub.wait_for("facetrack/persons", lambda m: len(m.payload["persons"]) == 3)[-1].payload["persons"]
    assert sorted(p["name"] for p in persons) == ["Anna Best", "Jos\u00e9", "Web Person 2"]
    c.alive()

    # Never internal; never a response on a topic other than a clean id; never disconnected.
    responses = [m for m in sub.messages if "/response/" in m.topic]
    assert not [m.payload for m in responses if not m.payload["ok"] and m.payload["error"]["code"] == "internal"]
    assert all(m.topic.rsplit("/", 1)[1] == m.payload["request_id"] for m in responses)
    statuses = [m.payload for m in sub.find("facetrack/status")]
    assert "offline" not in statuses, statuses
    assert engine.stop() == 0
    log = engine.log.read_text()
    assert "MQTT connected (1)" in log and "MQTT connected (2)" not in log
    assert "MQTT disconnected" not in log and "Traceback" not in log
    assert broker.log.read_text().count(f"as facetrack-{broker.port} ") == 1  # one connection


def _raw_photo(i: int) -> bytes:
    return compose.enrolment_photos("John_Salley")[i].read_bytes()
