"""Auto-enrichment of the gallery: a confidently recognised track adds the pose its person lacks.

Off by default (``gallery.auto_enrich``; app option ``auto_enrich_gallery``). When a camera track
ends **known** and its evidence is beyond doubt, and its person's gallery has no embedding of a
head pose (:mod:`facetrack.pose`) the track has a best crop of, that crop is enrolled to the person
(source ``auto:<camera>/<track id>``), so the next time the person turns their head the gallery
holds a face like it. "Beyond doubt" (:func:`candidate`):

- the track ended KNOWN and its voter was never ambiguous (no vote for anybody else or for nobody,
  no change of decision: :attr:`facetrack.track.identity.IdentityVoter.ambiguous`);
- at least :data:`MIN_VOTES` votes, every one for that person;
- their mean cosine similarity at least ``threshold + gallery.auto_margin``.

At most one crop per track (profile first, then three-quarter, then frontal: the turned poses are
the ones photo enrolment misses), at most ``gallery.max_auto_per_person`` automatic additions per
person in all (sources ``auto:``), and only into an empty pose bin. Embeddings enrolled before
poses were recorded (pose ``unknown``) count as frontal: they came from photos that passed the
yaw filter then, nearly all frontal. Every addition is logged (INFO) with its embedding id, which
``forget_embedding`` removes.

The decision is cheap and runs on the camera thread (:class:`EnrichSink.tracks_ended`); the
enrolment (dlib descriptor ~150 ms, a Lance commit) runs on one :class:`GalleryEnricher` thread
shared by the cameras, behind a bounded queue (a full queue drops the candidate: enrichment is an
optimisation), and re-checks the rules against the library first (another camera may have filled
the pose meanwhile).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facetrack.camera.runner import FrameSink
from facetrack.config.gallery import GalleryConfig
from facetrack.errors import FaceTrackError
from facetrack.images import encode_jpeg
from facetrack.library import FaceLibrary, Person
from facetrack.library.second import SecondDescriber
from facetrack.pose import POSE_BINS, PoseBin, pose_bin
from facetrack.track.face_tracker import BestCrop, Track
from facetrack.track.identity import IdentityState

_LOG = logging.getLogger(__name__)
#: Votes a track needs, all for its person (the voter's window may hold more).
MIN_VOTES = 3
#: Source prefix of auto-enriched embeddings.
AUTO_SOURCE = "auto:"
#: Candidates waiting for the enrichment thread at most (more are dropped).
QUEUE_SIZE = 16
#: The order poses are filled in: the turned ones photo enrolment misses first.
_FILL_ORDER: tuple[PoseBin, ...] = ("profile", "three_quarter", "frontal")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A crop of a track to add to ``person_id``'s gallery in pose ``pose``."""

    camera: str
    track_id: int
    person_id: str
    pose: PoseBin
    crop: BestCrop = field(repr=False)

    @property
    def source(self) -> str:
        """The embedding's source: ``auto:<camera>/<track id>``."""
        return f"{AUTO_SOURCE}{self.camera}/{self.track_id}"


def covered_poses(person: Person) -> set[PoseBin]:
    """The pose bins a person's gallery has embeddings of (``unknown`` counted as frontal)."""
    out: set[PoseBin] = {b for b in POSE_BINS if person.poses.get(b, 0) > 0}
    if person.poses.get("unknown", 0) > 0:
        out.add("frontal")
    return out


def automatic_count(library: FaceLibrary, person_id: str) -> int:
    """Embeddings auto-enrichment has added to a person (sources ``auto:``)."""
    return sum(1 for e in library.embedding_infos(person_id) if e.source.startswith(AUTO_SOURCE))


def candidate(track: Track, camera: str, library: FaceLibrary, config: GalleryConfig) -> Candidate | None:
    """The crop of an ended track to add to its person's gallery, or ``None`` (see the module)."""
    voter = track.voter
    pid = voter.person_id
    if voter.state is not IdentityState.KNOWN or voter.ambiguous or pid is None or not track.best:
        return None
    votes = list(voter.votes)
    if len(votes) < MIN_VOTES or any(v.person_id != pid for v in votes):
        return None
    mean = sum(v.similarity for v in votes) / len(votes)
    if mean < voter.threshold + config.auto_margin:
        return None
    person = library.person_by_id(pid)
    if person is None or automatic_count(library, pid) >= config.max_auto_per_person:
        return None
    covered = covered_poses(person)
    best: dict[PoseBin, BestCrop] = {}
    for c in sorted(track.best, key=lambda c: -c.rank):
        best.setdefault(pose_bin(c.yaw), c)
    pose = next((p for p in _FILL_ORDER if p in best and p not in covered), None)
    return Candidate(camera, track.track_id, pid, pose, best[pose]) if pose is not None else None


class GalleryEnricher:
    """Enrols the candidates of every camera, one at a time, on its own thread.

    Args:
        library: the face library.
        config: the ``gallery`` options.
        second: computes the dlib second descriptor of a crop's context (``None``: a new one).
    """

    def __init__(self, library: FaceLibrary, config: GalleryConfig, second: SecondDescriber | None = None) -> None:
        self.library = library
        self.config = config
        self.second = second if second is not None else SecondDescriber()
        self.added: list[str] = []  # embedding ids added (newest last)
        self._queue: queue.Queue[Candidate | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, cand: Candidate) -> bool:
        """Queue a candidate (any thread, never blocks); False when the queue is full."""
        try:
            self._queue.put_nowait(cand)
        except queue.Full:
            _LOG.debug("gallery enrichment busy: %s track %d skipped", cand.camera, cand.track_id)
            return False
        return True

    def start(self) -> None:
        """Start the enrichment thread."""
        self._thread = threading.Thread(target=self._run, name="gallery-enricher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued candidates (up to ``timeout`` s) and stop the thread."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while (cand := self._queue.get()) is not None:
            self.enrol(cand)

    def process_pending(self) -> int:
        """Enrol every queued candidate on the caller's thread; returns how many were added."""
        n = 0
        while True:
            try:
                cand = self._queue.get_nowait()
            except queue.Empty:
                return n
            if cand is not None and self.enrol(cand) is not None:
                n += 1

    def enrol(self, cand: Candidate) -> str | None:
        """Enrol one candidate if the rules still hold; returns the new embedding id. Never raises."""
        with self._lock:
            try:
                return self._enrol(cand)
            except FaceTrackError as err:
                _LOG.warning("gallery enrichment from %s track %d failed: %s", cand.camera, cand.track_id, err)
            except Exception:
                _LOG.exception("gallery enrichment from %s track %d failed", cand.camera, cand.track_id)
            return None

    def _enrol(self, cand: Candidate) -> str | None:
        self.library.refresh()
        person = self.library.person_by_id(cand.person_id)
        if person is None or cand.pose in covered_poses(person):
            return None
        if automatic_count(self.library, cand.person_id) >= self.config.max_auto_per_person:
            return None
        c = cand.crop
        d2 = self.second.describe_one(c.context, c.context_box)
        before = {e.embedding_id for e in self.library.embedding_infos(cand.person_id)}
        updated = self.library.enroll(
            person.name,
            np.asarray(c.embedding, np.float32)[None, :],
            [encode_jpeg(c.crop)],
            [cand.source],
            yaws=[c.yaw],
            descriptors2=d2[None, :],
        )
        new = [e.embedding_id for e in self.library.embedding_infos(updated.person_id) if e.embedding_id not in before]
        embedding_id = new[0] if new else None
        if embedding_id is not None:
            self.added.append(embedding_id)
        _LOG.info(
            "gallery: added a %s face of %s from %s track %d (embedding %s; remove it with forget_embedding)",
            cand.pose.replace("_", "-"),
            updated.name,
            cand.camera,
            cand.track_id,
            embedding_id,
        )
        return embedding_id


class EnrichSink(FrameSink):
    """A camera's ended tracks that qualify go to the :class:`GalleryEnricher` (decided on the
    camera thread, enrolled on the enricher's); a failure is logged, never the camera's end."""

    def __init__(self, enricher: GalleryEnricher, camera: str) -> None:
        self.enricher = enricher
        self.camera = camera

    def tracks_ended(self, tracks: Sequence[Track]) -> None:
        for track in tracks:
            try:
                cand = candidate(track, self.camera, self.enricher.library, self.enricher.config)
            except Exception:  # enrichment must never stop a camera
                _LOG.exception("camera %s: track %d: gallery enrichment check failed", self.camera, track.track_id)
                continue
            if cand is not None:
                self.enricher.submit(cand)
