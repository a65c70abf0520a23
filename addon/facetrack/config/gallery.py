"""GalleryConfig: growing the face library from camera tracks (``gallery.*`` of the service
configuration; :mod:`facetrack.enrich` does it)."""

from __future__ import annotations

from dataclasses import dataclass

import voluptuous as vol

#: How far above the identification threshold a track's mean similarity must be for its face to be
#: added automatically: 0.1 above the default 0.363 is 0.463, above the 0.44-0.45 the strongest
#: look-alike strangers of the shared stills reach (kate_siegel vs angelina_jolie, 0.487, is the
#: exception the three unanimous votes and the second opinion are there for).
DEFAULT_AUTO_MARGIN = 0.1
#: Embeddings a person may receive from auto-enrichment in all (one per empty pose bin: 3 bins).
DEFAULT_MAX_AUTO_PER_PERSON = 3


@dataclass(frozen=True, slots=True)
class GalleryConfig:
    """Gallery options (``gallery.*`` in the service configuration, ``docs/configuration.md``).

    Attributes:
        auto_enrich: add the face of a confidently known track to its person's gallery when the
            gallery has no embedding of that pose yet (off by default: the library then changes
            without a user's action; each addition is logged with its embedding id).
        auto_margin: cosine similarity above the identification threshold a track's mean must
            reach (see :data:`DEFAULT_AUTO_MARGIN`).
        max_auto_per_person: embeddings auto-enrichment adds to one person at most.

    Raises:
        ValueError: a margin outside [0, 1) or a count below 1.
    """

    auto_enrich: bool = False
    auto_margin: float = DEFAULT_AUTO_MARGIN
    max_auto_per_person: int = DEFAULT_MAX_AUTO_PER_PERSON

    def __post_init__(self) -> None:
        if not 0.0 <= self.auto_margin < 1.0:
            raise ValueError("gallery.auto_margin must be in [0, 1)")
        if self.max_auto_per_person < 1:
            raise ValueError("gallery.max_auto_per_person must be at least 1")


#: ``gallery`` section of a configuration file.
GALLERY_SCHEMA = vol.Schema(
    {
        vol.Optional("auto_enrich"): bool,
        vol.Optional("auto_margin"): vol.All(vol.Coerce(float), vol.Range(min=0.0, max=0.5)),
        vol.Optional("max_auto_per_person"): vol.All(vol.Coerce(int), vol.Range(min=1, max=30)),
    }
)
