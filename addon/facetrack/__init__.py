"""FaceTrack: face tracking and recognition engine for Home Assistant."""

__version__ = "0.1.0"

#: The project's canonical repository: the HA discovery ``origin`` URL here; pyproject.toml, the
#: integration's manifest, repository.yaml, the app's config.yaml and the docs carry the same URL
#: (tests/test_repository.py checks that they agree).
PROJECT_URL = "https://github.com/facetrack-ha/facetrack"
