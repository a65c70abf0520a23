"""The unknown-face inbox: faces of tracks that stayed unknown, grouped by person, to be named.

Every confirmed track decided **unknown** contributes, when it ends, its best face crops (ranked
by :attr:`facetrack.quality.FaceQuality.rank`: size x frontalness x sharpness x score), their
embeddings and its mean embedding. Tracks are clustered **incrementally**, across cameras, with
the same rule as the batch clustering of :mod:`facetrack.cluster` (average linkage on cosine
similarity, threshold ``cluster_threshold``): a track joins the group whose members' track means
are on average most similar to its own, if that average is at least the threshold, else it
starts a new group; after a group grows, another group that comes as close is merged into it.
A group keeps the sum of its members' mean embeddings, so the average-linkage similarity is one
dot product and memory per group is bounded (``max_crops_per_group`` crops and embeddings).

A crop with no usable single face (hair only, two faces: ``single_face`` false, decided by the
caller, see :mod:`facetrack.inbox.feature`) is kept after every crop that has one, so it is never a
group's cover (crop 0) while the group has a good one, and a track without any good crop never
starts a group (it may still join one).

When the face library changes (:meth:`UnknownInbox.rematch`), pending groups whose faces now
match an enrolled person leave the inbox by themselves: the person was enrolled since (by name,
from a photo or another group), so their faces are no longer unknown.

The user then names a group (its best, mutually most diverse embeddings are enrolled, see
:func:`facetrack.cluster.diverse_subset`), merges two, discards one, or ignores one (a track whose
mean embedding is nearest to an ignored group never alerts again).

Bounded: at most ``max_groups`` groups (the least recently seen pending group makes room) and
groups not seen for ``max_age_days`` are dropped. Persistent: one ``.npz`` file (no pickles)
written to a temporary file, fsynced and renamed over the old one, so a crash leaves either the
old or the new inbox, never half of one. Thread-safe (camera threads add, the command thread
mutates, the web server and MQTT read).

This class is the inbox's Python API (the engine's web page uses it through
:class:`facetrack.commands.CommandHandler`, the one code path for changes, like MQTT); the engine
wires it in with :class:`facetrack.inbox.feature.InboxFeature`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from facetrack.cluster import diverse_subset, normalise
from facetrack.config.inbox import InboxConfig as InboxConfig  # noqa: PLC0414 - re-export
from facetrack.errors import FaceTrackError
from facetrack.images import encode_jpeg
from facetrack.inference.base import FloatArray, Frame
from facetrack.library import FaceLibrary
from facetrack.library.diverse import MAX_AUTO_PER_POSE, automatic_room, select_diverse

_LOG = logging.getLogger(__name__)
FILE_VERSION = 1
_GROUP_ID_LEN = 32
NameMode = Literal["auto", "new", "add"]
Status = Literal["pending", "ignored"]


class InboxError(FaceTrackError):
    """An inbox operation failed; ``code`` is ``not_found`` or ``bad_request`` (as MQTT errors)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class FaceCrop:
    """One face of an unknown track: ``rank`` (higher is better), ``crop`` ``(112, 112, 3) uint8``
    aligned BGR, ``embedding`` ``(D,) float32`` L2-normalised; ``single_face``: the crop shows one
    usable face (false: hair only, two faces; such a crop is never a group's cover); ``yaw``: the
    face's yaw ratio (``None``: unknown), recorded with the embedding when the group is named."""

    rank: float
    crop: Frame = field(repr=False)
    embedding: FloatArray = field(repr=False)
    single_face: bool = True
    yaw: float | None = None


@dataclass(slots=True)
class _Crop:
    rank: float
    embedding: FloatArray
    jpeg: bytes
    camera: str
    ts: float
    single_face: bool = True
    yaw: float | None = None


@dataclass(frozen=True, slots=True)
class _Pick:
    """A crop of a group as :func:`select_diverse` sees it (unknown yaw taken as frontal)."""

    index: int
    rank: float
    yaw: float


@dataclass(slots=True)
class _Group:
    group_id: str
    status: Status
    centroid_sum: FloatArray  # sum of the members' L2-normalised track means, (D,) float32
    tracks: int
    count: int
    cameras: list[str]
    first_seen: float
    last_seen: float
    crops: list[_Crop]  # single-face crops first, each kind best first (crop 0 is the cover)


@dataclass(frozen=True, slots=True)
class InboxGroup:
    """A group of the inbox as clients see it (times are epoch seconds)."""

    group_id: str
    status: Status
    count: int
    tracks: int
    cameras: tuple[str, ...]
    first_seen: float
    last_seen: float
    crops: int
    nearest_person: str | None
    nearest_similarity: float | None


@dataclass(frozen=True, slots=True)
class AddResult:
    """Where an ended track went: its group, and whether that group is new."""

    group_id: str
    new_group: bool
    status: Status


@dataclass(frozen=True, slots=True)
class Rematched:
    """A pending group that left the inbox because its faces match ``person``, now enrolled."""

    group_id: str
    person: str
    similarity: float


@dataclass(frozen=True, slots=True)
class NameResult:
    """A named group: the person enrolled (``created`` if new), embeddings added and now held."""

    person: str
    person_id: str
    group_id: str
    enrolled: int
    embeddings: int
    created: bool


def _yaw_or_frontal(yaw: float | None) -> float:
    return 0.0 if yaw is None else yaw


def _check_id(group_id: str) -> str:
    if (
        not isinstance(group_id, str)
        or len(group_id) != _GROUP_ID_LEN
        or any(c not in "0123456789abcdef" for c in group_id)
    ):
        raise InboxError("bad_request", "group_id must be 32 lowercase hex characters")
    return group_id


class UnknownInbox:
    """Groups of unknown faces, persisted in one file.

    Args:
        config: sizes, age-out, threshold (``config.path`` is ignored: see ``path``).
        library: the face library that naming enrols into (also gives the nearest-person hint).
        path: the inbox file; ``None`` keeps it in memory only.

    The file is bound to ``library.model_id``: a file of another model (or an unreadable file) is
    set aside as ``<path>.bad-<time>`` and the inbox starts empty (logged, never fatal).
    """

    def __init__(self, config: InboxConfig, library: FaceLibrary, path: str | Path | None = None) -> None:
        self.config = config
        self.library = library
        self.path = Path(path) if path is not None else None
        self.dim = library.embedding_dim
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()  # one writer of the file at a time
        self._groups: dict[str, _Group] = {}
        self._dirty = False
        if self.path is not None and self.path.exists():
            self._load()

    # ---- reads ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._groups)

    def groups(self) -> list[InboxGroup]:
        """Every group, most recently seen first, with the nearest enrolled person as a hint."""
        with self._lock:
            groups = sorted(self._groups.values(), key=lambda g: -g.last_seen)
            centroids = [g.centroid_sum for g in groups]
            views = [
                (g.group_id, g.status, g.count, g.tracks, tuple(g.cameras), g.first_seen, g.last_seen, len(g.crops))
                for g in groups
            ]
        hints: list[tuple[str | None, float | None]] = [(None, None)] * len(views)
        if views and len(self.library):
            matches = self.library.match(normalise(np.stack(centroids)), threshold=-2.0)
            hints = [(m.name, round(m.similarity, 4)) for m in matches]
        return [InboxGroup(*v, *h) for v, h in zip(views, hints, strict=True)]

    def group(self, group_id: str) -> InboxGroup:
        """One group.

        Raises:
            InboxError: ``not_found`` / ``bad_request`` (malformed id).
        """
        _check_id(group_id)
        found = next((g for g in self.groups() if g.group_id == group_id), None)
        if found is None:
            raise InboxError("not_found", f"no inbox group {group_id}")
        return found

    def crop_jpeg(self, group_id: str, index: int = 0) -> bytes:
        """JPEG bytes of crop ``index`` (0 is the cover: the best crop with a single usable face) of a
        group: 112x112 aligned face.

        Raises:
            InboxError: ``not_found`` (no such group or index), ``bad_request``.
        """
        with self._lock:
            g = self._require(group_id)
            if not isinstance(index, int) or not 0 <= index < len(g.crops):
                raise InboxError("not_found", f"group {group_id} has {len(g.crops)} crops; no index {index}")
            return g.crops[index].jpeg

    def embeddings(self, group_id: str) -> FloatArray:
        """``(K, D) float32`` embeddings of a group's kept crops, in crop order (the cover first).

        Raises:
            InboxError: ``not_found``.
        """
        with self._lock:
            g = self._require(group_id)
            return np.stack([c.embedding for c in g.crops])

    def nearest_group(self, embedding: FloatArray) -> tuple[str, float] | None:
        """``(group_id, similarity)`` of the group a track with mean ``embedding`` ``(D,)`` would
        join (average-linkage similarity at or above the threshold), or ``None``."""
        with self._lock:
            return self._nearest(normalise(embedding)[0])

    def ignored_group(self, embedding: FloatArray) -> str | None:
        """The ignored group a track with mean ``embedding`` ``(D,)`` belongs to, or ``None``.

        The track is placed as :meth:`add_track` would place it: only if its nearest group (at
        or above the threshold) is ignored; a face nearer to a pending group still alerts.
        """
        with self._lock:
            best = self._nearest(normalise(embedding)[0])
            if best is None:
                return None
            g = self._groups[best[0]]
            return g.group_id if g.status == "ignored" else None

    # ---- the camera side ------------------------------------------------------------------

    def add_track(
        self,
        camera: str,
        mean_embedding: FloatArray,
        faces: Sequence[FaceCrop],
        embeddings: int,
        first_seen: float,
        last_seen: float,
    ) -> AddResult | None:
        """Add an ended unknown track.

        Args:
            camera: camera name.
            mean_embedding: ``(D,)`` float32 mean of the track's usable embeddings.
            faces: its best crops with their embeddings (at least one).
            embeddings: how many usable embeddings the track had (the group's ``count`` grows by it).
            first_seen / last_seen: epoch seconds.

        Returns:
            Where the track went; ``None`` when none of its crops shows a single usable face and no
            group is near enough to join (such a track never starts a group: its cover would be bad).

        Raises:
            ValueError: no face, or embeddings of the wrong size.
        """
        if not faces:
            raise ValueError("a track needs at least one face crop")
        mean = normalise(mean_embedding)[0]
        if mean.shape[0] != self.dim:
            raise ValueError(f"embedding dimension {mean.shape[0]} != {self.dim}")
        crops = [
            _Crop(f.rank, normalise(f.embedding)[0], encode_jpeg(f.crop), camera, last_seen, f.single_face, f.yaw)
            for f in faces
        ]
        with self._lock:
            best = self._nearest(mean)
            if best is None and not any(c.single_face for c in crops):
                return None
            if best is None:
                g = _Group(
                    uuid.uuid4().hex, "pending", mean.copy(), 1, max(1, embeddings), [camera],
                    first_seen, last_seen, [],
                )  # fmt: skip
                self._groups[g.group_id] = g
                new = True
            else:
                g = self._groups[best[0]]
                g.centroid_sum = (g.centroid_sum + mean).astype(np.float32)
                g.tracks += 1
                g.count += max(1, embeddings)
                g.cameras = [camera, *(c for c in g.cameras if c != camera)]
                g.first_seen = min(g.first_seen, first_seen)
                g.last_seen = max(g.last_seen, last_seen)
                new = False
            self._add_crops(g, crops)
            if not new:
                self._merge_close(g)
            self._bound(keep=g.group_id)
            self._dirty = True
            g = self._groups[g.group_id]
            return AddResult(g.group_id, new, g.status)

    # ---- user actions ---------------------------------------------------------------------

    def name(self, group_id: str, person: str, mode: NameMode = "auto", max_embeddings: int = 5) -> NameResult:
        """Enrol a group as ``person`` and remove it from the inbox.

        Enrols up to ``max_embeddings`` embeddings in one library commit: the best crop of each
        pose bin in turn (:func:`~facetrack.library.diverse.select_diverse`; within a bin the best
        crop, then the most diverse others: :func:`~facetrack.cluster.diverse_subset`), within the person's
        bound of automatic embeddings per pose (:data:`~facetrack.library.diverse.MAX_AUTO_PER_POSE`);
        only crops with a single usable face when the group has any.

        Args:
            mode: ``new`` (the name must not exist yet), ``add`` (it must), ``auto`` (either).

        Raises:
            InboxError: ``not_found`` (no group; ``add`` to a missing person), ``bad_request``
                (``new`` with a taken name, bad mode or count).
            LibraryError: invalid name (the library's checks).
        """
        if mode not in ("auto", "new", "add"):
            raise InboxError("bad_request", f"mode must be auto, new or add, not {mode!r}")
        if not 1 <= max_embeddings <= 10:
            raise InboxError("bad_request", "max_embeddings must be 1-10")
        with self._lock:
            g = self._require(group_id)
            good = [c for c in g.crops if c.single_face] or g.crops
            embs = np.stack([c.embedding for c in good])
            jpegs = [c.jpeg for c in good]
            yaws = [c.yaw for c in good]
            existing = self.library.person(person)
            if mode == "new" and existing is not None:
                raise InboxError("bad_request", f"a person called {existing.name!r} already exists (use mode add)")
            if mode == "add" and existing is None:
                raise InboxError("not_found", f"no person called {person!r} to add the group to")
        room = automatic_room(self.library, existing.person_id if existing else None)
        # Within a pose bin, the order of mutual diversity (the best crop, then the farthest from
        # those before: :func:`diverse_subset`) stands in for the rank.
        order = diverse_subset(embs, len(good), first=0)
        picks = [_Pick(i, -float(pos), _yaw_or_frontal(yaws[i])) for pos, i in enumerate(order)]
        chosen = [p.index for p in select_diverse(picks, max_embeddings, room)]
        if not chosen:
            raise InboxError(
                "bad_request",
                f"{person!r} already has {MAX_AUTO_PER_POSE} embeddings from cameras or the inbox in each pose "
                "of this group; remove some with forget_embedding first",
            )
        # One library commit (outside the inbox lock: on an object store it can take a while, and
        # camera threads must not wait); the group leaves the inbox only once the enrolment is stored.
        p = self.library.enroll(
            person,
            embs[chosen],
            [jpegs[i] for i in chosen],
            [f"inbox:{group_id}"] * len(chosen),
            yaws=[yaws[i] for i in chosen],
        )
        with self._lock:
            self._groups.pop(group_id, None)
            self._dirty = True
        self._persist()
        return NameResult(p.name, p.person_id, group_id, len(chosen), p.embedding_count, existing is None)

    def merge(self, group_id: str, into_group_id: str) -> InboxGroup:
        """Merge ``group_id`` into ``into_group_id`` (which keeps its id and status).

        Raises:
            InboxError: ``not_found``, ``bad_request`` (the same group twice).
        """
        if group_id == into_group_id:
            raise InboxError("bad_request", "cannot merge a group into itself")
        with self._lock:
            src, dst = self._require(group_id), self._require(into_group_id)
            self._absorb(dst, src)
            self._dirty = True
        self._persist()
        return self.group(into_group_id)

    def discard(self, group_id: str) -> None:
        """Forget a group (its faces are gone; the person forms a new group if seen again).

        Raises:
            InboxError: ``not_found``.
        """
        with self._lock:
            self._require(group_id)
            del self._groups[group_id]
            self._dirty = True
        self._persist()

    def ignore(self, group_id: str) -> None:
        """Mark a group ignored: tracks nearest to it never alert (see :meth:`ignored_group`).

        Raises:
            InboxError: ``not_found``.
        """
        self._set_status(group_id, "ignored")

    def unignore(self, group_id: str) -> None:
        """Back to pending (alerts again).

        Raises:
            InboxError: ``not_found``.
        """
        self._set_status(group_id, "pending")

    def rematch(self, threshold: float) -> list[Rematched]:
        """Pending groups whose faces now match an enrolled person leave the inbox; returns them.

        A group matches person P when most of its kept crops (those with a single usable face, if
        it has any) have P as nearest enrolled person at cosine similarity >= ``threshold`` (the
        tracker's ``cosine_similarity_threshold``): the vote a track of those faces would get.
        Ignored groups stay (the user's decision; they only ever silence unknown faces). Called
        after a library change; one matrix product, outside the inbox lock.
        """
        with self._lock:
            probes = []
            for g in self._groups.values():
                if g.status != "pending":
                    continue
                good = [c for c in g.crops if c.single_face] or g.crops
                probes.append((g.group_id, np.stack([c.embedding for c in good])))
        if not probes or not len(self.library):
            return []
        matches = self.library.match(np.concatenate([e for _, e in probes]), threshold)
        found: list[Rematched] = []
        start = 0
        for group_id, embs in probes:
            mine = matches[start : start + len(embs)]
            start += len(embs)
            votes: dict[str, list[float]] = {}
            for m in mine:
                if m.name is not None:
                    votes.setdefault(m.name, []).append(m.similarity)
            if not votes:
                continue
            person, sims = max(votes.items(), key=lambda kv: len(kv[1]))
            if 2 * len(sims) > len(mine):
                found.append(Rematched(group_id, person, round(float(np.mean(sims)), 4)))
        with self._lock:
            found = [r for r in found if self._groups.pop(r.group_id, None) is not None]
            if found:
                self._dirty = True
        for r in found:
            _LOG.info("inbox: group %s now matches %s (%.3f): left the inbox", r.group_id, r.person, r.similarity)
        if found:
            self._persist()
        return found

    def age_out(self, now: float | None = None) -> list[str]:
        """Drop groups not seen for ``max_age_days``; returns their ids."""
        if self.config.max_age_days <= 0:
            return []
        horizon = (time.time() if now is None else now) - self.config.max_age_days * 86400.0
        with self._lock:
            old = [gid for gid, g in self._groups.items() if g.last_seen < horizon]
            for gid in old:
                del self._groups[gid]
            if old:
                self._dirty = True
        return old

    # ---- persistence ------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """True when there are changes not yet saved."""
        return self._dirty

    def save(self) -> None:
        """Write the inbox atomically (temporary file, fsync, rename); no-op without a path.

        Raises:
            OSError: the file cannot be written (the previous file is left as it was).
        """
        if self.path is None:
            self._dirty = False
            return
        with self._save_lock:  # snapshot and write as one: an older snapshot never overwrites a newer file
            with self._lock:
                groups = list(self._groups.values())
                meta = {
                    "version": FILE_VERSION,
                    "model_id": self.library.model_id,
                    "dim": self.dim,
                    "saved_at": time.time(),
                    "groups": [
                        {
                            "group_id": g.group_id, "status": g.status, "tracks": g.tracks, "count": g.count,
                            "cameras": g.cameras, "first_seen": g.first_seen, "last_seen": g.last_seen,
                            "crops": [
                                {"rank": c.rank, "camera": c.camera, "ts": c.ts, "single_face": c.single_face,
                                 "yaw": c.yaw}
                                for c in g.crops
                            ],
                        }
                        for g in groups
                    ],
                }  # fmt: skip
                crops = [c for g in groups for c in g.crops]
                blobs = [np.frombuffer(c.jpeg, dtype=np.uint8) for c in crops]
                offsets = np.cumsum([0, *(len(b) for b in blobs)]).astype(np.int64)
                arrays = {
                    "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                    "centroids": np.stack([g.centroid_sum for g in groups])
                    if groups
                    else np.zeros((0, self.dim), np.float32),
                    "embeddings": np.stack([c.embedding for c in crops])
                    if crops
                    else np.zeros((0, self.dim), np.float32),
                    "jpeg": np.concatenate(blobs) if blobs else np.zeros(0, np.uint8),
                    "offsets": offsets,
                }
                self._dirty = False  # a change from now on is saved next time
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with tmp.open("wb") as f:
                    np.savez(f, **arrays)  # type: ignore[arg-type]
                    f.flush()
                    os.fsync(f.fileno())
                tmp.replace(self.path)
            except OSError:
                self._dirty = True
                raise
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            _fsync_dir(self.path.parent)

    def _persist(self) -> None:
        """Save after a user action; a failing disk is logged, the change stays in memory and
        :attr:`dirty` (the service retries), and the action is not undone."""
        try:
            self.save()
        except OSError as err:
            _LOG.error("unknown-face inbox not saved (retried later): %s", err)

    def _load(self) -> None:
        assert self.path is not None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                centroids, embs, jpeg, offsets = z["centroids"], z["embeddings"], z["jpeg"], z["offsets"]
            if meta.get("model_id") != self.library.model_id or int(meta.get("dim", -1)) != self.dim:
                raise ValueError(f"the inbox was built with the embedding model {meta.get('model_id')!r}")
            groups: dict[str, _Group] = {}
            k = 0
            for i, gm in enumerate(meta["groups"]):
                crops = []
                for cm in gm["crops"]:
                    blob = bytes(jpeg[int(offsets[k]) : int(offsets[k + 1])])
                    crops.append(
                        _Crop(
                            float(cm["rank"]),
                            embs[k].astype(np.float32),
                            blob,
                            str(cm["camera"]),
                            float(cm["ts"]),
                            bool(cm.get("single_face", True)),  # files before the check: taken as good
                            None if cm.get("yaw") is None else float(cm["yaw"]),  # files before poses: unknown
                        )
                    )
                    k += 1
                gid = _check_id(str(gm["group_id"]))
                status: Status = "ignored" if gm["status"] == "ignored" else "pending"
                groups[gid] = _Group(
                    gid, status, centroids[i].astype(np.float32), int(gm["tracks"]), int(gm["count"]),
                    [str(c) for c in gm["cameras"]], float(gm["first_seen"]), float(gm["last_seen"]), crops,
                )  # fmt: skip
                if not crops:
                    raise ValueError(f"group {gid} has no crop")
        except Exception as err:  # a bad file must never stop the service: set it aside
            bad = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            _LOG.error("unknown-face inbox %s unusable (%s); moved to %s, starting empty", self.path, err, bad.name)
            self.path.replace(bad)
            return
        self._groups = groups
        _LOG.info("unknown-face inbox: %d groups loaded from %s", len(groups), self.path)

    # ---- internals --------------------------------------------------------------------------

    def _require(self, group_id: str) -> _Group:
        g = self._groups.get(_check_id(group_id))
        if g is None:
            raise InboxError("not_found", f"no inbox group {group_id}")
        return g

    def _set_status(self, group_id: str, status: Status) -> None:
        with self._lock:
            self._require(group_id).status = status
            self._dirty = True
        self._persist()

    def _nearest(self, mean: FloatArray, exclude: str | None = None) -> tuple[str, float] | None:
        """The group with the highest average-linkage similarity to ``mean`` if >= threshold."""
        cands = [g for g in self._groups.values() if g.group_id != exclude]
        if not cands:
            return None
        sims = (np.stack([g.centroid_sum for g in cands]) @ mean) / np.array([g.tracks for g in cands], np.float32)
        j = int(np.argmax(sims))
        return (cands[j].group_id, float(sims[j])) if sims[j] >= self.config.cluster_threshold else None

    def _merge_close(self, g: _Group) -> None:
        """Merge into ``g`` every group of the same status whose average linkage to it is >= threshold."""
        for other in list(self._groups.values()):
            if other.group_id == g.group_id or other.status != g.status:
                continue
            sim = float(g.centroid_sum @ other.centroid_sum) / (g.tracks * other.tracks)
            if sim >= self.config.cluster_threshold:
                _LOG.info("inbox: groups %s and %s came close (%.3f): merged", g.group_id, other.group_id, sim)
                self._absorb(g, other)

    def _absorb(self, dst: _Group, src: _Group) -> None:
        dst.centroid_sum = (dst.centroid_sum + src.centroid_sum).astype(np.float32)
        dst.tracks += src.tracks
        dst.count += src.count
        recent_first = sorted((dst, src), key=lambda g: -g.last_seen)
        cams = [c for g in recent_first for c in g.cameras]
        dst.cameras = list(dict.fromkeys(cams))
        dst.first_seen = min(dst.first_seen, src.first_seen)
        dst.last_seen = max(dst.last_seen, src.last_seen)
        self._add_crops(dst, src.crops)
        del self._groups[src.group_id]

    def _add_crops(self, g: _Group, crops: Sequence[_Crop]) -> None:
        # Crops with a single usable face first (the cover is crop 0), each kind best first.
        kept = sorted([*g.crops, *crops], key=lambda c: (not c.single_face, -c.rank))
        g.crops = kept[: self.config.max_crops_per_group]

    def _bound(self, keep: str) -> None:
        while len(self._groups) > self.config.max_groups:
            victims = [g for g in self._groups.values() if g.group_id != keep]
            pending = [g for g in victims if g.status == "pending"]
            victim = min(pending or victims, key=lambda g: g.last_seen)
            _LOG.info(
                "inbox full (%d groups): dropping the least recently seen group %s", len(self._groups), victim.group_id
            )
            del self._groups[victim.group_id]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
