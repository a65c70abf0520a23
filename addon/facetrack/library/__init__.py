"""The face library (gallery): persons, their embeddings and face crops, on LanceDB."""

from facetrack.library.store import EmbeddingRecord, FaceLibrary, Match, Person

__all__ = ["EmbeddingRecord", "FaceLibrary", "Match", "Person"]
