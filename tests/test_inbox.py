"""The unknown-face inbox: the Python API on real faces, the CLI's negative feedback, and the
running service end to end (a real Mosquitto, ``facetrack serve`` on the street clip, MQTT
commands validated against docs/schemas).

Faces for the API tests are the dlib "johns" chips of ``../shared/data`` (5 people, 10-11 aligned
photos each): each photo stands for one ended track (its embedding, crop and quality rank).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facetrack.cli import main
from facetrack.config import FaceTrackerConfig
from facetrack.images import encode_jpeg, read_image
from facetrack.inbox import FaceCrop, InboxConfig, InboxError, UnknownInbox
from facetrack.inbox.cover import single_face
from facetrack.inference import InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.quality import assess
from mqtt_helpers import Broker, Received, Subscriber, free_port
from test_service_e2e import Engine

THRESHOLD = 0.52  # cosine_similarity_threshold (docs/thresholds.md)
Face = tuple[str, np.ndarray, np.ndarray, float]  # person, embedding, crop, rank


@pytest.fixture(scope="module")
def johns(
    backend: InferenceBackend, config: FaceTrackerConfig, data_dir: Path, labels: list[dict[str, str]]
) -> dict[str, list[Face]]:
    out: dict[str, list[Face]] = {}
    for row in labels:
        if "/johns/" not in row["path"]:
            continue
        image = read_image(data_dir / row["path"])
        det = max(backend.detect(image), key=lambda d: d.score)
        crop = backend.aligned_crop(image, det)
        rank = assess(det, crop, config.face_filters).rank
        out.setdefault(row["person"], []).append((row["person"], backend.embed(image, [det])[0], crop, rank))
    assert len(out) == 5
    return out


def _add(inbox: UnknownInbox, faces: list[Face], camera: str = "door", t: float = 1000.0) -> list[str]:
    return [
        inbox.add_track(camera, emb, [FaceCrop(rank, crop, emb)], 3, t + i, t + i + 2).group_id
        for i, (_, emb, crop, rank) in enumerate(faces)
    ]


@pytest.fixture
def library(backend: InferenceBackend, tmp_path: Path) -> FaceLibrary:
    return FaceLibrary(tmp_path / "faces.lance", backend.model_id, backend.embedding_dim)


def _three(johns: dict[str, list[Face]], inbox: UnknownInbox) -> tuple[list[str], dict[str, str]]:
    people = sorted(johns)[:3]
    for p in people:
        _add(inbox, johns[p][:-1])  # the last photo of each is held out as a later probe
    group_of = {}
    for p in people:
        nearest = [inbox.nearest_group(e) for _, e, _, _ in johns[p][:-1]]
        ids = {n[0] if n is not None else None for n in nearest}
        assert len(ids) == 1 and None not in ids, f"{p} is not one group: {ids}"
        group_of[p] = str(next(iter(ids)))
    return people, group_of


def test_groups_by_person_then_naming_enrols(johns: dict[str, list[Face]], library: FaceLibrary) -> None:
    inbox = UnknownInbox(InboxConfig(max_crops_per_group=6), library)
    people, group_of = _three(johns, inbox)
    assert len(inbox) == 3 and len(set(group_of.values())) == 3
    a, b = people[0], people[1]
    g = inbox.group(group_of[a])
    assert g.tracks == len(johns[a]) - 1 and g.count == 3 * g.tracks and g.crops == 6
    assert g.status == "pending" and g.cameras == ("door",)
    assert g.nearest_person is None  # empty library: no hint
    # Crops are kept best first.
    ranks = sorted((f[3] for f in johns[a][:-1]), reverse=True)[:6]
    crop0 = cv2.imdecode(np.frombuffer(inbox.crop_jpeg(group_of[a], 0), np.uint8), cv2.IMREAD_COLOR)
    assert crop0.shape == (112, 112, 3)
    assert inbox.embeddings(group_of[a]).shape == (6, library.embedding_dim)
    best = max(johns[a][:-1], key=lambda f: f[3])
    assert float(inbox.embeddings(group_of[a])[0] @ best[1]) > 0.999
    assert ranks[0] == best[3]

    result = inbox.name(group_of[a], "Ann", mode="new", max_embeddings=4)
    assert (result.person, result.enrolled, result.embeddings, result.created) == ("Ann", 4, 4, True)
    assert len(inbox) == 2
    with pytest.raises(InboxError) as err:
        inbox.group(group_of[a])
    assert err.value.code == "not_found"
    # The held-out photo of Ann is now recognised; the others' are not.
    held_out = johns[a][-1][1]
    assert library.match(held_out, THRESHOLD)[0].name == "Ann"
    assert library.match(johns[b][-1][1], THRESHOLD)[0].name is None
    # Sources say where the embeddings came from.
    assert {e.source for e in library.embeddings("Ann")} == {f"inbox:{group_of[a]}"}
    # The remaining groups now carry the nearest person as a naming hint.
    assert all(g.nearest_person == "Ann" and g.nearest_similarity is not None for g in inbox.groups())

    with pytest.raises(InboxError) as err:
        inbox.name(group_of[b], "Ann", mode="new")
    assert err.value.code == "bad_request" and "already exists" in str(err.value)
    with pytest.raises(InboxError) as err:
        inbox.name(group_of[b], "Nobody", mode="add")
    assert err.value.code == "not_found"
    with pytest.raises(InboxError):
        inbox.name(group_of[b], "Bo", mode="sideways")  # type: ignore[arg-type]
    assert len(inbox) == 2  # nothing changed by the refused calls
    added = inbox.name(group_of[b], "Ann", mode="add", max_embeddings=2)
    assert (added.created, added.enrolled, added.embeddings) == (False, 2, 6)


def test_ignore_merge_discard(johns: dict[str, list[Face]], library: FaceLibrary) -> None:
    inbox = UnknownInbox(InboxConfig(), library)
    people, group_of = _three(johns, inbox)
    a, b, c = people
    inbox.ignore(group_of[a])
    assert inbox.group(group_of[a]).status == "ignored"
    assert inbox.ignored_group(johns[a][-1][1]) == group_of[a]  # a new sighting of the ignored person
    assert inbox.ignored_group(johns[b][-1][1]) is None
    # An ignored group keeps collecting its sightings.
    _add(inbox, johns[a][-1:])
    assert inbox.group(group_of[a]).tracks == len(johns[a])
    inbox.unignore(group_of[a])
    assert inbox.ignored_group(johns[a][-1][1]) is None

    tb, tc = inbox.group(group_of[b]).tracks, inbox.group(group_of[c]).tracks
    merged = inbox.merge(group_of[b], group_of[c])
    assert merged.group_id == group_of[c] and merged.tracks == tb + tc
    assert len(inbox) == 2
    with pytest.raises(InboxError) as err:
        inbox.merge(group_of[c], group_of[c])
    assert err.value.code == "bad_request"
    with pytest.raises(InboxError) as err:
        inbox.merge(group_of[b], group_of[c])  # b is gone
    assert err.value.code == "not_found"
    inbox.discard(group_of[c])
    assert [g.group_id for g in inbox.groups()] == [group_of[a]]
    for bad in ("NOT-HEX", "0" * 31, "g" * 32):
        with pytest.raises(InboxError) as err:
            inbox.discard(bad)
        assert err.value.code == "bad_request"
    with pytest.raises(InboxError) as err:
        inbox.crop_jpeg(group_of[a], 99)
    assert err.value.code == "not_found"


def test_persistence_is_atomic_and_survives_restarts(
    johns: dict[str, list[Face]], library: FaceLibrary, backend: InferenceBackend, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "inbox.npz"
    inbox = UnknownInbox(InboxConfig(), library, path)
    people, group_of = _three(johns, inbox)
    inbox.ignore(group_of[people[1]])  # a user action saves at once
    assert path.is_file() and not inbox.dirty
    _add(inbox, johns[people[2]][-1:], camera="garden", t=5000.0)
    assert inbox.dirty
    inbox.save()
    assert sorted(p.name for p in path.parent.iterdir()) == ["inbox.npz"]  # no temporary left over

    again = UnknownInbox(InboxConfig(), library, path)
    assert again.groups() == inbox.groups()
    assert again.group(group_of[people[2]]).cameras == ("garden", "door")
    for gid in group_of.values():
        assert again.crop_jpeg(gid, 0) == inbox.crop_jpeg(gid, 0)
        assert np.array_equal(again.embeddings(gid), inbox.embeddings(gid))
    assert again.ignored_group(johns[people[1]][-1][1]) == group_of[people[1]]

    # Another embedding model: the file is set aside, the inbox starts empty, nothing crashes.
    other = FaceLibrary(tmp_path / "other.lance", "another-model", backend.embedding_dim)
    fresh = UnknownInbox(InboxConfig(), other, path)
    assert len(fresh) == 0
    assert not path.exists() and len(list(path.parent.glob("inbox.npz.bad-*"))) == 1
    # A truncated file too.
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert len(UnknownInbox(InboxConfig(), library, path)) == 0
    assert not path.exists()

    # A disk that refuses the file: the user's action still happens, the save is retried later.
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    stuck = UnknownInbox(InboxConfig(), library, blocked / "inbox.npz")
    gid = _add(stuck, johns[people[0]][:1])[0]
    stuck.ignore(gid)
    assert stuck.group(gid).status == "ignored" and stuck.dirty
    with pytest.raises(OSError):
        stuck.save()


def test_bounded_and_aged_out(johns: dict[str, list[Face]], library: FaceLibrary) -> None:
    inbox = UnknownInbox(InboxConfig(max_groups=2, max_crops_per_group=2, max_age_days=1), library)
    people = sorted(johns)
    _add(inbox, johns[people[0]][:3], t=1000.0)
    _add(inbox, johns[people[1]][:3], t=2000.0)
    first = inbox.nearest_group(johns[people[0]][0][1])
    assert first is not None
    inbox.ignore(first[0])
    _add(inbox, johns[people[2]][:3], t=3000.0)  # over the bound: the oldest *pending* group goes
    assert len(inbox) == 2
    assert inbox.nearest_group(johns[people[1]][0][1]) is None
    assert all(g.crops <= 2 for g in inbox.groups())
    assert inbox.age_out(now=3000.0 + 86400 - 10) == [first[0]]  # last seen at 1004
    assert len(inbox) == 1
    assert inbox.age_out(now=10**10) and len(inbox) == 0
    with pytest.raises(ValueError, match="at least one face"):
        inbox.add_track("door", johns[people[0]][0][1], [], 1, 0, 1)
    with pytest.raises(ValueError, match="dimension"):
        inbox.add_track("door", np.ones(7, np.float32), [FaceCrop(1.0, johns[people[0]][0][2], np.ones(7))], 1, 0, 1)
    with pytest.raises(ValueError):
        InboxConfig(cluster_threshold=1.5)


# ---- negative feedback from the command line ---------------------------------------------------


def test_a_group_leaves_the_inbox_after_its_person_is_enrolled(
    johns: dict[str, list[Face]], library: FaceLibrary
) -> None:
    """A person enrolled from a photo (not through the inbox): their group's faces now match, the
    group leaves at the next re-match; the other people's groups stay."""
    inbox = UnknownInbox(InboxConfig(), library)
    people, group_of = _three(johns, inbox)
    a = people[0]
    _, emb, crop, _ = johns[a][-1]  # the held-out photo
    library.enroll("Ann", emb[None, :], [encode_jpeg(crop)], ["photo"])
    left = inbox.rematch(THRESHOLD)
    assert [(r.group_id, r.person) for r in left] == [(group_of[a], "Ann")]
    assert {g.group_id for g in inbox.groups()} == {group_of[p] for p in people[1:]}
    assert inbox.rematch(THRESHOLD) == []


def test_cover_check_on_real_crops(johns: dict[str, list[Face]], backend: InferenceBackend) -> None:
    """The detector finds one face again in aligned crops of real faces, none in a crop of hair, two
    (or one off-centre) in a crop of two heads side by side."""
    crops = [f[2] for faces in johns.values() for f in faces]
    good = [single_face(backend.detect, c) for c in crops]
    assert sum(good) >= 0.9 * len(crops), f"{sum(good)} of {len(crops)}"
    hair = [cv2.resize(c[:36], (112, 112), interpolation=cv2.INTER_CUBIC) for c in crops[::11]]
    assert not any(single_face(backend.detect, h) for h in hair)
    assert not single_face(backend.detect, np.full((112, 112, 3), 128, np.uint8))
    pairs = []
    for i in range(0, len(crops) - 11, 11):
        pair = np.full((112, 112, 3), 128, np.uint8)
        pair[28:84, :56] = cv2.resize(crops[i], (56, 56), interpolation=cv2.INTER_AREA)
        pair[28:84, 56:] = cv2.resize(crops[i + 11], (56, 56), interpolation=cv2.INTER_AREA)
        pairs.append(pair)
    assert not any(single_face(backend.detect, p) for p in pairs)


def test_cli_lists_and_forgets_embeddings(
    data_dir: Path, labels: list[dict[str, str]], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "faces.lance")
    photos = [str(data_dir / r["path"]) for r in labels if r["person"] == "john_salley"][:3]

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = main(list(args))
        return code, json.loads(capfd.readouterr().out.strip().splitlines()[-1])

    assert run("enroll", "--db", db, "--name", "John", *photos)[1]["enrolled"] == 3
    assert run("enroll", "--db", db, "--name", "Other", photos[0])[0] == 0
    code, listed = run("embeddings", "--db", db, "--name", "John", "--crops", str(tmp_path / "crops"))
    assert code == 0 and len(listed["embeddings"]) == 3
    ids = [e["embedding_id"] for e in listed["embeddings"]]
    assert all(cv2.imread(e["crop"]) is not None for e in listed["embeddings"])

    code, out = run("forget-embedding", "--db", db, "--name", "Other", ids[0])
    assert code == 1 and "not 'Other'" in out["error"]  # the safety check refuses a wrong owner
    code, out = run("forget-embedding", "--db", db, "--name", "John", ids[0])
    assert code == 0 and out["embeddings"] == 2 and out["person_removed"] is False
    code, out = run("forget-embedding", "--db", db, ids[0])
    assert code == 1 and "no embedding" in out["error"]
    code, listed = run("embeddings", "--db", db, "--name", "John")
    assert [e["embedding_id"] for e in listed["embeddings"]] == ids[1:]
    other_id = run("embeddings", "--db", db, "--name", "Other")[1]["embeddings"][0]["embedding_id"]
    code, out = run("forget-embedding", "--db", db, other_id)
    assert code == 0 and out["person_removed"] is True and out["person"] == "Other"
    assert [p["name"] for p in run("persons", "--db", db)[1]["persons"]] == ["John"]


# ---- the service, end to end -------------------------------------------------------------------


def _command(sub: Subscriber, verb: str, body: dict[str, Any] | bytes, rid: str, timeout: float = 120) -> Any:
    payload = body if isinstance(body, bytes) else {"request_id": rid, **body}
    sub.publish(f"facetrack/command/{verb}", payload)
    return sub.wait_for(f"response/{rid}", timeout=timeout)[-1].payload


def _passes(sub: Subscriber) -> list[tuple[float, float]]:
    """(start, end) receive times of complete passes over the file. The file replays at once,
    staying online: a pass ends when the next one begins, seen as the frame index of the
    ``track_started`` / ``identity`` messages (the frame processed) going back."""
    online = [m.at for m in sub.find("door/state") if m.payload["state"] == "online"]
    if not online:
        return []
    out, start, last = [], online[0], -1
    for m in sub.find("door/track"):
        if m.payload["type"] == "track_ended":
            continue  # its frame is the track's last one, earlier than the frame processed
        if m.payload["frame"] < last:
            out.append((start, m.at - 1e-6))
            start = m.at
        last = m.payload["frame"]
    return out


def _in(msgs: list[Received], span: tuple[float, float]) -> list[Received]:
    return [m for m in msgs if span[0] <= m.at <= span[1]]


def test_service_inbox_end_to_end(tmp_path: Path, video_path: Path) -> None:
    """Empty library, the street clip replayed: unknown tracks form inbox groups; one group is named
    (the next pass recognises that person), one is ignored (its tracks no longer alert); crops over
    MQTT and signed HTTP; negative feedback; malformed commands; the inbox survives a restart."""
    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port).start()
    http_port = free_port()
    engine = Engine(
        tmp_path, broker.port, tmp_path / "none", video_path,
        alerts={"alert_mode": "ON_UNKNOWNS", "alert_once": True, "cooldown_seconds": 0},
        clips={"enabled": False},
        http={"host": "127.0.0.1", "port": http_port, "stream_token": None},
        inbox={"path": str(tmp_path / "inbox.npz")},
    )  # fmt: skip
    try:
        engine.start()
        # (Generous timeouts: the engine starts and plays the clip slowly on a loaded machine.)
        sub.wait_for("facetrack/info", lambda m: m.payload.get("features") == ["inbox"], timeout=180)
        # Pass 1 ends (pass 2 begins): its unknown tracks have entered the inbox.
        deadline = time.monotonic() + 300
        while not _passes(sub):
            assert time.monotonic() < deadline, "pass 1 did not end"
            time.sleep(0.5)
        events = sub.wait_for("inbox/event", timeout=120, count=5)
        new_groups = {e.payload["group_id"] for e in events}
        # The summary is republished up to a second after a group appears: wait for one with them all.
        summary = sub.wait_for(
            "facetrack/inbox",
            lambda m: m.payload["pending"] >= 5 and new_groups <= {g["group_id"] for g in m.payload["groups"]},
            timeout=120,
        )[-1]
        late = Subscriber(broker.port).start()  # a client that connects later gets it: retained
        try:
            assert late.wait_for("facetrack/inbox", timeout=60)[0].retain
        finally:
            late.stop()
        assert all(not e.retain for e in events)
        pass1 = _passes(sub)[0]
        unknown1 = {m.payload["track_id"] for m in _in(sub.find("door/track"), pass1)
                    if m.payload["type"] == "identity" and m.payload["person"] is None}  # fmt: skip
        alerted1 = {m.payload["track_id"] for m in _in(sub.find("door/alert"), pass1)}
        assert unknown1 and alerted1 == unknown1  # cooldown 0: every unknown track alerts
        groups = {g["group_id"]: g for g in summary.payload["groups"]}
        assert {e.payload["group_id"] for e in events} <= set(groups)
        a, b, c, d = sorted(groups, key=lambda g: -groups[g]["count"])[:4]

        # Crops: over MQTT and through the signed URL.
        crop = _command(sub, "inbox_crop", {"group_id": b, "index": 0}, "crop1")
        assert crop["ok"] and crop["result"]["crops"] == groups[b]["crops"]
        jpeg = base64.b64decode(crop["result"]["jpeg_base64"])
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (112, 112, 3)
        url = groups[b]["crop_url"]
        assert url and url.startswith(f"http://127.0.0.1:{http_port}/inbox/{b}/0.jpg?exp=")
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg" and resp.read() == jpeg
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(url.replace("0.jpg", "1.jpg"), timeout=10)  # the signature is per path
        assert http_err.value.code == 403

        # Malformed and impossible commands get a clear error.
        for rid, verb, body, code in [
            ("bad1", "inbox_name", {"group_id": a}, "bad_request"),  # no name
            ("bad2", "inbox_name", {"group_id": a, "name": "X", "mode": "sideways"}, "bad_request"),
            ("bad3", "inbox_name", {"group_id": "f" * 32, "name": "X"}, "not_found"),
            ("bad4", "inbox_merge", {"group_id": a, "into_group_id": a}, "bad_request"),
            ("bad5", "inbox_ignore", {"group_id": "XYZ"}, "bad_request"),
            ("bad6", "inbox_crop", {"group_id": a, "index": True}, "bad_request"),
            ("bad7", "inbox_discard", {"group_id": a, "extra": 1}, "bad_request"),
            ("bad8", "forget_embedding", {"embedding_id": "0" * 32}, "not_found"),
            ("bad9", "list_embeddings", {"name": "Nobody"}, "not_found"),
        ]:
            resp = _command(sub, verb, body, rid)
            assert resp["ok"] is False and resp["error"]["code"] == code, (rid, resp)
        sub.publish("facetrack/command/inbox_list", b"{not json")
        assert sub.wait_for("response/invalid")[-1].payload["error"]["code"] == "bad_request"

        # Name a, ignore b, merge c into d.
        named = _command(sub, "inbox_name", {"group_id": a, "name": "Alice", "mode": "new"}, "name1")
        assert named["ok"], named
        assert named["result"]["created"] and named["result"]["enrolled"] >= 1
        assert _command(sub, "inbox_ignore", {"group_id": b}, "ign1")["result"] == {"group_id": b, "status": "ignored"}
        merged = _command(sub, "inbox_merge", {"group_id": c, "into_group_id": d}, "merge1")["result"]
        # (pass 2 may be adding sightings meanwhile: at least the sum)
        assert merged["group_id"] == d and merged["tracks"] >= groups[c]["tracks"] + groups[d]["tracks"]
        after = sub.find("facetrack/inbox")[-1].payload  # republished before the responses
        states = {g["group_id"]: g["status"] for g in after["groups"]}
        assert a not in states and c not in states and states[b] == "ignored" and d in states
        persons = sub.wait_for(
            "facetrack/persons", lambda m: any(p["name"] == "Alice" for p in m.payload["persons"]), timeout=60
        )
        assert persons[-1].payload["persons"][0]["embeddings"] == named["result"]["embeddings"]

        # Negative feedback over MQTT.
        listed = _command(sub, "list_embeddings", {"name": "Alice", "include_crops": True}, "le1")["result"]
        assert len(listed["embeddings"]) == named["result"]["embeddings"]
        assert all(base64.b64decode(e["crop_base64"])[:2] == b"\xff\xd8" for e in listed["embeddings"])
        if len(listed["embeddings"]) > 1:
            victim = listed["embeddings"][-1]["embedding_id"]
            wrong = _command(sub, "forget_embedding", {"embedding_id": victim, "name": "Bob"}, "fe0")
            assert wrong["error"]["code"] in ("not_found", "bad_request")
            gone = _command(sub, "forget_embedding", {"embedding_id": victim, "name": "Alice"}, "fe1")["result"]
            assert gone["embeddings"] == len(listed["embeddings"]) - 1 and not gone["person_removed"]
            again = _command(sub, "forget_embedding", {"embedding_id": victim}, "fe2")
            assert again["error"]["code"] == "not_found"

        # A whole pass after the commands: Alice is recognised, the ignored group never alerts.
        done = time.time()
        deadline = time.monotonic() + 300
        while not [p for p in _passes(sub) if p[0] > done]:
            assert time.monotonic() < deadline, "no complete pass after the commands"
            time.sleep(0.5)
        pass3 = next(p for p in _passes(sub) if p[0] > done)
        tracks3 = _in(sub.find("door/track"), pass3)
        assert any(m.payload["type"] == "identity" and m.payload["person"] == "Alice" for m in tracks3)
        unknown3 = {m.payload["track_id"] for m in tracks3
                    if m.payload["type"] == "identity" and m.payload["person"] is None}  # fmt: skip
        alerted3 = {m.payload["track_id"] for m in _in(sub.find("door/alert"), pass3)}
        suppressed = unknown3 - alerted3
        assert suppressed, "the ignored group's track must not alert"
        log = engine.log.read_text()
        assert all(f"track {t} is ignored group {b}: no alert" in log for t in suppressed)
        assert alerted3 <= unknown3 and alerted3  # the other unknown faces still alert

        # Restart: the inbox (with the ignored group) comes back from its file.
        assert engine.terminate() == 0
        before = {g["group_id"]: g["status"] for g in sub.find("facetrack/inbox")[-1].payload["groups"]}
        # Clear the broker's retained copy: what comes next can only be the new engine's.
        cleared = sub.client.publish("facetrack/inbox", b"", qos=1, retain=True)
        cleared.wait_for_publish(60)
        assert cleared.is_published()
        sub2 = Subscriber(broker.port).start()
        try:
            engine.start()
            retained = sub2.wait_for("facetrack/inbox", timeout=180)[0].payload
            restored = {g["group_id"]: g["status"] for g in retained["groups"]}
            assert restored == before and restored[b] == "ignored"
        finally:
            sub2.stop()
        assert not sub2.errors, sub2.errors[:5]
    finally:
        engine.kill()
        sub.stop()
        broker.stop()
    assert not sub.errors, "payloads not matching docs/schemas:\n" + "\n".join(sub.errors[:10])
