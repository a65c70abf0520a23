"""The engine's seams around the inbox, without a broker or cameras: :class:`InboxFeature` with
recording callables, the command handler built from narrow interfaces (inbox verbs registered,
answers and republishing in order), and the machine-readable code of library errors."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest

from facetrack.commands import SCHEMAS, CommandHandler, LibraryVerbsContext
from facetrack.errors import FaceTrackError, LibraryError
from facetrack.inbox import FaceCrop, InboxConfig, UnknownInbox
from facetrack.inbox.commands import INBOX_SCHEMAS, inbox_verbs
from facetrack.inbox.cover import single_face
from facetrack.inbox.feature import InboxFeature, InboxSink, UrlSigning
from facetrack.inference.base import Detection
from facetrack.library import FaceLibrary
from facetrack.library.names import InvalidNameError
from facetrack.recognizer import FaceRecognizer
from facetrack.track.face_tracker import BestCrop, Track
from facetrack.track.identity import IdentityState
from facetrack.verbs import CommandError
from facetrack.web.signing import UrlSigner

DIM = 8
SECRET = b"s" * 32


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass
class _UnknownVoter:
    state: IdentityState = IdentityState.UNKNOWN


@dataclass
class _Track:
    """What the inbox reads of an ended track."""

    track_id: int
    mean: np.ndarray
    first_ts: float = 0.0
    last_ts: float = 2.0
    embeddings: int = 3
    best: list[BestCrop] = field(default_factory=list)
    voter: _UnknownVoter = field(default_factory=_UnknownVoter)

    @property
    def mean_embedding(self) -> np.ndarray:
        return self.mean


def _track(track_id: int, mean: np.ndarray) -> Track:
    crop = np.full((112, 112, 3), track_id, np.uint8)
    return cast(Track, _Track(track_id, mean, best=[BestCrop(1.0, 0, crop, mean)]))


@pytest.fixture
def library(tmp_path: Path) -> FaceLibrary:
    return FaceLibrary(tmp_path / "faces.lance", "test-model", DIM)


@dataclass
class Recorder:
    """Everything published, in order: ``(topic, payload)``."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    links: tuple[str, UrlSigning] | None = None

    def feature(self, inbox: UnknownInbox) -> InboxFeature:
        return InboxFeature(
            inbox,
            publish_summary=lambda p: self.sent.append(("inbox", p)),
            publish_event=lambda p: self.sent.append(("inbox/event", p)),
            links=lambda: self.links,
        )

    def topics(self) -> list[str]:
        return [t for t, _ in self.sent]


def test_a_new_group_publishes_the_summary_then_its_event(library: FaceLibrary) -> None:
    rec = Recorder()
    feature = rec.feature(UnknownInbox(InboxConfig(), library))
    a = _unit(1)
    feature.on_unknown_ended("door", _track(7, a))
    assert rec.topics() == ["inbox", "inbox/event"]
    summary, event = rec.sent[0][1], rec.sent[1][1]
    assert len(summary["groups"]) == 1 and summary["pending"] == 1
    assert event["group_id"] == summary["groups"][0]["group_id"] and event["camera"] == "door"
    assert event["track_id"] == 7 and event["crop_url"] is None  # no HTTP server running

    # The same face again: the group grows, nothing now; the next tick republishes it once.
    feature.on_unknown_ended("yard", _track(8, a))
    assert rec.topics() == ["inbox", "inbox/event"]
    feature.tick()
    feature.tick()
    assert rec.topics() == ["inbox", "inbox/event", "inbox"]
    assert set(rec.sent[-1][1]["groups"][0]["cameras"]) == {"door", "yard"}


def test_crop_urls_are_signed_while_the_server_runs(library: FaceLibrary) -> None:
    signer = UrlSigner(SECRET)
    rec = Recorder(links=("https://ha.example:8099", signer))
    feature = rec.feature(UnknownInbox(InboxConfig(), library))
    feature.on_unknown_ended("door", _track(1, _unit(2)))
    url = rec.sent[1][1]["crop_url"]
    gid = rec.sent[1][1]["group_id"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://ha.example:8099"
    assert parts.path == f"/inbox/{gid}/0.jpg"
    query = parse_qs(parts.query)
    assert signer.verify(parts.path, query["exp"][0], query["sig"][0])
    assert int(query["exp"][0]) > time.time() + 86000  # a day
    assert feature.payload()["groups"][0]["crop_url"].startswith("https://ha.example:8099/inbox/")


def test_tick_saves_at_once_when_stopping(library: FaceLibrary, tmp_path: Path) -> None:
    path = tmp_path / "inbox.npz"
    rec = Recorder()
    feature = rec.feature(UnknownInbox(InboxConfig(), library, path))
    feature.on_unknown_ended("door", _track(1, _unit(3)))
    feature.tick()
    assert not path.exists()  # within INBOX_SAVE_INTERVAL of the start
    feature.tick(stop=True)
    assert path.exists() and len(UnknownInbox(InboxConfig(), library, path)) == 1


def test_a_failing_publisher_never_reaches_the_camera(library: FaceLibrary) -> None:
    def broken(_payload: dict[str, Any]) -> None:
        raise RuntimeError("broker gone")

    events: list[dict[str, Any]] = []
    feature = InboxFeature(UnknownInbox(InboxConfig(), library), broken, events.append, lambda: None)
    feature.on_unknown_ended("door", _track(1, _unit(4)))
    assert len(events) == 1


# ---- re-match after a library change, cover crops ----------------------------------------------------


def _basis(i: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    return v


def test_a_group_leaves_the_inbox_after_its_person_is_enrolled(library: FaceLibrary, tmp_path: Path) -> None:
    rec = Recorder()
    path = tmp_path / "inbox.npz"
    inbox = UnknownInbox(InboxConfig(), library, path)
    feature = InboxFeature(
        inbox,
        publish_summary=lambda p: rec.sent.append(("inbox", p)),
        publish_event=lambda p: rec.sent.append(("inbox/event", p)),
        links=lambda: None,
        match_threshold=0.52,
    )
    for track_id, axis in ((1, 0), (2, 1), (3, 2)):
        feature.on_unknown_ended("door", _track(track_id, _basis(axis)))
    groups = {g.group_id: g for g in inbox.groups()}
    ann, bob, carl = (inbox.nearest_group(_basis(i)) for i in range(3))
    assert ann and bob and carl and len(groups) == 3
    inbox.ignore(carl[0])
    feature.tick()  # the start-up re-match: an empty library matches nothing
    assert len(inbox) == 3

    # Ann is enrolled from elsewhere (a photo), close to her group's faces; Carl's group is ignored.
    near_ann = _basis(0) + 0.3 * _basis(3)
    library.enroll("Ann", (near_ann / np.linalg.norm(near_ann))[None, :], [b"\xff\xd8"], ["photo"])
    library.enroll("Carl", _basis(2)[None, :], [b"\xff\xd8"], ["photo"])
    rec.sent.clear()
    feature.tick()
    assert len(inbox) == 3  # nothing happens until the library says it changed
    feature.library_changed()
    feature.tick()
    assert {g.group_id for g in inbox.groups()} == {bob[0], carl[0]}  # Ann's group left; Carl's is ignored
    assert rec.topics() == ["inbox"]
    assert [g["group_id"] for g in rec.sent[0][1]["groups"]] == [g.group_id for g in inbox.groups()]
    # Saved at once (a user-visible change), so a restart does not bring the group back.
    assert {g.group_id for g in UnknownInbox(InboxConfig(), library, path).groups()} == {bob[0], carl[0]}
    # A face far from every enrolled person stays, whatever the library holds.
    assert inbox.rematch(0.52) == []


def test_rematch_needs_most_of_a_groups_faces(library: FaceLibrary) -> None:
    inbox = UnknownInbox(InboxConfig(cluster_threshold=0.3), library)
    mixed = _basis(0) + _basis(1)
    a, b = _basis(0), mixed / np.linalg.norm(mixed)
    crops = [FaceCrop(3.0, np.zeros((112, 112, 3), np.uint8), a), FaceCrop(2.0, np.zeros((112, 112, 3), np.uint8), b)]
    added = inbox.add_track("door", a + b, crops, 2, 0.0, 1.0)
    assert added is not None
    library.enroll("Ann", _basis(0)[None, :], [b"\xff\xd8"], ["photo"])
    assert inbox.rematch(0.9) == []  # one crop of two matches at 0.9: no majority
    assert [r.group_id for r in inbox.rematch(0.7)] == [added.group_id]  # both match at 0.7 (cos 0.71)


def _crop(value: int) -> np.ndarray:
    return np.full((112, 112, 3), value, np.uint8)


def _fake_detect(faces_by_value: dict[int, int]) -> Any:
    """A detector that sees ``faces_by_value[crop value]`` centred faces in a padded crop."""

    def detect(frame: np.ndarray) -> list[Detection]:
        value = int(frame[frame.shape[0] // 2, frame.shape[1] // 2, 0])
        box = np.array([60, 60, 164, 164], np.float32)
        return [Detection(box, 0.95, np.zeros((5, 2), np.float32))] * faces_by_value.get(value, 0)

    return detect


def _decoded_value(jpeg: bytes) -> int:
    return int(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[56, 56, 0])


def test_the_cover_is_a_crop_with_one_usable_face(library: FaceLibrary) -> None:
    feature = Recorder().feature(UnknownInbox(InboxConfig(), library))
    good, hair, pair = 40, 120, 200
    sink = InboxSink(feature, "door", _fake_detect({good: 1, pair: 2}))
    mean = _basis(0)

    def track(track_id: int, *crops: tuple[int, float]) -> Track:
        best = [BestCrop(rank, 0, _crop(value), mean) for value, rank in crops]
        return cast(Track, _Track(track_id, mean, best=best))

    # Only a hair crop and a two-face crop: such a track never starts a group.
    sink.tracks_ended([track(1, (hair, 9.0), (pair, 8.0))])
    assert len(feature.inbox) == 0
    # The hair crop ranks best, yet the good one is the cover.
    sink.tracks_ended([track(2, (hair, 9.0), (good, 1.0))])
    [group] = feature.inbox.groups()
    assert abs(_decoded_value(feature.inbox.crop_jpeg(group.group_id, 0)) - good) <= 3
    # A later track of bad crops may join the group (its faces still count), never as its cover.
    sink.tracks_ended([track(3, (pair, 50.0))])
    group = feature.inbox.group(group.group_id)
    assert group.tracks == 2 and group.crops == 3
    assert abs(_decoded_value(feature.inbox.crop_jpeg(group.group_id, 0)) - good) <= 3
    # Naming enrols only the crops with one usable face.
    result = feature.inbox.name(group.group_id, "Ann")
    assert result.enrolled == 1


def test_a_failing_cover_check_keeps_the_face(library: FaceLibrary) -> None:
    def broken(_frame: np.ndarray) -> list[Detection]:
        raise RuntimeError("detector gone")

    feature = Recorder().feature(UnknownInbox(InboxConfig(), library))
    feature.on_unknown_ended("door", _track(1, _basis(0)), lambda crop: single_face(broken, crop))
    assert len(feature.inbox) == 1


# ---- the command handler over narrow interfaces -----------------------------------------------------


@dataclass
class _Camera:
    crops: dict[int, list[BestCrop]]

    def best_crops(self, track_id: int) -> list[BestCrop]:
        return self.crops.get(track_id, [])


def _handler(library: FaceLibrary, log: list[tuple[str, Any]], feature: InboxFeature | None) -> CommandHandler:
    cameras = {"door": _Camera({5: [BestCrop(1.0, 0, np.zeros((112, 112, 3), np.uint8), _unit(9))]})}
    ctx = LibraryVerbsContext(
        library,
        cast(FaceRecognizer, None),  # enrolment from images is not exercised here
        None,
        cameras.get,
        lambda: [{"name": p.name} for p in library.persons()],
    )
    handler = CommandHandler(
        ctx,
        respond=lambda rid, payload: log.append(("response", payload)),
        after_change=lambda verb: log.append(("after_change", verb)),
    )
    handler.register(inbox_verbs(feature))
    return handler


def _run(handler: CommandHandler, *commands: tuple[str, dict[str, Any]]) -> None:
    handler.start()
    for i, (verb, body) in enumerate(commands):
        handler.submit(verb, json.dumps({"request_id": f"r{i}", **body}).encode())
    handler.stop()


def test_commands_answer_through_respond_and_republish_after_changes(library: FaceLibrary) -> None:
    log: list[tuple[str, Any]] = []
    handler = _handler(library, log, None)
    _run(
        handler,
        ("enroll_track", {"camera": "door", "track_id": 5, "name": "Ann"}),
        ("list", {}),
        ("forget", {"name": "Bob"}),
        ("forget_embedding", {"embedding_id": "0" * 32}),
        ("inbox_list", {}),
        ("enroll_track", {"camera": "garage", "track_id": 5, "name": "Ann"}),
        ("nope", {}),
    )
    # An unknown verb is answered at once, on the network thread; the others in order.
    assert [p["request_id"] for kind, p in log if kind == "response"] == ["r6", *(f"r{i}" for i in range(6))]
    responses = sorted((p for kind, p in log if kind == "response"), key=lambda p: p["request_id"])
    assert responses[0]["ok"] and responses[0]["result"]["enrolled"] == 1
    assert log[2] == ("after_change", "enroll_track")  # after its answer
    assert responses[1]["result"] == {"persons": [{"name": "Ann"}]}
    # Library errors keep their code (no message matching): no person, no embedding.
    assert responses[2]["error"]["code"] == "not_found"
    assert responses[3]["error"]["code"] == "not_found"
    assert responses[4]["error"] == {
        "code": "bad_request",
        "message": "the unknown-face inbox is disabled (inbox.enabled: false)",
    }
    assert responses[5]["error"]["code"] == "not_found"
    assert responses[6]["error"]["code"] == "unknown_command"
    # Read-only verbs and failures republish nothing.
    assert [v for kind, v in log if kind == "after_change"] == ["enroll_track"]


def test_an_inbox_change_republishes_the_inbox_before_its_answer(library: FaceLibrary) -> None:
    log: list[tuple[str, Any]] = []
    feature = InboxFeature(
        UnknownInbox(InboxConfig(), library),
        publish_summary=lambda p: log.append(("inbox", p)),
        publish_event=lambda p: log.append(("inbox/event", p)),
        links=lambda: None,
    )
    feature.on_unknown_ended("door", _track(1, _unit(5)))
    gid = feature.inbox.groups()[0].group_id
    log.clear()
    _run(_handler(library, log, feature), ("inbox_list", {}), ("inbox_ignore", {"group_id": gid}))
    kinds = [kind for kind, _ in log]
    assert kinds == ["response", "inbox", "response", "after_change"]
    assert log[0][1]["result"]["groups"][0]["group_id"] == gid
    assert log[1][1]["groups"][0]["status"] == "ignored"
    assert log[2][1]["result"] == {"group_id": gid, "status": "ignored"}


def test_the_web_page_call_raises_the_same_codes(library: FaceLibrary) -> None:
    handler = _handler(library, [], None)
    handler.start()
    try:
        with pytest.raises(CommandError) as err:
            handler.call("rename", {"name": "Nobody", "new_name": "X"}, timeout=30)
        assert err.value.code == "not_found"
        with pytest.raises(CommandError) as err:
            handler.call("inbox_name", {"group_id": "x", "name": "A"}, timeout=30)
        assert err.value.code == "bad_request"
    finally:
        handler.stop()


def test_schemas_hold_every_verb() -> None:
    assert set(INBOX_SCHEMAS) <= set(SCHEMAS)
    assert {"enroll", "enroll_track", "forget", "rename", "list", "list_embeddings", "forget_embedding"} <= set(SCHEMAS)


# ---- library errors carry a code --------------------------------------------------------------------


def test_library_errors_carry_a_machine_readable_code(library: FaceLibrary) -> None:
    with pytest.raises(LibraryError) as err:
        library.forget("Nobody")
    assert err.value.code == "not_found"
    with pytest.raises(LibraryError) as err:
        library.delete_embedding("0" * 32)
    assert err.value.code == "not_found"
    crop = b"\xff\xd8"
    library.enroll("Ann", _unit(1)[None, :], [crop], ["t"])
    library.enroll("Bob", _unit(2)[None, :], [crop], ["t"])
    with pytest.raises(LibraryError) as err:
        library.rename("Ann", "Bob")
    assert err.value.code == "bad_request"  # taken: as MQTT answered it before
    with pytest.raises(LibraryError) as err:
        library.enroll("Cy", np.zeros((1, DIM + 1), np.float32), [crop], ["t"])
    assert err.value.code == "bad_request"
    with pytest.raises(InvalidNameError) as name_err:
        library.enroll("\u0000", _unit(3)[None, :], [crop], ["t"])
    assert name_err.value.code == "bad_request"
    assert FaceTrackError("x").code == "bad_request"
