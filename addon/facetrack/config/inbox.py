"""InboxConfig: the unknown-face inbox (``inbox.*`` of the service configuration)."""

from __future__ import annotations

from dataclasses import dataclass

import voluptuous as vol

#: Cosine similarity at or above which two tracks (or groups) are taken for the same person;
#: where 0.5 comes from is written in :mod:`facetrack.cluster` (measured on the shared data).
DEFAULT_CLUSTER_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class InboxConfig:
    """Inbox options (``inbox.*`` in the service configuration, ``docs/configuration.md``).

    Attributes:
        enabled: collect unknown faces at all.
        max_groups: groups kept (pending and ignored).
        max_crops_per_group: best crops (with embeddings) kept per group.
        max_age_days: a group not seen for this long is dropped, days (0: never).
        cluster_threshold: cosine similarity (average linkage) to join a group; see
            :data:`DEFAULT_CLUSTER_THRESHOLD`.
        path: the inbox file (``.npz``); default ``inbox.npz`` next to the face library
            (:func:`facetrack.config.service.inbox_path`).

    Raises:
        ValueError: a count below 1, a negative age or a threshold outside (0, 1).
    """

    enabled: bool = True
    max_groups: int = 50
    max_crops_per_group: int = 10
    max_age_days: float = 30.0
    cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD
    path: str | None = None

    def __post_init__(self) -> None:
        if self.max_groups < 1 or self.max_crops_per_group < 1:
            raise ValueError("inbox.max_groups and inbox.max_crops_per_group must be at least 1")
        if self.max_age_days < 0:
            raise ValueError("inbox.max_age_days must not be negative")
        if not 0.0 < self.cluster_threshold < 1.0:
            raise ValueError("inbox.cluster_threshold must be in (0, 1)")


#: ``inbox`` section of a configuration file (narrower than :class:`InboxConfig` accepts: the
#: file's limits are the ones users may set, the dataclass's the ones the inbox works with).
INBOX_SCHEMA = vol.Schema(
    {
        vol.Optional("enabled"): bool,
        vol.Optional("max_groups"): vol.All(vol.Coerce(int), vol.Range(min=1, max=500)),
        vol.Optional("max_crops_per_group"): vol.All(vol.Coerce(int), vol.Range(min=1, max=50)),
        vol.Optional("max_age_days"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("cluster_threshold"): vol.All(vol.Coerce(float), vol.Range(min=0.05, max=0.95)),
        vol.Optional("path"): vol.Any(None, vol.All(str, vol.Length(min=1))),
    }
)
