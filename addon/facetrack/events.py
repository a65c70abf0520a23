"""Plain dataclasses for what the pipeline reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

EventType = Literal["track_started", "identity", "track_ended"]


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """A change in a confirmed track.

    Attributes:
        type: ``track_started`` (confirmed after ``credence_count`` frames), ``identity`` (the
            decided identity is first known or changes; ``person`` ``None`` means decided unknown)
            or ``track_ended``.
        frame: frame index (0-based) the event was decided on; for ``track_ended``, the last frame
            the face was seen.
        ts: seconds since the start of the source at ``frame`` (file position, or wall clock for
            live sources).
        track_id: stable id of the track within this pipeline.
        person / person_id: decided identity, ``None`` while unknown or undecided.
        similarity: mean cosine similarity of the votes for ``person`` (or the best similarity
            seen for an unknown track), ``None`` before the first embedding.
        bbox: last box, ``[x1, y1, x2, y2]`` pixels.
        reason: for ``track_ended``: ``lost`` or ``scene_cut``; for ``identity``: ``vote`` or
            ``recent_gallery``.
    """

    type: EventType
    frame: int
    ts: float
    track_id: int
    person: str | None
    person_id: str | None
    similarity: float | None
    bbox: list[float]
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON line (``facetrack track``)."""
        out: dict[str, Any] = {
            "type": self.type,
            "frame": self.frame,
            "ts": round(self.ts, 3),
            "track_id": self.track_id,
            "person": self.person,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "bbox": [round(v, 1) for v in self.bbox],
        }
        if self.reason:
            out["reason"] = self.reason
        return out
