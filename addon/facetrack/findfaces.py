"""Faces in a recorded video: per track, its best crops, embeddings and identity, and a clustering
of the tracks by person (``facetrack find-faces``).

The video runs through the same :class:`~facetrack.track.FaceTracker` as a live camera (ByteTrack,
quality-gated re-identification, identity votes). For each confirmed track the result holds the
best face crops (ranked by :attr:`facetrack.quality.FaceQuality.rank`: size x frontalness from the
landmarks x sharpness (variance of the Laplacian) x detector score) with their embeddings, the
track's mean embedding and its decided identity. The tracks' mean embeddings are then clustered
(:func:`facetrack.cluster.cluster_embeddings`, average linkage on cosine similarity), so several
tracks of one unknown person (who left and came back, or was hidden for a while) form one group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.cluster import DEFAULT_CLUSTER_THRESHOLD, cluster_embeddings
from facetrack.config import FaceTrackerConfig
from facetrack.errors import FaceTrackError, VideoSourceError
from facetrack.inference.base import FloatArray, InferenceBackend
from facetrack.library import FaceLibrary
from facetrack.pipeline import run_pipeline
from facetrack.track.face_tracker import BestCrop, FrameResult, Track


@dataclass(slots=True)
class TrackFaces:
    """One confirmed track of the video.

    Attributes:
        track_id: the tracker's id.
        first_frame / last_frame: 0-based frame indices; ``start_s`` / ``end_s`` their times (s).
        state: ``known``, ``unknown`` (several embeddings below the threshold) or ``pending``
            (too few usable faces to decide).
        person / person_id / similarity: the decided identity (``None`` unless known).
        embeddings: usable embeddings computed for the track.
        mean_embedding: ``(D,) float32`` L2-normalised mean, ``None`` without a usable face.
        crops: best crops first (aligned 112x112 BGR, with their ``(D,)`` embeddings).
        cluster: the track's group (tracks of one person share it), ``None`` without embedding.
    """

    track_id: int
    first_frame: int
    last_frame: int
    start_s: float
    end_s: float
    state: str
    person: str | None
    person_id: str | None
    similarity: float | None
    embeddings: int
    mean_embedding: FloatArray | None = field(repr=False)
    crops: list[BestCrop] = field(repr=False)
    cluster: int | None = None


@dataclass(slots=True)
class FindFacesResult:
    """Every track of a video and their clustering (``clusters``: label -> track ids)."""

    source: str
    frames: int
    tracks: list[TrackFaces]
    cluster_threshold: float
    clusters: dict[int, list[int]]
    crop_paths: dict[tuple[int, int], str] = field(default_factory=dict)

    def to_json(self, embeddings: bool = True) -> dict[str, Any]:
        """JSON-friendly dict; embeddings rounded to 6 decimals (omitted with ``embeddings=False``)."""

        def vec(v: FloatArray | None) -> list[float] | None:
            return None if v is None else [round(float(x), 6) for x in v]

        tracks = []
        for t in self.tracks:
            item: dict[str, Any] = {
                "track_id": t.track_id,
                "first_frame": t.first_frame,
                "last_frame": t.last_frame,
                "start_s": round(t.start_s, 3),
                "end_s": round(t.end_s, 3),
                "state": t.state,
                "person": t.person,
                "person_id": t.person_id,
                "similarity": None if t.similarity is None else round(t.similarity, 4),
                "embeddings": t.embeddings,
                "cluster": t.cluster,
                "crops": [
                    {
                        "rank": round(c.rank, 3),
                        "frame": c.frame,
                        "path": self.crop_paths.get((t.track_id, i)),
                        **({"embedding": vec(c.embedding)} if embeddings else {}),
                    }
                    for i, c in enumerate(t.crops)
                ],
            }
            if embeddings:
                item["mean_embedding"] = vec(t.mean_embedding)
            tracks.append(item)
        by_id = {t.track_id: t for t in self.tracks}
        clusters = []
        for label, ids in sorted(self.clusters.items()):
            names = Counter(by_id[i].person for i in ids if by_id[i].person is not None)
            clusters.append(
                {
                    "cluster": label,
                    "tracks": ids,
                    "person": names.most_common(1)[0][0] if names else None,
                    "crop": self.crop_paths.get((_best_track(by_id, ids), 0)),
                }
            )
        return {
            "type": "find_faces",
            "source": self.source,
            "frames": self.frames,
            "cluster_threshold": self.cluster_threshold,
            "tracks": tracks,
            "clusters": clusters,
        }

    def write_crops(self, folder: str | Path) -> None:
        """Write every crop as ``<folder>/track<id>_<i>.jpg`` (``i`` 0 is the best); paths go in JSON.

        Raises:
            OSError: the folder cannot be created or a file written.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for t in self.tracks:
            for i, c in enumerate(t.crops):
                path = out / f"track{t.track_id}_{i}.jpg"
                if not cv2.imwrite(str(path), c.crop, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                    raise OSError(f"could not write {path}")
                self.crop_paths[(t.track_id, i)] = str(path)


def _best_track(by_id: dict[int, TrackFaces], ids: list[int]) -> int:
    return max(ids, key=lambda i: by_id[i].crops[0].rank if by_id[i].crops else -1.0)


def _summarise(track: Track) -> TrackFaces:
    v = track.voter
    return TrackFaces(
        track_id=track.track_id,
        first_frame=track.first_frame,
        last_frame=track.last_frame,
        start_s=track.first_ts,
        end_s=track.last_ts,
        state=v.state.value,
        person=v.name,
        person_id=v.person_id,
        similarity=v.similarity,
        embeddings=track.embeddings,
        mean_embedding=track.mean_embedding,
        crops=sorted(track.best, key=lambda c: -c.rank),
    )


def find_faces(
    source: str | int,
    backend: InferenceBackend,
    library: FaceLibrary,
    config: FaceTrackerConfig,
    *,
    annotated_path: str | Path | None = None,
    cluster: bool = True,
    cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD,
    progress: bool = False,
    max_frames: int | None = None,
    on_frame: Callable[[int, FrameResult], None] | None = None,
) -> FindFacesResult:
    """Track, identify and cluster the faces of a video file (or any source, up to ``max_frames``).

    Args:
        source: file path, RTSP URL or webcam index.
        library: identities come from it (an empty library leaves every track unknown).
        annotated_path: also write the annotated video (H.264 MP4) there.
        cluster: group the tracks by person (otherwise every ``cluster`` is ``None``).
        cluster_threshold: cosine similarity for two tracks to be one person.
        on_frame: called with ``(frame index, tracker result)`` after each frame (boxes, ids).

    Raises:
        VideoSourceError: the source cannot be opened or yields no frame.
    """
    ended: list[TrackFaces] = []
    summary = run_pipeline(
        source, backend, library, config, on_event=lambda _event: None, annotated_path=annotated_path,
        progress=progress, max_frames=max_frames, on_frame=on_frame,
        on_track_ended=lambda track: ended.append(_summarise(track)),
    )  # fmt: skip
    frames = summary.frames
    if frames == 0:  # every decoded frame failed to process
        raise VideoSourceError(f"no frame could be processed from {source}")
    ended.sort(key=lambda t: t.track_id)
    clusters: dict[int, list[int]] = {}
    with_emb = [(t, t.mean_embedding) for t in ended if t.mean_embedding is not None]
    if cluster and with_emb:
        labels = cluster_embeddings(np.stack([m for _, m in with_emb]), cluster_threshold)
        for (t, _), label in zip(with_emb, labels, strict=True):
            t.cluster = int(label)
            clusters.setdefault(int(label), []).append(t.track_id)
    return FindFacesResult(str(source), frames, ended, cluster_threshold, clusters)


def download_clip(storage: Any, clip: str, folder: str | Path) -> Path:
    """Fetch a stored alert clip's original MP4 by name (``<camera>/<clip id>``) into ``folder``.

    Raises:
        FaceTrackError: a malformed name, or the clip is not in the storage.
    """
    from facetrack.record.storage import clip_key

    camera, _, clip_id = clip.strip("/").partition("/")
    try:
        key = clip_key(camera, clip_id, "original")
    except ValueError as err:
        raise FaceTrackError(f"clip {clip!r}: {err} (expected <camera>/<clip id>)") from None
    dest = Path(folder) / f"{camera}_{clip_id}.mp4"
    path: Path = storage.download(key, dest)  # StorageError / ClipNotFoundError are FaceTrackErrors
    return path
