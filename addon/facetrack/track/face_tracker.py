"""Per-camera face tracker: detections in, confirmed named tracks and events out.

Association is ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box", ECCV 2022) as implemented by Roboflow's ``trackers`` package
(``trackers.ByteTrackTracker``, Apache-2.0). It was chosen over supervision's ByteTrack (moved
out of supervision into ``trackers`` in 2025), degirum_tools' ObjectTracker (tied to DeGirum
result objects and the DeGirum runtime) and the unmaintained ``bytetracker`` package: it is
maintained, typed, has a plain numpy/scipy core and takes our boxes and scores directly. Its
``minimum_consecutive_frames`` is our ``credence_count``.

On top of it this module adds what face recognition needs:
- adaptive re-identification: a confirmed track is embedded on confirmation, then after 1, 2,
  4, 8, ... frames, capped at ``reid_expiration_frames``; the backoff resets when an embedding
  disagrees with the track's identity, and wherever ByteTrack's association is least certain
  (a track re-associated after missed frames, or two faces overlapping), which is where id
  swaps happen; so the cap can be long without a swap going unnoticed for long;
- identity by vote (:mod:`facetrack.track.identity`), from usable faces only
  (:mod:`facetrack.quality`);
- appearance consistency: two consecutive embeddings far from the track's mean embedding mean
  ByteTrack followed the box onto another face (one head passing in front of another); the box
  gets a new track and the old track waits, lost, for its face;
- revival: a new ByteTrack track whose first face matches a lost track's mean embedding continues
  that track (same id), bridging occlusions ByteTrack's motion model cannot;
- scene cuts end every track (:mod:`facetrack.track.scene`);
- motion-gated detection (:mod:`facetrack.track.motion`): with no track alive the detector runs
  only on frames where something moved (there only around what moved; at most
  ``motion_detect_fps`` times a second if set), and ``detect_fps`` times a second;
- a short gallery of recently ended tracks gives a returning person their identity back at once.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from facetrack.config import FaceTrackerConfig
from facetrack.events import TrackEvent
from facetrack.images import face_context
from facetrack.inference.base import Detection, FloatArray, Frame, InferenceBackend, check_frame
from facetrack.library import FaceLibrary, Match
from facetrack.matching import Evidence, FacePose, classify, confirm_distance, lowest_floor
from facetrack.pose import pose_bin
from facetrack.quality import FaceQuality, assess
from facetrack.track.identity import IdentityState, IdentityVoter, Vote
from facetrack.track.motion import DetectionGate, detect_in_windows
from facetrack.track.scene import SceneCutDetector
from facetrack.track.second_opinion import SecondOpinion

_LOG = logging.getLogger(__name__)
#: Best face crops kept per track and head-pose bin (for enrolment from a track, the inbox and
#: snapshots): a track that turned its head keeps its three-quarter and profile views too.
BEST_CROPS = 3
#: While a track has no identity, it is re-identified at least every this many frames (0.64 s at
#: 25 frames/s; a named track backs off to ``reid_expiration_frames``): a face
#: that is turned or small now may turn to the camera a moment later (the backoff must not let
#: the track end unnamed).
PENDING_MAX_INTERVAL = 16
#: Second-opinion calls (about 150 ms each) a track may make; two consistent answers about a
#: person settle that person for the track's later grey-zone matches.
MAX_SECOND_OPINIONS = 4
SETTLED_OPINIONS = 2
#: A turned face splits a track only this much further below ``appearance_split_threshold``.
TURNED_SPLIT_ALLOWANCE = 0.15
#: A face after a suspected swap that is this much more similar (cosine) to the suspect face than
#: to the track's mean embedding confirms the swap.
SWAP_MARGIN = 0.15
#: Two tracked faces overlapping at least this much (IoU) are re-identified at once.
OVERLAP_IOU = 0.3
#: A track re-associated after more missed frames than this is re-identified at once (short
#: gaps are the detector flickering on small faces, not a possible swap).
REASSOCIATION_GAP_FRAMES = 8
#: A detection score below this fraction of the previous frame's, or a box area changing by more
#: than this factor between frames, also triggers re-identification (occlusion onsets).
SCORE_DROP_RATIO = 0.75
AREA_JUMP_RATIO = 1.4


@dataclass(order=True, slots=True)
class BestCrop:
    """A face crop of a track, ranked by :attr:`FaceQuality.rank`.

    Attributes:
        rank: :attr:`FaceQuality.rank` (higher is better).
        frame: frame index of the crop.
        crop: ``(112, 112, 3) uint8`` aligned BGR crop (the embedder's input).
        embedding: ``(D,) float32``, L2-normalised.
        yaw: yaw ratio of the face (:func:`facetrack.quality.landmark_geometry`; 0 frontal).
        context: the face with context (:func:`facetrack.images.face_context`), ``(h, w, 3)
            uint8`` BGR, for a second descriptor's own alignment; ``None`` when not kept.
        context_box: ``(4,) float32`` face box in ``context``'s pixels.
    """

    rank: float
    frame: int = field(compare=False)
    crop: Frame = field(compare=False, repr=False)
    embedding: FloatArray = field(compare=False, repr=False)
    yaw: float = field(default=0.0, compare=False)
    context: Frame | None = field(default=None, compare=False, repr=False)
    context_box: FloatArray | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Track:
    """State of one confirmed track."""

    track_id: int
    first_frame: int
    first_ts: float
    voter: IdentityVoter
    detection: Detection
    last_frame: int
    last_ts: float
    next_embed_frame: int
    interval: int = 1
    embeddings: int = 0
    embedding_sum: FloatArray | None = None
    best: list[BestCrop] = field(default_factory=list)
    last_quality: FaceQuality | None = None
    reacquired_from: int | None = None
    suspect: tuple[_Probe, Vote | None] | None = None  # an odd embedding awaiting confirmation
    #: Second-opinion answers by person id: True confirmed, False refused.
    opinions: dict[str, list[bool]] = field(default_factory=dict)
    #: The association was uncertain since the last embedding (an overlap, a re-association, a
    #: score drop or a jump in size): the next face is embedded as a check even if only its
    #: detector score keeps it from voting.
    uncertain: bool = False

    @property
    def mean_embedding(self) -> FloatArray | None:
        """L2-normalised mean of the track's usable embeddings, ``(D,) float32``."""
        if self.embedding_sum is None:
            return None
        n = float(np.linalg.norm(self.embedding_sum))
        return (self.embedding_sum / max(n, 1e-12)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """A face in the current frame, for drawing and state: its track, identity and box."""

    track_id: int
    detection: Detection
    state: IdentityState
    person: str | None
    similarity: float | None


@dataclass(slots=True)
class FrameResult:
    """Output of :meth:`FaceTracker.process` for one frame."""

    faces: list[TrackedFace]
    events: list[TrackEvent]
    embeddings: int
    scene_cut: bool = False
    detections: int = 0
    #: The face detector ran on this frame (the motion gate may skip it; see ``motion_gate``).
    detected: bool = True
    #: Nothing changed: the motion gate saw no motion on this frame nor the one before, and no
    #: face is tracked nor held (``FOUND_HOLD_SECONDS``): a recorder may reuse the previous
    #: frame's encoding. Never true without the gate.
    still: bool = False


@dataclass(frozen=True, slots=True)
class _Probe:
    crop: Frame
    quality: FaceQuality
    embedding: FloatArray | None  # (D,) float32, None for an unusable face


@dataclass(frozen=True, slots=True)
class _Ended:
    ts: float
    track_id: int
    embedding: FloatArray
    state: IdentityState
    person_id: str | None
    name: str | None
    votes: tuple[Vote, ...]


class FaceTracker:
    """Tracks faces in one camera's frames and names them from a :class:`FaceLibrary`.

    Args:
        backend: inference backend (detection + embedding).
        library: the face library to match against (may be shared by several trackers).
        config: thresholds and tracking parameters.
        fps: nominal frame rate of the source, frames/s (scales ByteTrack's lost-track buffer).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        library: FaceLibrary,
        config: FaceTrackerConfig,
        fps: float = 25.0,
    ) -> None:
        self.backend = backend
        self.library = library
        self.config = config
        self.fps = fps if fps and fps > 0 else 25.0
        self._ids = itertools.count(1)
        self._scene = SceneCutDetector(config.scene_cut_threshold)
        self._scene_ts = -1.0  # ts of the last frame scored for a scene cut
        self.gate = DetectionGate(config.detect_fps, config.motion_gate, motion_detect_fps=config.motion_detect_fps)
        self._tracks: dict[int, Track] = {}
        self._map: dict[int, int] = {}  # ByteTrack id -> our track id (ByteTrack ids restart on reset)
        self._recent: deque[_Ended] = deque(maxlen=64)
        #: Tracks that ended during the last :meth:`process` or :meth:`finish` call, by track id, in
        #: the order of their ``track_ended`` events (an ended track has left :attr:`tracks`).
        self.ended: dict[int, Track] = {}
        self._bytetrack = self._new_bytetrack()
        self._check_filters = replace(config.face_filters, min_score=0.0)
        self.second_opinion: SecondOpinion | None = SecondOpinion(library) if config.second_opinion else None
        self.total_embeddings = 0
        self.total_tracks = 0

    def _new_bytetrack(self) -> ByteTrackTracker:
        t = self.config.tracker
        return ByteTrackTracker(
            lost_track_buffer=max(0, round(t.lost_track_seconds * 30)),  # in 30-fps frames by contract
            frame_rate=self.fps,
            track_activation_threshold=t.track_activation_threshold,
            minimum_consecutive_frames=self.config.credence_count,
            minimum_iou_threshold=t.minimum_iou_threshold,
            high_conf_det_threshold=t.high_conf_det_threshold,
        )

    @property
    def tracks(self) -> dict[int, Track]:
        """Confirmed tracks alive now, by track id."""
        return self._tracks

    # ---- main entry ----------------------------------------------------------------------

    def process(self, frame_bgr: Frame, frame_index: int, ts: float) -> FrameResult:
        """Detect, associate, embed where due, and report events for one frame.

        Args:
            frame_bgr: ``(H, W, 3) uint8`` BGR.
            frame_index: 0-based index in the source.
            ts: seconds since the start of the source.

        Raises:
            ValueError: ``frame_bgr`` is not an ``(H, W, 3) uint8`` array (the tracker stays usable).
        """
        frame_bgr = check_frame(frame_bgr)
        self.ended = {}
        embeddings_before = self.total_embeddings
        events: list[TrackEvent] = []
        was_moving = self.gate.motion.moving
        self.gate.observe(frame_bgr)
        # Two frames in a row without a moving pixel cannot be a scene cut (a cut moves more than
        # half of them): such a frame is scored only once a second, which keeps the reference
        # frame of slow changes (dusk) fresh (0.5 ms saved on most idle 720p frames of 1.7).
        # Frames are scored on the motion frame when there is one (the same 96x54 thumbnail from
        # 320 px instead of the full frame: 4 ms less per 720p frame).
        quiet = self.gate.enabled and not self.gate.motion.moving and not was_moving
        cut = False
        if not quiet or not 0 <= ts - self._scene_ts < 1.0:
            self._scene_ts = ts
            thumb = self.gate.motion.thumbnail if self.gate.enabled else None
            cut = self._scene(frame_bgr if thumb is None else thumb)
        if cut:
            _LOG.info(
                "scene cut at frame %d (score %.1f): ending %d tracks",
                frame_index,
                self._scene.last_score,
                len(self._tracks),
            )
            for tid in list(self._tracks):
                events.append(self._end(tid, "scene_cut"))
            self._bytetrack.reset()
            self._map.clear()

        # Motion gate: skip the detector only when no track (confirmed, tentative or lost) exists,
        # so ByteTrack and the re-identification backoff see every frame while anything is tracked.
        # With a motion_detect_fps, a face found in the last second counts too (FOUND_HOLD_SECONDS).
        tracking = cut or bool(self._tracks) or bool(self._bytetrack.tracks) or self.gate.holding(ts)
        detected = self.gate.should_detect(ts, tracking)
        detections = self._detect(frame_bgr, tracking) if detected else []
        if detected:
            self.gate.found(ts, len(detections))
        tracked = self._associate(detections)

        # Tracks ByteTrack has dropped (lost for longer than its buffer) have ended.
        alive = {t.tracker_id for t in self._bytetrack.tracks if t.tracker_id != -1}
        for bt_id in [b for b in self._map if b not in alive]:
            events.append(self._end(self._map.pop(bt_id), "lost"))
        # Tracks detached from ByteTrack (after an appearance change) expire on our own clock.
        mapped = set(self._map.values())
        lost_frames = round(self.config.tracker.lost_track_seconds * self.fps)
        for tid in [
            t for t, tr in self._tracks.items() if t not in mapped and frame_index - tr.last_frame > lost_frames
        ]:
            events.append(self._end(tid, "lost"))

        # Continue the tracks ByteTrack kept; a new ByteTrack id is first offered to the tracks
        # that are lost right now (the same face back after an occlusion that ByteTrack's motion
        # model could not bridge), and only otherwise starts a new track.
        probes: dict[int, _Probe] = {}
        for bt_id, det in tracked:
            if bt_id in self._map:
                self._continue(self._tracks[self._map[bt_id]], det, frame_index, ts)
        lost = [t for t in self._tracks.values() if t.mean_embedding is not None and t.last_frame < frame_index]
        for bt_id, det in tracked:
            if bt_id in self._map:
                continue
            probe = self._probe(frame_bgr, det) if lost else None
            track = self._revive(lost, probe, bt_id) if probe is not None else None
            if track is None:
                track = self._start(bt_id, det, frame_index, ts, events)
            else:
                lost.remove(track)
                self._continue(track, det, frame_index, ts)
            if probe is not None:
                probes[track.track_id] = probe
        self._recheck_overlaps(frame_index, detections)
        due = [
            (t, probes.get(t.track_id))
            for t in list(self._tracks.values())
            if t.last_frame == frame_index and frame_index >= t.next_embed_frame
        ]
        self._reidentify(frame_bgr, due, frame_index, ts, events)

        # A track detached this frame (its box went to a new track after a swap) is not drawn.
        on_screen = set(self._map.values())
        faces = [
            self._face(tid, t) for tid, t in self._tracks.items() if t.last_frame == frame_index and tid in on_screen
        ]
        still = quiet and not tracking and not detections  # (ByteTrack holds tracks only after a detection)
        return FrameResult(
            faces, events, self.total_embeddings - embeddings_before, cut, len(detections), detected, still
        )

    def _detect(self, frame_bgr: Frame, tracking: bool) -> list[Detection]:
        """The whole frame, or only the windows around what moved (:mod:`facetrack.track.motion`)
        for a backend that says windows pay (``window_detection``: its detector downscales frames
        to ``detector_input_size`` and takes any input size)."""
        size = getattr(self.backend, "detector_input_size", None)
        if not isinstance(size, int) or not getattr(self.backend, "window_detection", False):
            self.gate.whole_frame()
            return self.backend.detect(frame_bgr)
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, size / max(h, w))
        windows = self.gate.windows(w, h, tracking, scale)
        if windows is None:
            return self.backend.detect(frame_bgr)
        return detect_in_windows(self.backend, frame_bgr, windows, scale)

    @staticmethod
    def _face(tid: int, t: Track) -> TrackedFace:
        """The track's face now; while one face unlike the track awaits confirmation (another
        head may have taken the box), its name is not shown on it."""
        if t.suspect is not None:
            return TrackedFace(tid, t.detection, IdentityState.PENDING, None, None)
        return TrackedFace(tid, t.detection, t.voter.state, t.voter.name, t.voter.similarity)

    def finish(self) -> list[TrackEvent]:
        """End every track (end of the source); returns their ``track_ended`` events."""
        self.ended = {}
        return [self._end(tid, "end_of_stream") for tid in list(self._tracks)]

    # ---- steps ---------------------------------------------------------------------------

    def _associate(self, detections: list[Detection]) -> list[tuple[int, Detection]]:
        if not detections and not self._bytetrack.tracks:
            return []  # what ByteTrack would answer, without building two empty sv.Detections
        if detections:
            sv_det = sv.Detections(
                xyxy=np.stack([d.box for d in detections]).astype(np.float32),
                confidence=np.array([d.score for d in detections], dtype=np.float32),
                data={"index": np.arange(len(detections))},
            )
        else:
            sv_det = sv.Detections.empty()
            sv_det.data = {"index": np.zeros(0, dtype=int)}
        result = self._bytetrack.update(sv_det)
        if len(result) == 0 or result.tracker_id is None:
            return []
        return [
            (int(bt_id), detections[int(i)])
            for bt_id, i in zip(result.tracker_id, result.data["index"], strict=True)
            if bt_id != -1
        ]

    def _recheck_overlaps(self, frame_index: int, detections: list[Detection]) -> None:
        """A tracked face that another detection overlaps is where ByteTrack can swap ids
        (one head passing in front of another): re-identify it now."""
        current = [t for t in self._tracks.values() if t.last_frame == frame_index]
        if not current or len(detections) < 2:
            return
        tboxes = np.stack([t.detection.box for t in current]).astype(np.float64)
        dboxes = np.stack([d.box for d in detections]).astype(np.float64)
        x1 = np.maximum(tboxes[:, None, 0], dboxes[None, :, 0])
        y1 = np.maximum(tboxes[:, None, 1], dboxes[None, :, 1])
        x2 = np.minimum(tboxes[:, None, 2], dboxes[None, :, 2])
        y2 = np.minimum(tboxes[:, None, 3], dboxes[None, :, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        ta = (tboxes[:, 2] - tboxes[:, 0]) * (tboxes[:, 3] - tboxes[:, 1])
        da = (dboxes[:, 2] - dboxes[:, 0]) * (dboxes[:, 3] - dboxes[:, 1])
        iou = inter / np.maximum(ta[:, None] + da[None, :] - inter, 1e-9)
        for k, track in enumerate(current):
            own = [j for j, d in enumerate(detections) if d is track.detection]
            iou[k, own] = 0.0
        for row in np.flatnonzero(iou.max(axis=1) >= OVERLAP_IOU):
            current[int(row)].interval, current[int(row)].next_embed_frame = 1, frame_index
            current[int(row)].uncertain = True

    def _start(self, bt_id: int, det: Detection, frame_index: int, ts: float, events: list[TrackEvent]) -> Track:
        """A new confirmed track for ByteTrack id ``bt_id``: emits ``track_started``."""
        tid = next(self._ids)
        self._map[bt_id] = tid
        track = Track(
            track_id=tid,
            first_frame=frame_index,
            first_ts=ts,
            voter=IdentityVoter(self.config.identity, self.config.cosine_similarity_threshold),
            detection=det,
            last_frame=frame_index,
            last_ts=ts,
            next_embed_frame=frame_index,
        )
        self._tracks[tid] = track
        self.total_tracks += 1
        events.append(self._event("track_started", track, frame_index, ts))
        return track

    @staticmethod
    def _continue(track: Track, det: Detection, frame_index: int, ts: float) -> None:
        prev = track.detection
        area_ratio = (det.width * det.height) / max(prev.width * prev.height, 1e-6)
        if (
            frame_index - track.last_frame > REASSOCIATION_GAP_FRAMES
            or det.score < SCORE_DROP_RATIO * prev.score
            or not 1 / AREA_JUMP_RATIO <= area_ratio <= AREA_JUMP_RATIO
        ):
            # Re-associated after a miss, or the face suddenly less face-like or resized: where
            # the association is least certain (an occlusion, another head in front), re-identify
            # now instead of trusting the backoff.
            track.interval, track.next_embed_frame = 1, frame_index
            track.uncertain = True
        track.detection, track.last_frame, track.last_ts = det, frame_index, ts

    def _probe(self, frame: Frame, det: Detection) -> _Probe:
        """Aligned crop, quality and (for a usable face) embedding of one detection."""
        crop = self.backend.aligned_crop(frame, det)
        q = assess(det, crop, self.config.face_filters)
        emb = self._embed_crops([crop], frame, [det])[0] if q.usable else None
        if emb is not None:
            self.total_embeddings += 1
        return _Probe(crop, q, emb)

    def _revive(self, lost: list[Track], probe: _Probe, bt_id: int) -> Track | None:
        """The lost track whose face ``probe`` is (by mean embedding), re-mapped to ``bt_id``."""
        if probe.embedding is None or not lost:
            return None
        means = np.stack([t.mean_embedding for t in lost if t.mean_embedding is not None])
        sims = means @ probe.embedding
        j = int(np.argmax(sims))
        if float(sims[j]) < self.config.tracker.revive_threshold:
            return None
        track = lost[j]
        old_ids = {b for b, t in self._map.items() if t == track.track_id}
        for b in old_ids:
            del self._map[b]
        # Retire ByteTrack's stale tracklet so it cannot come back as a second track.
        self._bytetrack.tracks = [t for t in self._bytetrack.tracks if t.tracker_id not in old_ids]
        self._map[bt_id] = track.track_id
        _LOG.debug("track %d revived by new detection (cos %.3f)", track.track_id, sims[j])
        return track

    def _reidentify(
        self,
        frame: Frame,
        due: list[tuple[Track, _Probe | None]],
        frame_index: int,
        ts: float,
        events: list[TrackEvent],
    ) -> None:
        """Embed the usable faces of due tracks (one batch) and vote their matches."""
        probes: list[tuple[Track, _Probe]] = []
        todo: list[tuple[Track, Frame, FaceQuality]] = []
        for track, probe in due:
            if probe is not None:
                probes.append((track, probe))
                continue
            crop = self.backend.aligned_crop(frame, track.detection)
            q = assess(track.detection, crop, self.config.face_filters)
            # Checks only where a name could end up on the wrong head (a named track): they cost
            # embeddings at every occlusion onset.
            named = track.voter.state is IdentityState.KNOWN
            checking = track.suspect is not None or (track.uncertain and named)
            if q.usable or (checking and assess(track.detection, crop, self._check_filters).usable):
                # A face only a low detector score keeps from voting can still raise, confirm or
                # clear a suspected swap: an occluding head is exactly where scores drop.
                todo.append((track, crop, q))
                track.uncertain = False
            else:
                # An unusable face keeps the track due: the next usable frame gets embedded.
                track.last_quality = q
        if todo:
            embs = self._embed_crops([c for _, c, _ in todo], frame, [t.detection for t, _, _ in todo])
            self.total_embeddings += len(todo)
            probes += [(t, _Probe(c, q, e)) for (t, c, q), e in zip(todo, embs, strict=True)]
        usable = [(t, p) for t, p in probes if p.embedding is not None]
        for track, p in probes:
            track.last_quality = p.quality
        if not usable:
            return
        matches = self.library.match(
            np.stack([p.embedding for _, p in usable if p.embedding is not None]), lowest_floor()
        )
        for (track, p), m in zip(usable, matches, strict=True):
            vote = self._evidence(frame, track, p, m) if p.quality.usable else None
            self._consistent_vote(frame, track, p, vote, frame_index, ts, events)

    def _evidence(self, frame: Frame, track: Track, p: _Probe, m: Match) -> Vote | None:
        """The vote of one match (:mod:`facetrack.matching`); ``None`` is no evidence either way."""
        q = p.quality
        pose = FacePose(q.yaw, q.pitch, q.size)
        evidence = classify(m.similarity, pose, self.config.cosine_similarity_threshold)
        if evidence is Evidence.GREY and m.person_id is not None:
            evidence = Evidence.PERSON if self._confirmed(frame, track, m.person_id, pose) else Evidence.NONE
            if evidence is Evidence.NONE and pose.frontal:
                evidence = Evidence.NOBODY  # a frontal face the second opinion refuses is a stranger
        if evidence is Evidence.PERSON:
            return Vote(m.person_id, m.name, m.similarity)
        if evidence is Evidence.NOBODY:
            return Vote(None, None, m.similarity)
        return None

    def _confirmed(self, frame: Frame, track: Track, person_id: str, pose: FacePose) -> bool:
        """Whether the second opinion confirms ``person_id`` for the track's current face.

        Two consistent answers about a person settle it for the rest of the track; a track asks at
        most :data:`MAX_SECOND_OPINIONS` times (each costs about 150 ms of CPU).
        """
        answers = track.opinions.setdefault(person_id, [])
        if len(answers) >= SETTLED_OPINIONS and len(set(answers)) == 1:
            return answers[0]
        if self.second_opinion is None or sum(len(a) for a in track.opinions.values()) >= MAX_SECOND_OPINIONS:
            return False
        dist = self.second_opinion.distance(frame, track.detection.box, person_id)
        if dist is None:
            return False
        ok = dist <= confirm_distance(pose)
        answers.append(ok)
        _LOG.debug("track %d: second opinion on %s: distance %.3f -> %s", track.track_id, person_id, dist, ok)
        return ok

    def _consistent_vote(
        self,
        frame: Frame,
        track: Track,
        p: _Probe,
        vote: Vote | None,
        frame_index: int,
        ts: float,
        events: list[TrackEvent],
    ) -> None:
        """Vote ``p`` into ``track`` unless the face is not the track's (an occlusion swap).

        A face far from the track's mean embedding is held back as a suspect (one odd frame may be
        a bad frame); a second one in a row means ByteTrack followed the box onto another person
        (one head passing in front of another): the box gets a new track, starting with the
        suspect, and the old track keeps its identity and waits, lost, for its face to come back
        (see :meth:`_revive`). ``p`` with an unusable quality (``vote`` ``None``) is such a check
        only, never a vote.
        """
        assert p.embedding is not None
        mean = track.mean_embedding
        sim = float(mean @ p.embedding) if mean is not None else 1.0
        split_below = self.config.tracker.appearance_split_threshold
        if not FacePose(p.quality.yaw, p.quality.pitch, p.quality.size).frontal:
            # A head turning away lowers the similarity to the track's (mostly frontal) mean by
            # itself; only a much lower one says another face took the box.
            split_below -= TURNED_SPLIT_ALLOWANCE
        suspect_emb = track.suspect[0].embedding if track.suspect is not None else None
        # The face after a suspect confirms the swap also when it is clearly closer to the suspect
        # face than to the track (both belong to the head that took the box), not only when it
        # is below the split threshold itself: a mean embedding over varied poses makes that
        # threshold marginal.
        like_suspect = suspect_emb is not None and float(suspect_emb @ p.embedding) - sim >= SWAP_MARGIN
        if sim >= split_below and not like_suspect:
            track.suspect = None
            if p.quality.usable:
                self._vote(frame, track, p, vote, frame_index, ts, events)
            return
        _LOG.debug("track %d frame %d: face differs from the track (cos %.3f)", track.track_id, frame_index, sim)
        if track.suspect is None:
            track.suspect = (p, vote)
            track.interval, track.next_embed_frame = 1, frame_index + 1
            return
        suspect, track.suspect = track.suspect, None
        bt_ids = [b for b, t in self._map.items() if t == track.track_id]
        for b in bt_ids:
            del self._map[b]
        new = self._start(bt_ids[0], track.detection, frame_index, ts, events)
        # Check-only faces (low detector score) join the new track's appearance, never its vote.
        self._vote(frame, new, *suspect, frame_index, ts, events)
        self._vote(frame, new, p, vote, frame_index, ts, events)

    def _vote(
        self,
        frame: Frame,
        track: Track,
        p: _Probe,
        vote: Vote | None,
        frame_index: int,
        ts: float,
        events: list[TrackEvent],
    ) -> None:
        """Add one usable embedding to a track: mean, best crops, identity vote, backoff.

        ``vote`` ``None`` (a turned or small face that matched nobody well enough) is no evidence:
        the face still joins the track's mean embedding and best crops, but not the vote.
        """
        emb = p.embedding
        assert emb is not None
        track.embeddings += 1
        track.embedding_sum = emb.copy() if track.embedding_sum is None else track.embedding_sum + emb
        self._keep_best(track, BestCrop(p.quality.rank, frame_index, p.crop, emb, p.quality.yaw), frame)
        voter = track.voter
        reacquired = voter.state is IdentityState.PENDING and not voter.votes and self._from_recent(track, emb)
        agrees = reacquired or (vote is not None and voter.agrees(vote))
        if (vote is not None and voter.add(vote)) or reacquired:
            events.append(self._event("identity", track, frame_index, ts, "recent_gallery" if reacquired else "vote"))
        # Backoff: embed again after 1, 2, 4, ... frames (capped); a disagreeing embedding starts
        # over; a face that gave no evidence doubles the wait too, but an unnamed track keeps
        # being looked at (PENDING_MAX_INTERVAL).
        if track.embeddings == 1 or (vote is not None and not agrees):
            track.interval = 1
        else:
            track.interval = min(track.interval * 2, self.config.reid_expiration_frames)
        if voter.state is IdentityState.PENDING:
            track.interval = min(track.interval, PENDING_MAX_INTERVAL)
        track.next_embed_frame = frame_index + track.interval

    def _embed_crops(self, crops: list[Frame], frame: Frame, dets: list[Detection]) -> FloatArray:
        embed_crops = getattr(self.backend, "embed_crops", None)
        if embed_crops is not None:
            return np.asarray(embed_crops(crops), dtype=np.float32)
        return self.backend.embed(frame, dets)

    def _from_recent(self, track: Track, emb: FloatArray) -> bool:
        """Give a new track the identity of a matching recently ended track; True if it did."""
        horizon = track.last_ts - self.config.recent_gallery_seconds
        candidates = [e for e in self._recent if e.ts >= horizon]
        if not candidates:
            return False
        sims = np.stack([e.embedding for e in candidates]) @ emb
        j = int(np.argmax(sims))
        thr = self.config.recent_gallery_threshold
        if thr is None:
            thr = self.config.cosine_similarity_threshold
        best = candidates[j]
        if float(sims[j]) < thr or best.state is IdentityState.PENDING:
            return False
        track.voter.adopt(best.state, best.person_id, best.name, list(best.votes))
        track.reacquired_from = best.track_id
        _LOG.debug("track %d reacquired identity of track %d (cos %.3f)", track.track_id, best.track_id, sims[j])
        return True

    @staticmethod
    def _keep_best(track: Track, crop: BestCrop, frame: Frame) -> None:
        """Keep ``crop`` if it is among the :data:`BEST_CROPS` best of its pose bin."""
        same = [c for c in track.best if pose_bin(c.yaw) == pose_bin(crop.yaw)]
        if len(same) >= BEST_CROPS:
            worst = min(same)
            if crop.rank <= worst.rank:
                return
            track.best = [c for c in track.best if c is not worst]
        # The context is cut only for kept crops (a few per track), for the second descriptor.
        crop.context, crop.context_box = face_context(frame, track.detection.box)
        track.best.append(crop)

    def _end(self, tid: int, reason: str) -> TrackEvent:
        track = self._tracks.pop(tid)
        self.ended[tid] = track
        for bt_id in [b for b, t in self._map.items() if t == tid]:
            del self._map[bt_id]
        mean = track.mean_embedding
        if mean is not None and track.voter.state is not IdentityState.PENDING:
            self._recent.append(
                _Ended(
                    track.last_ts,
                    tid,
                    mean,
                    track.voter.state,
                    track.voter.person_id,
                    track.voter.name,
                    tuple(track.voter.votes),
                )
            )
        # Reported at the last frame the face was seen (the tracker notices the loss later).
        return self._event("track_ended", track, track.last_frame, track.last_ts, reason)

    @staticmethod
    def _event(kind: str, track: Track, frame_index: int, ts: float, reason: str | None = None) -> TrackEvent:
        v = track.voter
        return TrackEvent(
            type=kind,  # type: ignore[arg-type]
            frame=frame_index,
            ts=ts,
            track_id=track.track_id,
            person=v.name,
            person_id=v.person_id,
            similarity=v.similarity,
            bbox=[float(x) for x in track.detection.box],
            reason=reason,
        )
