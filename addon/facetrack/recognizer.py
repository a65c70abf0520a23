"""Still-image operations: detect, enrol, recognise (1:N) and verify (1:1).

The CompreFace detection / recognition / verification services and DeGirum's FaceRecognizer
(``enroll_image``, ``predict``) on one inference backend and one face library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.config import FaceTrackerConfig
from facetrack.errors import FaceTrackError
from facetrack.images import encode_jpeg, read_image
from facetrack.inference.base import Detection, FloatArray, Frame, InferenceBackend
from facetrack.library import FaceLibrary, Person
from facetrack.quality import FaceFilters, assess

#: Detector score an enrolment face needs: OpenCV's YuNet default (0.9). Posed photos clear it
#: (every face of shared/data's labels.csv scores >= 0.9), animal faces and patterns do not.
ENROL_MIN_SCORE = 0.9
#: Two faces count as "of similar size" (ambiguous enrolment photo) when the second largest is at
#: least this fraction of the largest (shorter box side).
SIMILAR_SIZE_RATIO = 0.6


class UnusableImageError(FaceTrackError):
    """An enrolment image was not used; the message is the reason."""


def pick_enrolment_face(detections: list[Detection]) -> Detection:
    """The face to enrol from a photo: the only face, or a clearly dominant one.

    Raises:
        UnusableImageError: no face, or several faces of similar size (whose face would be enrolled?).
    """
    if not detections:
        raise UnusableImageError("no face found")
    ranked = sorted(detections, key=lambda d: -d.size)
    if len(ranked) > 1 and ranked[1].size >= SIMILAR_SIZE_RATIO * ranked[0].size:
        raise UnusableImageError(f"{len(ranked)} faces of similar size: crop the photo to one person")
    return ranked[0]


@dataclass(slots=True)
class EnrolmentResult:
    """What ``enroll`` did: the person (``None`` if nothing was enrolled) and skipped images."""

    name: str
    person: Person | None
    enrolled: int
    skipped: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON: ``{"person", "enrolled", "skipped": [{"path", "reason"}]}``."""
        return {"person": self.name, "enrolled": self.enrolled, "skipped": self.skipped}


class FaceRecognizer:
    """Detection, enrolment and identification on still images.

    Args:
        backend: inference backend.
        config: thresholds (``cosine_similarity_threshold``) and face filters.
        library: face library; needed for enrol and recognise, not for detect and verify.
    """

    def __init__(self, backend: InferenceBackend, config: FaceTrackerConfig, library: FaceLibrary | None = None):
        self.backend = backend
        self.config = config
        self.library = library
        # Enrolment photos are posed stills: a confident detection, blur and size filters, pose a
        # little looser than for video.
        ff = config.face_filters
        self.enrol_filters = FaceFilters(
            min_face_size=ff.min_face_size,
            min_score=max(ff.min_score, ENROL_MIN_SCORE),
            min_sharpness=ff.min_sharpness,
            max_yaw=max(ff.max_yaw, 0.35),
            pitch_range=ff.pitch_range,
            landmark_sanity=ff.landmark_sanity,
        )

    def _lib(self) -> FaceLibrary:
        if self.library is None:
            raise FaceTrackError("this operation needs a face library (--db)")
        return self.library

    def detect(self, image: Frame) -> list[Detection]:
        """All faces of a BGR image, by descending score."""
        return self.backend.detect(image)

    def enrolment_embedding(self, image: Frame) -> tuple[FloatArray, bytes]:
        """``((D,) float32 embedding, JPEG aligned crop)`` of the enrolment face of ``image``.

        Raises:
            UnusableImageError: no usable face (none, several, too small, blurred, turned away).
        """
        confident = [d for d in self.backend.detect(image) if d.score >= self.enrol_filters.min_score]
        det = pick_enrolment_face(confident)
        crop = self.backend.aligned_crop(image, det)
        q = assess(det, crop, self.enrol_filters)
        if not q.usable:
            raise UnusableImageError(q.reason or "unusable face")
        emb = self.backend.embed(image, [det])[0]
        return emb, encode_jpeg(crop)

    def enroll(self, name: str, paths: list[str | Path], metadata: dict[str, Any] | None = None) -> EnrolmentResult:
        """Enrol ``name`` from image files, all in one commit; unusable images are skipped.

        Raises:
            LibraryError: bad name (nothing is written).
        """
        lib = self._lib()
        embs: list[FloatArray] = []
        crops: list[bytes] = []
        sources: list[str] = []
        skipped: list[dict[str, str]] = []
        for path in paths:
            try:
                emb, crop = self.enrolment_embedding(read_image(path))
            except FaceTrackError as err:
                reason = str(err)
                prefix = f"{path}: "
                skipped.append({"path": str(path), "reason": reason.removeprefix(prefix)})
                continue
            embs.append(emb)
            crops.append(crop)
            sources.append(str(path))
        if not embs:
            return EnrolmentResult(name, lib.person(name), 0, skipped)
        person = lib.enroll(name, np.stack(embs), crops, sources, metadata)
        return EnrolmentResult(person.name, person, len(embs), skipped)

    def recognize(self, image: Frame) -> list[dict[str, Any]]:
        """Every face of ``image`` with its nearest person: ``bbox``, ``score``, ``person``, ``similarity``."""
        lib = self._lib()
        dets = self.backend.detect(image)
        if not dets:
            return []
        embs = self.backend.embed(image, dets)
        matches = lib.match(embs, self.config.cosine_similarity_threshold)
        return [
            {
                "bbox": [round(float(v), 1) for v in d.box],
                "score": round(d.score, 4),
                "person": m.name,
                "similarity": round(m.similarity, 4),
            }
            for d, m in zip(dets, matches, strict=True)
        ]

    def verify(self, image1: Frame, image2: Frame) -> dict[str, Any]:
        """1:1 verification on the largest face of each image (among faces scoring >= 0.9, if any).

        Raises:
            FaceTrackError: no face in one of the images.
        """
        embs = []
        for i, img in enumerate((image1, image2), start=1):
            dets = self.backend.detect(img)
            if not dets:
                raise FaceTrackError(f"no face found in image {i}")
            # Prefer confident faces: a large low-score false positive must not win "largest".
            confident = [d for d in dets if d.score >= ENROL_MIN_SCORE] or dets
            largest = max(confident, key=lambda d: d.size)
            embs.append(self.backend.embed(img, [largest])[0])
        sim = float(embs[0] @ embs[1])
        thr = self.config.cosine_similarity_threshold
        return {"similarity": round(sim, 4), "same_person": sim >= thr, "threshold": thr}
