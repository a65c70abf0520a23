"""The face library page's JSON API and its access rules, against the real engine.

Most tests talk to one ``facetrack serve`` process (demo clip, two people enrolled, a real
Mosquitto): through its ingress listener (a trusted peer: no token), and on its main port (the UI
token, the cookie, CSRF). The ingress peer check and the default "no page on the main port" run on
an engine built in-process, since every test client is on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facetrack.config.addon import options_to_service_config
from facetrack.config.service import parse_service_config
from facetrack.service import FaceTrackService
from mqtt_helpers import Subscriber, free_port
from webui_helpers import UI_TOKEN, WebEngine, engine_stack, http, seed_demo, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
import compose  # noqa: E402

pytestmark = pytest.mark.timeout(240)
UI_DIR = ROOT / "addon" / "facetrack" / "web" / "ui"
CSRF = {"X-Requested-With": "facetrack"}


def data_path(rel: str) -> Path:
    path = ROOT.parent / "shared" / "data" / rel
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebEngine, Subscriber]]:
    tmp = tmp_path_factory.mktemp("webapi")
    clip, db = seed_demo(tmp)
    with engine_stack(tmp, lambda folder, port: WebEngine(folder, port, db, clip)) as stack:
        yield stack


def call(engine: WebEngine, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """A JSON request on the ingress listener; returns (status, decoded JSON or raw bytes)."""
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {**CSRF, **({"Content-Type": "application/json"} if data else {}), **(headers or {})}
    status, h, raw = http(method, f"{engine.ingress}/{path}", data, hdrs)
    return status, (json.loads(raw) if h.get("Content-Type", "").startswith("application/json") else raw)


def multipart(fields: list[tuple[str, str, bytes | str]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request: (field, filename or "", content)."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, filename, content in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" if filename else b"\r\n"
        out += (content.encode() if isinstance(content, str) else content) + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def enrol(engine: WebEngine, name: str, photos: list[Path], headers: dict[str, str] | None = None) -> Any:
    body, ctype = multipart([("name", "", name), *[("photo", p.name, p.read_bytes()) for p in photos]])
    status, _, raw = http(
        "POST", f"{engine.ingress}/api/enroll", body, {**CSRF, "Content-Type": ctype, **(headers or {})}
    )
    return status, json.loads(raw) if raw.startswith(b"{") else raw


def person_named(engine: WebEngine, name: str) -> dict[str, Any] | None:
    return next((p for p in engine.get_json("api/persons")["persons"] if p["name"] == name), None)


# ---- people --------------------------------------------------------------------------------------


def test_persons_list_and_detail_with_face_crops(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    persons = engine.get_json("api/persons")["persons"]
    assert [p["name"] for p in persons] == sorted(compose.ENROLLED)
    salley = next(p for p in persons if p["name"] == "John_Salley")
    assert salley["embeddings"] == 3 and re.fullmatch(r"[0-9a-f]{32}", salley["person_id"])
    assert salley["thumbnail_url"].startswith(f"api/persons/{salley['person_id']}/thumbnail.jpg")
    # John_Salley walks through the clip: the engine's sighting shows as last seen (time, camera).
    wait_for(lambda: (person_named(engine, "John_Salley") or {}).get("last_camera") == "door", 60, 1, "a sighting")
    seen = person_named(engine, "John_Salley")
    assert seen is not None and abs(time.time() - _epoch(seen["last_seen"])) < 120
    detail = engine.get_json(f"api/persons/{salley['person_id']}")
    assert detail["name"] == "John_Salley" and len(detail["embedding_list"]) == 3
    for e in detail["embedding_list"]:
        status, raw = call(engine, "GET", e["crop_url"])
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and img is not None and img.shape == (112, 112, 3)  # SFace's aligned crop
    status, thumb = call(engine, "GET", salley["thumbnail_url"])
    assert status == 200 and thumb == call(engine, "GET", detail["embedding_list"][0]["crop_url"])[1]
    assert call(engine, "GET", f"api/persons/{uuid.uuid4().hex}")[0] == 404
    assert call(engine, "GET", "api/persons/not-an-id")[0] == 404


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_enrol_upload_gives_a_result_per_photo(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    photos = [
        data_path("deepface/tests/unit/dataset/img1.jpg"),
        data_path("insightface_wheel/insightface/data/images/t1.jpg"),  # a group of six
        data_path("dlib/examples/faces/dogs.jpg"),
        data_path("deepface/tests/unit/dataset/img2.jpg"),
        ROOT / "README.md",  # not an image
    ]
    status, body = enrol(engine, "Angelina Jolie", photos)
    assert status == 200
    assert [r["status"] for r in body["results"]] == [
        "enrolled",
        "several_faces",
        "no_face",
        "enrolled",
        "not_an_image",
    ]
    assert [r["file"] for r in body["results"]] == [p.name for p in photos]
    assert body["person"] == "Angelina Jolie"
    person = person_named(engine, "Angelina Jolie")
    assert person is not None and person["embeddings"] == 2 and person["person_id"] == body["person_id"]
    # Nothing usable: nothing written, a result per photo.
    status, body = enrol(engine, "Nobody", [data_path("dlib/examples/faces/dogs.jpg")])
    assert status == 200 and body["person"] is None and body["results"][0]["status"] == "no_face"
    assert person_named(engine, "Nobody") is None


def test_enrol_rejects_bad_requests(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    img = data_path("deepface/tests/unit/dataset/img1.jpg")
    assert enrol(engine, "", [img])[0] == 400  # no name
    body, ctype = multipart([("name", "", "X")])
    assert http("POST", f"{engine.ingress}/api/enroll", body, {**CSRF, "Content-Type": ctype})[0] == 400  # no photo
    status, _ = call(engine, "POST", "api/enroll", {"name": "X"})  # JSON, not multipart
    assert status == 400
    status, body = enrol(engine, "Too Many", [img] * 21)
    assert status == 413 and body["error"] == "too_large"
    assert enrol(engine, "x" * 101, [img])[0] == 400  # names have at most 100 characters
    assert person_named(engine, "Too Many") is None


def test_rename_forget_embedding_and_forget_go_through_the_commands(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, sub = stack
    status, body = enrol(engine, "Anna", [data_path(f"deepface/tests/unit/dataset/img{i}.jpg") for i in (4, 5, 6)])
    assert status == 200 and [r["status"] for r in body["results"]].count("enrolled") >= 2
    pid = body["person_id"]
    before = len(sub.find("persons"))
    status, result = call(engine, "POST", f"api/persons/{pid}/rename", {"name": "Angie"})
    assert status == 200 and result["person"] == "Angie" and result["previous"] == "Anna"
    # The same path as the MQTT command: the retained persons topic is republished with the change.
    sub.wait_for("persons", lambda m: "Angie" in [p["name"] for p in m.payload["persons"]], count=1)
    assert len(sub.find("persons")) > before
    status, err = call(engine, "POST", f"api/persons/{pid}/rename", {"name": "John_Salley"})  # taken
    assert status == 400 and err["error"] == "bad_request" and "already exists" in err["message"]
    status, err = call(engine, "POST", f"api/persons/{pid}/rename", {"name": ""})
    assert status == 400
    detail = engine.get_json(f"api/persons/{pid}")
    n = detail["embeddings"]
    eid = detail["embedding_list"][0]["embedding_id"]
    status, result = call(engine, "DELETE", f"api/persons/{pid}/embeddings/{eid}")
    assert status == 200 and result["embeddings"] == n - 1 and result["person_removed"] is False
    assert eid not in [e["embedding_id"] for e in engine.get_json(f"api/persons/{pid}")["embedding_list"]]
    assert call(engine, "DELETE", f"api/persons/{pid}/embeddings/{eid}")[0] == 404  # already gone
    salley = person_named(engine, "John_Salley")
    assert salley is not None
    salley_eid = engine.get_json(f"api/persons/{salley['person_id']}")["embedding_list"][0]["embedding_id"]
    # An embedding of somebody else, under this person's URL: refused, nothing removed.
    assert call(engine, "DELETE", f"api/persons/{pid}/embeddings/{salley_eid}")[0] == 404
    assert person_named(engine, "John_Salley")["embeddings"] == 3  # type: ignore[index]
    status, result = call(engine, "DELETE", f"api/persons/{pid}")
    assert status == 200 and result["embeddings_removed"] == n - 1
    assert person_named(engine, "Angie") is None
    assert call(engine, "DELETE", f"api/persons/{pid}")[0] == 404


def test_changes_need_the_csrf_header(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    salley = person_named(engine, "John_Salley")
    assert salley is not None
    data = json.dumps({"name": "Hacked"}).encode()
    url = f"{engine.ingress}/api/persons/{salley['person_id']}/rename"
    status, _, _ = http("POST", url, data, {"Content-Type": "application/json"})
    assert status == 403
    assert http("DELETE", f"{engine.ingress}/api/persons/{salley['person_id']}")[0] == 403
    assert person_named(engine, "John_Salley") is not None and person_named(engine, "Hacked") is None


# ---- cameras, alerts, clips -------------------------------------------------------------------------


def test_cameras_and_their_stream_through_ingress(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    cams = wait_for(
        lambda: [c for c in engine.get_json("api/cameras")["cameras"] if c["state"] == "online" and c["fps"] > 0],
        60, 0.5, "an online camera",
    )  # fmt: skip
    cam = cams[0]
    assert cam["name"] == "door" and cam["stream_url"].startswith("api/cameras/door/stream.mjpeg")
    status, raw = call(engine, "GET", cam["snapshot_url"])  # no stream token: ingress is trusted
    assert status == 200 and cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR).shape == (720, 1280, 3)


def test_alerts_with_snapshot_and_a_relative_signed_clip(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    alerts = wait_for(lambda: [a for a in engine.get_json("api/alerts")["alerts"] if a["clip_url"]], 90, 1, "a clip")
    a = alerts[0]
    assert a["camera"] == "door" and a["kind"] in ("known_face", "unknown_face")
    assert re.fullmatch(r"clips/door/[A-Za-z0-9_\-]+/original\.mp4\?exp=\d+&sig=[0-9a-f]{64}", a["clip_url"])
    status, raw = call(engine, "GET", a["snapshot_url"])
    assert status == 200 and raw[:2] == b"\xff\xd8"
    # The clip plays through the same listener and seeks (a range request).
    status, _, raw = http("GET", f"{engine.ingress}/{a['clip_url']}", None, {"Range": "bytes=0-99"})
    assert status == 206 and len(raw) == 100 and raw[4:8] == b"ftyp"
    tampered = a["clip_url"].replace("original.mp4", "annotated.mp4")
    assert http("GET", f"{engine.ingress}/{tampered}")[0] == 403


def test_inbox_group_crops_and_actions(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, sub = stack
    # The demo clip's stranger ends as an unknown track: a group with crops.
    groups = wait_for(lambda: engine.get_json("api/inbox")["groups"], 90, 1, "an inbox group")
    g = groups[0]
    gid = g["group_id"]
    assert g["status"] == "pending" and g["crops"] >= 1 and len(g["crop_urls"]) == g["crops"]
    assert g["crop_url"] is None  # absolute URLs of the main port are no use through ingress
    status, raw = call(engine, "GET", g["crop_urls"][0])
    assert status == 200 and cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) is not None
    assert call(engine, "GET", f"api/inbox/{gid}/{g['crops']}.jpg")[0] == 404  # past the last crop
    status, result = call(engine, "POST", f"api/inbox/{gid}/ignore")
    assert status == 200 and result["status"] == "ignored"
    # Through the command handler: the retained inbox summary is republished with the change.
    sub.wait_for("inbox", lambda m: any(x["group_id"] == gid and x["status"] == "ignored" for x in m.payload["groups"]))
    assert next(x for x in engine.get_json("api/inbox")["groups"] if x["group_id"] == gid)["status"] == "ignored"
    assert call(engine, "POST", f"api/inbox/{gid}/unignore")[1]["status"] == "pending"
    status, err = call(engine, "POST", f"api/inbox/{gid}/merge", {"into_group_id": gid})
    assert status == 400 and err["error"] == "bad_request"
    status, err = call(engine, "POST", f"api/inbox/{gid}/name", {"name": "John_Salley", "mode": "new"})
    assert status == 400 and "already exists" in err["message"]  # nothing enrolled
    assert person_named(engine, "John_Salley")["embeddings"] == 3  # type: ignore[index]
    assert call(engine, "POST", f"api/inbox/{gid}/explode")[0] == 404
    assert call(engine, "POST", f"api/inbox/{uuid.uuid4().hex}/discard")[0] == 404
    status, result = call(engine, "POST", f"api/inbox/{gid}/discard")
    assert status == 200 and result["discarded"] is True
    assert gid not in [x["group_id"] for x in engine.get_json("api/inbox")["groups"]]


# ---- the page and access ----------------------------------------------------------------------------


def test_page_files_use_relative_urls_only() -> None:
    # A root-absolute URL ("/api/...") would miss the ingress prefix /api/hassio_ingress/<token>/.
    for name in ("index.html", "app.js", "app.css"):
        text = (UI_DIR / name).read_text()
        assert not re.search(r"""(src|href|action)=["']/|fetch\(["'`]/|url\(["']?/|["'`]/api/""", text), name
        assert "http://" not in text and "https://" not in text, name  # nothing from a CDN
    size = sum(p.stat().st_size for p in UI_DIR.iterdir())
    assert size < 100_000, size


def test_ingress_listener_serves_the_page_without_a_token(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    status, h, body = http("GET", f"{engine.ingress}/", headers={"X-Ingress-Path": "/api/hassio_ingress/abc"})
    assert status == 200 and b"<title>FaceTrack</title>" in body
    assert "script-src 'self'" in h["Content-Security-Policy"] and h["X-Content-Type-Options"] == "nosniff"
    status, h, js = http("GET", f"{engine.ingress}/ui/app.js")
    assert status == 200 and h["Content-Type"].startswith("text/javascript") and js == (UI_DIR / "app.js").read_bytes()
    assert http("GET", f"{engine.ingress}/ui/app.js", headers={"If-None-Match": h["ETag"]})[0] == 304
    for bad in ("ui/index.html", "ui/..%2Fapi.py", "ui/nothing.js"):
        assert http("GET", f"{engine.ingress}/{bad}")[0] == 404, bad
    info = engine.get_json("api/info")
    assert info["cameras"] == ["door"] and info["features"]["inbox"] is True


def test_main_port_needs_the_ui_token(stack: tuple[WebEngine, Subscriber]) -> None:
    engine, _ = stack
    base = engine.direct
    for path in ("/", "/api/persons", "/api/cameras", "/ui/app.js"):
        assert http("GET", base + path)[0] == 401, path
        assert http("GET", base + path, headers={"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
    assert http("GET", base + "/?token=wrong-token-0123456789")[0] == 401
    status, _, body = http("GET", base + "/api/persons", headers={"Authorization": f"Bearer {UI_TOKEN}"})
    assert status == 200 and "John_Salley" in body.decode()
    status, h, _ = http("GET", base + f"/?token={UI_TOKEN}")
    assert status == 303 and h["Location"] == "./"
    cookie = h["Set-Cookie"]
    assert f"facetrack_ui={UI_TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": f"facetrack_ui={UI_TOKEN}"}
    assert http("GET", base + "/", headers=jar)[0] == 200
    assert http("GET", base + "/api/cameras/door/snapshot.jpg")[0] == 401  # neither stream token nor UI token
    assert http("GET", base + "/api/cameras/door/snapshot.jpg", headers=jar)[0] in (200, 503)
    # Changes on the main port: the token and the CSRF header.
    salley = person_named(engine, "John_Salley")
    assert salley is not None
    url = base + f"/api/persons/{salley['person_id']}/rename"
    data = json.dumps({"name": "X"}).encode()
    assert http("POST", url, data, {"Content-Type": "application/json", **CSRF})[0] == 401
    assert http("POST", url, data, {"Content-Type": "application/json", **jar})[0] == 403
    assert http("GET", base + "/healthz")[0] == 200


# ---- in-process: the ingress peer check, and no page on the main port by default ----------------------


@pytest.fixture
def service(tmp_path: Path, video_path: Path) -> Iterator[FaceTrackService]:
    raw = {
        "db_path": str(tmp_path / "faces.lance"),
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # nothing listens: never connected
        "cameras": [{"name": "door", "source": str(video_path)}],
        "http": {"host": "127.0.0.1", "port": 0, "ingress_port": 0},  # ingress_allow: the Supervisor only
        "clips": {"storage": {"path": str(tmp_path / "clips")}},
    }
    svc = FaceTrackService(parse_service_config(raw))
    assert svc.web is not None
    svc.web.start()
    yield svc
    svc.web.stop()


def test_ingress_listener_refuses_other_peers(service: FaceTrackService) -> None:
    web = service.web
    assert web is not None and web.ingress_port is not None
    base = f"http://127.0.0.1:{web.ingress_port}"
    for path in ("/", "/api/persons", "/api/cameras/door/snapshot.jpg", "/healthz", "/ui/app.js", "/nothing"):
        status, _, body = http("GET", base + path, headers={"X-Ingress-Path": "/api/hassio_ingress/abc"})
        assert status == 403, path
        assert b"John" not in body and b"<html" not in body


def test_main_port_serves_no_page_without_a_ui_token(service: FaceTrackService) -> None:
    web = service.web
    assert web is not None
    base = f"http://127.0.0.1:{web.port}"
    for path in ("/", "/api/persons", "/ui/app.js"):
        assert http("GET", base + path)[0] == 404, path
    assert http("GET", base + "/healthz")[0] == 200


def test_app_options_enable_ingress_and_the_optional_token() -> None:
    options = {"cameras": [{"name": "door", "source": "rtsp://cam/stream"}]}
    raw = options_to_service_config(options, None)
    cfg = parse_service_config(raw)
    assert cfg.http.ingress_port == 8100 and cfg.http.ingress_allow == ("172.30.32.2",)
    assert cfg.http.ui_token is None
    cfg = parse_service_config(options_to_service_config({**options, "ui_token": UI_TOKEN}, None))
    assert cfg.http.ui_token == UI_TOKEN and UI_TOKEN not in repr(cfg.http)
    with pytest.raises(Exception, match="ui_token"):
        parse_service_config(options_to_service_config({**options, "ui_token": "short"}, None))


def test_a_page_request_does_not_hang_when_commands_are_not_running(service: FaceTrackService) -> None:
    from facetrack.commands import CommandError

    started = time.monotonic()
    with pytest.raises(CommandError) as err:
        service.commands.call("list", {}, timeout=30)  # the fixture never starts the command thread
    assert err.value.code == "busy" and time.monotonic() - started < 5


def test_page_without_the_inbox_when_it_is_disabled(tmp_path: Path, video_path: Path) -> None:
    raw = {
        "db_path": str(tmp_path / "faces.lance"),
        "mqtt": {"host": "127.0.0.1", "port": free_port()},
        "cameras": [{"name": "door", "source": str(video_path)}],
        "http": {"host": "127.0.0.1", "port": 0, "ui_token": UI_TOKEN},
        "inbox": {"enabled": False},
    }
    svc = FaceTrackService(parse_service_config(raw))
    assert svc.web is not None
    svc.web.start()
    try:
        auth = {"Authorization": f"Bearer {UI_TOKEN}"}
        base = f"http://127.0.0.1:{svc.web.port}"
        status, _, body = http("GET", base + "/api/info", headers=auth)
        assert status == 200 and json.loads(body)["features"]["inbox"] is False
        status, _, body = http("GET", base + "/api/inbox", headers=auth)
        assert status == 200 and json.loads(body) == {"available": False, "groups": []}
    finally:
        svc.web.stop()
