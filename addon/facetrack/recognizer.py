"""Still-image operations: detect, enrol, recognise (1:N) and verify (1:1).

The CompreFace detection / recognition / verification services and DeGirum's FaceRecognizer
(``enroll_image``, ``predict``) on one inference backend and one face library.

Which face of an image is enrolled (:data:`EnrolPick`): from a **photo** (``only``, the default)
the only face or a clearly dominant one; several faces of similar size are refused (whose face
would it be?). From a **camera snapshot** (``largest``) the largest face that passes the enrolment
filters: the person enrolling stands nearest the camera, others pass by in the background. The
answer names the face's box and how many faces were seen, so a wrong pick shows (and is undone
with ``forget_embedding``); when no face passes, the refusal says how many faces were seen and
how to choose one (``enroll_track`` with the track id of the camera's face events).

Turned faces may be enrolled (up to :data:`ENROL_MAX_YAW`, near profile), so that a user can add
a three-quarter or profile photo to a person (:mod:`facetrack.library.diverse`). Each enrolled
embedding is stored with its face's yaw ratio and dlib's second descriptor of the face
(:class:`facetrack.library.second.SecondDescriber`; none without dlib).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facetrack.config import FaceTrackerConfig
from facetrack.errors import FaceTrackError
from facetrack.images import encode_jpeg, face_context, read_image
from facetrack.inference.base import Detection, FloatArray, Frame, InferenceBackend
from facetrack.library import FaceLibrary, Person
from facetrack.library.second import SecondDescriber
from facetrack.matching import Evidence, FacePose, classify, confirm_distance, lowest_floor
from facetrack.quality import FaceFilters, assess, landmark_geometry
from facetrack.track.second_opinion import SecondOpinion

#: Detector score an enrolment face needs: OpenCV's YuNet default (0.9). Posed photos clear it
#: (every face of shared/data's labels.csv scores >= 0.9), animal faces and patterns do not.
ENROL_MIN_SCORE = 0.9
#: Two faces count as "of similar size" (ambiguous enrolment photo) when the second largest is at
#: least this fraction of the largest (shorter box side).
SIMILAR_SIZE_RATIO = 0.6
#: Which face of an image to enrol: ``only`` (a photo: the only or a clearly dominant face) or
#: ``largest`` (a camera snapshot: the largest usable face).
EnrolPick = Literal["only", "largest"]
#: Largest |yaw ratio| of an enrolment face: a profile photo may be enrolled (about 50-60 degrees;
#: ``facetrack.pose`` puts profile from 0.35). Beyond it YuNet's landmarks of the hidden eye and
#: mouth corner are guesses and the alignment, hence the embedding, is unreliable; the
#: landmark-sanity check still refuses impossible geometry.
ENROL_MAX_YAW = 0.6


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


@dataclass(frozen=True, slots=True)
class EnrolmentFace:
    """The face chosen for enrolment: ``embedding`` ``(D,) float32`` L2-normalised, its aligned
    crop as JPEG, its ``box`` ``(x1, y1, x2, y2)`` in image pixels, and ``faces``: how many faces
    the detector saw in the image (any score); ``yaw``: the face's yaw ratio
    (:func:`facetrack.quality.landmark_geometry`); ``descriptor2``: ``(128,) float32`` dlib
    descriptor of the face, NaN when dlib is unavailable."""

    embedding: FloatArray = field(repr=False)
    crop_jpeg: bytes = field(repr=False)
    box: tuple[float, float, float, float]
    faces: int
    yaw: float = 0.0
    descriptor2: FloatArray | None = field(default=None, repr=False)


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


def face_descriptors(faces: list[EnrolmentFace]) -> FloatArray:
    """``(N, 128) float32`` second descriptors of enrolment faces (NaN rows where there are none)."""
    return np.stack([f.descriptor2 if f.descriptor2 is not None else np.full(128, np.nan, np.float32) for f in faces])


class FaceRecognizer:
    """Detection, enrolment and identification on still images.

    Args:
        backend: inference backend.
        config: thresholds (``cosine_similarity_threshold``) and face filters.
        library: face library; needed for enrol and recognise, not for detect and verify.
    """

    def __init__(
        self,
        backend: InferenceBackend,
        config: FaceTrackerConfig,
        library: FaceLibrary | None = None,
        second: SecondDescriber | None = None,
    ):
        self.backend = backend
        self.config = config
        self.library = library
        #: dlib second descriptors of enrolled faces (the model is loaded at the first enrolment).
        self.second = second if second is not None else SecondDescriber()
        self._opinions: SecondOpinion | None = None
        # Enrolment photos are posed stills: a confident detection, blur and size filters; turned
        # faces up to near profile (a gallery needs several poses).
        ff = config.face_filters
        self.enrol_filters = FaceFilters(
            min_face_size=ff.min_face_size,
            min_score=max(ff.min_score, ENROL_MIN_SCORE),
            min_sharpness=ff.min_sharpness,
            max_yaw=ENROL_MAX_YAW,
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
        """``((D,) float32 embedding, JPEG aligned crop)`` of the enrolment face of a photo
        (:meth:`enrolment_face` with ``pick="only"``).

        Raises:
            UnusableImageError: no usable face (none, several, too small, blurred, turned away).
        """
        face = self.enrolment_face(image)
        return face.embedding, face.crop_jpeg

    def enrolment_face(self, image: Frame, pick: EnrolPick = "only") -> EnrolmentFace:
        """The face of ``image`` to enrol (see :data:`EnrolPick` and the module's docstring).

        Raises:
            UnusableImageError: ``only``: no face, several of similar size, or the face is unusable
                (too small, blurred, turned away); ``largest``: no face, or none usable (the
                message says how many were seen and how to choose one).
        """
        dets = self.backend.detect(image)
        if pick == "largest":
            det, crop = self._largest_usable(image, dets)
        else:
            det = pick_enrolment_face([d for d in dets if d.score >= self.enrol_filters.min_score])
            crop = self.backend.aligned_crop(image, det)
            q = assess(det, crop, self.enrol_filters)
            if not q.usable:
                raise UnusableImageError(q.reason or "unusable face")
        emb = self.backend.embed(image, [det])[0]
        x1, y1, x2, y2 = (round(float(v), 1) for v in det.box)
        yaw = landmark_geometry(det)[0]
        # On the face's context crop, as the tracker does for its probes (the same input either side).
        context, box_in_context = face_context(image, det.box)
        d2 = self.second.describe_one(context, box_in_context)
        return EnrolmentFace(emb, encode_jpeg(crop), (x1, y1, x2, y2), len(dets), yaw, d2)

    def _largest_usable(self, image: Frame, dets: list[Detection]) -> tuple[Detection, Frame]:
        if not dets:
            raise UnusableImageError("no face found")
        reason = "unusable face"
        for i, det in enumerate(sorted(dets, key=lambda d: -d.size)):
            crop = self.backend.aligned_crop(image, det)
            q = assess(det, crop, self.enrol_filters)
            if q.usable:
                return det, crop
            if i == 0:
                reason = q.reason or reason
        seen = "the one face seen is not usable" if len(dets) == 1 else f"none of the {len(dets)} faces seen is usable"
        raise UnusableImageError(
            f"no usable face: {seen} (largest: {reason}); come closer to the camera, or enrol a face"
            " with enroll_track and its track id (in the camera's face events and tracks)"
        )

    def enroll(self, name: str, paths: list[str | Path], metadata: dict[str, Any] | None = None) -> EnrolmentResult:
        """Enrol ``name`` from image files, all in one commit; unusable images are skipped.

        Raises:
            LibraryError: bad name (nothing is written).
        """
        lib = self._lib()
        faces: list[EnrolmentFace] = []
        sources: list[str] = []
        skipped: list[dict[str, str]] = []
        for path in paths:
            try:
                face = self.enrolment_face(read_image(path))
            except FaceTrackError as err:
                reason = str(err)
                prefix = f"{path}: "
                skipped.append({"path": str(path), "reason": reason.removeprefix(prefix)})
                continue
            faces.append(face)
            sources.append(str(path))
        if not faces:
            return EnrolmentResult(name, lib.person(name), 0, skipped)
        person = lib.enroll(
            name,
            np.stack([f.embedding for f in faces]),
            [f.crop_jpeg for f in faces],
            sources,
            metadata,
            yaws=[f.yaw for f in faces],
            descriptors2=face_descriptors(faces),
        )
        return EnrolmentResult(person.name, person, len(faces), skipped)

    def recognize(self, image: Frame) -> list[dict[str, Any]]:
        """Every face of ``image`` with its nearest person: ``bbox``, ``score``, ``person``, ``similarity``.

        A face is named by the rule the tracker uses for one frame (:mod:`facetrack.matching`):
        SFace alone at ``cosine_similarity_threshold`` or above; in the grey zone below it, only
        when the second opinion confirms the person. ``second_opinion`` says what happened there:
        ``"confirmed"``, ``"refused"``, ``"unavailable"`` or ``None`` (not asked).
        """
        lib = self._lib()
        dets = self.backend.detect(image)
        if not dets:
            return []
        embs = self.backend.embed(image, dets)
        matches = lib.match(embs, lowest_floor())
        out = []
        for d, m in zip(dets, matches, strict=True):
            yaw, pitch, _ = landmark_geometry(d)
            pose = FacePose(yaw, pitch, d.size)
            evidence = classify(m.similarity, pose, self.config.cosine_similarity_threshold)
            opinion: str | None = None
            person = m.name if evidence is Evidence.PERSON else None
            if evidence is Evidence.GREY and m.person_id is not None:
                dist = self._opinion(lib).distance(image, d.box, m.person_id) if self.config.second_opinion else None
                if dist is None:
                    opinion = "unavailable"
                else:
                    opinion = "confirmed" if dist <= confirm_distance(pose) else "refused"
                person = m.name if opinion == "confirmed" else None
            out.append(
                {
                    "bbox": [round(float(v), 1) for v in d.box],
                    "score": round(d.score, 4),
                    "person": person,
                    "similarity": round(m.similarity, 4),
                    "second_opinion": opinion,
                }
            )
        return out

    def _opinion(self, lib: FaceLibrary) -> SecondOpinion:
        if self._opinions is None or self._opinions.library is not lib:
            self._opinions = SecondOpinion(lib, self.second)
        return self._opinions

    def verify(self, image1: Frame, image2: Frame) -> dict[str, Any]:
        """1:1 verification on the largest face of each image (among faces scoring >= 0.9, if any).

        Same person at ``cosine_similarity_threshold`` or above; in the grey zone below it
        (:mod:`facetrack.matching`, the less frontal face's pose), only if dlib's descriptors of
        the two faces are within the confirm distance (``distance`` is then reported).

        Raises:
            FaceTrackError: no face in one of the images.
        """
        faces: list[Detection] = []
        embs = []
        for i, img in enumerate((image1, image2), start=1):
            dets = self.backend.detect(img)
            if not dets:
                raise FaceTrackError(f"no face found in image {i}")
            # Prefer confident faces: a large low-score false positive must not win "largest".
            confident = [d for d in dets if d.score >= ENROL_MIN_SCORE] or dets
            largest = max(confident, key=lambda d: d.size)
            faces.append(largest)
            embs.append(self.backend.embed(img, [largest])[0])
        sim = float(embs[0] @ embs[1])
        thr = self.config.cosine_similarity_threshold
        poses = [FacePose(*landmark_geometry(d)[:2], d.size) for d in faces]
        pose = poses[0] if not poses[0].frontal or poses[1].frontal else poses[1]
        evidence = classify(sim, pose, thr)
        same = evidence is Evidence.PERSON
        out: dict[str, Any] = {"similarity": round(sim, 4), "same_person": same, "threshold": thr}
        if evidence is Evidence.GREY and self.config.second_opinion:
            a = self.second.describe(image1, faces[0].box[None, :])[0]
            b = self.second.describe(image2, faces[1].box[None, :])[0]
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
                out["second_opinion"] = "unavailable"
            else:
                dist = float(np.linalg.norm(a - b))
                out["distance"] = round(dist, 4)
                out["same_person"] = dist <= confirm_distance(pose)
                out["second_opinion"] = "confirmed" if out["same_person"] else "refused"
        return out
