"""Clustering face embeddings by person.

Batch clustering (``facetrack find-faces``) is agglomerative with **average linkage on cosine
distance**, cut at ``1 - threshold`` (``scipy.cluster.hierarchy``: ``linkage(method="average",
metric="cosine")`` + ``fcluster(criterion="distance")``): two clusters merge while the mean
similarity of their members is at least ``threshold``. Average linkage does not chain two people
together through one ambiguous face the way single linkage does, and needs no number of clusters,
which is unknown. scipy is already a dependency (of ``trackers``), so no new package is needed
(scikit-learn's ``AgglomerativeClustering(linkage="average", metric="cosine",
distance_threshold=...)`` computes the same clustering).

The default threshold, :data:`DEFAULT_CLUSTER_THRESHOLD` = 0.5, is sourced from the measured
SFace curves (``docs/thresholds.md``) and checked on the shared data (``tests/test_clustering.py``):

- still photos (120 images, 22 people): 1:1 false accepts vanish from 0.49 up (the look-alike pair
  is at 0.487); average-linkage clustering gives 22 groups with purity 1.0 for thresholds
  0.45-0.55 (0.40 merges two people, 0.60 splits one);
- the street clip (``video.mp4``), where track means of small faces are noisier: the highest
  similarity between two different people's tracks is 0.45 (a two-embedding track), the one
  person seen twice (re-entry) comes back at 0.54. 0.5 separates both.

Putting two strangers in one group is worse than splitting one person in two (the user can merge
two groups; a mixed group named once enrols a stranger), so the threshold errs high: it sits
above the 1:1 equal-error point (0.31) and just under the recognition threshold (0.52).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.cluster.hierarchy import fcluster, linkage

from facetrack.config.inbox import DEFAULT_CLUSTER_THRESHOLD as DEFAULT_CLUSTER_THRESHOLD  # noqa: PLC0414 - re-export
from facetrack.inference.base import FloatArray


def normalise(embeddings: npt.ArrayLike) -> FloatArray:
    """Rows L2-normalised, ``(N, D) float32`` (a zero row stays zero).

    Raises:
        ValueError: not a finite 2-D array.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"embeddings must be a finite (N, D) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def cluster_embeddings(
    embeddings: npt.ArrayLike, threshold: float = DEFAULT_CLUSTER_THRESHOLD
) -> npt.NDArray[np.int64]:
    """Group embeddings by person.

    Args:
        embeddings: ``(N, D)`` embeddings (normalised here), one per track or face.
        threshold: cosine similarity in ``(-1, 1]``; clusters merge while their average
            pairwise similarity is at least this.

    Returns:
        ``(N,) int64`` cluster labels ``0 .. K-1``, numbered by first appearance (the first
        embedding is in cluster 0).

    Raises:
        ValueError: bad shape, non-finite values, threshold out of range.
    """
    if not -1.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (-1, 1], got {threshold}")
    x = normalise(embeddings) if np.size(embeddings) else np.zeros((0, 1), np.float32)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    z = linkage(x.astype(np.float64), method="average", metric="cosine")
    raw = fcluster(z, t=1.0 - threshold, criterion="distance")
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(c), len(order)) for c in raw], dtype=np.int64)


def purity(labels: Sequence[int] | npt.NDArray[np.int64], truth: Sequence[str]) -> float:
    """Cluster purity: the fraction of items whose cluster's majority true label is theirs.

    (Manning, Raghavan & Schütze, *Introduction to Information Retrieval*, 16.3.) 1.0 means no
    cluster mixes two people; it says nothing about one person split over several clusters
    (see the cluster count for that).

    Raises:
        ValueError: different lengths or empty input.
    """
    if len(labels) != len(truth) or len(truth) == 0:
        raise ValueError("labels and truth must be non-empty and of the same length")
    by_cluster: dict[int, Counter[str]] = {}
    for c, t in zip(labels, truth, strict=True):
        by_cluster.setdefault(int(c), Counter())[t] += 1
    return sum(cnt.most_common(1)[0][1] for cnt in by_cluster.values()) / len(truth)


def diverse_subset(embeddings: npt.ArrayLike, k: int, first: int = 0) -> list[int]:
    """Indices of ``k`` mutually dissimilar embeddings (greedy farthest-point selection).

    Starts at ``first`` (e.g. the best-quality crop), then repeatedly adds the embedding whose
    highest similarity to those chosen is lowest (Gonzalez, 1985). Enrolling diverse
    embeddings covers more poses and lights than ``k`` near-copies of one frame.

    Returns:
        ``min(k, N)`` distinct indices, ``first`` first.
    """
    x = normalise(embeddings)
    n = x.shape[0]
    if n == 0 or k <= 0:
        return []
    if not 0 <= first < n:
        raise ValueError(f"first index {first} out of range for {n} embeddings")
    chosen = [first]
    nearest = x @ x[first]
    while len(chosen) < min(k, n):
        nearest[chosen] = np.inf
        j = int(np.argmin(nearest))
        chosen.append(j)
        nearest = np.maximum(nearest, x @ x[j])
    return chosen
