"""Identity of a track, decided by a vote over its recent matches.

One bad frame (motion blur, a half-turned head) can produce an embedding whose nearest enrolled
person is wrong; deciding on the last frame would then rename the person. A vote over the last
``window`` usable matches, with a minimum number of votes and a strict majority, makes a rename
need several consistent frames, and a track stays unknown rather than take a doubtful name.

Which matches vote at all is decided by :mod:`facetrack.matching`: a vote for "nobody" comes only
from a frontal face of fair size, so a named track is demoted to unknown only by several such
faces (``unknown_votes`` of them, and twice as many as the votes left for its name), never by
turned, small or blurred ones.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum

from facetrack.config import IdentityConfig


class IdentityState(StrEnum):
    """Decision state of a track's identity."""

    PENDING = "pending"
    KNOWN = "known"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Vote:
    """One match of one usable embedding: ``person_id`` ``None`` when below the threshold."""

    person_id: str | None
    name: str | None
    similarity: float


@dataclass(slots=True)
class IdentityVoter:
    """Accumulates votes and decides ``(state, person_id)``; see :class:`IdentityConfig`."""

    config: IdentityConfig
    threshold: float
    votes: deque[Vote] = field(init=False)
    state: IdentityState = IdentityState.PENDING
    person_id: str | None = None
    name: str | None = None
    #: True once the track's evidence disagreed with itself: a vote for another person or for
    #: nobody while named, or a change of decision. Such a track never enriches the gallery.
    ambiguous: bool = False

    def __post_init__(self) -> None:
        self.votes = deque(maxlen=self.config.window)

    @property
    def similarity(self) -> float | None:
        """Mean similarity of the votes for the decided person; for an unknown track the best
        similarity of its votes for nobody; while pending the best of all votes."""
        if not self.votes:
            return None
        if self.state is IdentityState.KNOWN:
            sims = [v.similarity for v in self.votes if v.person_id == self.person_id]
            return sum(sims) / len(sims) if sims else None
        if self.state is IdentityState.UNKNOWN:
            # The evidence for "nobody": the best of the votes that matched nobody.
            nobody = [v.similarity for v in self.votes if v.person_id is None]
            if nobody:
                return max(nobody)
        return max(v.similarity for v in self.votes)

    def agrees(self, vote: Vote) -> bool:
        """Whether a vote agrees with the current decision (used to reset re-id backoff)."""
        if self.state is IdentityState.PENDING:
            return bool(self.votes) and vote.person_id == self.votes[-1].person_id
        return vote.person_id == self.person_id

    def adopt(self, state: IdentityState, person_id: str | None, name: str | None, votes: list[Vote]) -> None:
        """Take over a decision (from the recent-track gallery), with its supporting votes."""
        self.state, self.person_id, self.name = state, person_id, name
        self.votes.extend(votes)

    def add(self, vote: Vote) -> bool:
        """Add a vote; return True when the decision (state or person) changed."""
        if self.state is IdentityState.KNOWN and vote.person_id != self.person_id:
            self.ambiguous = True
        self.votes.append(vote)
        before = (self.state, self.person_id)
        self._decide()
        changed = (self.state, self.person_id) != before
        if changed and before[0] is not IdentityState.PENDING:
            self.ambiguous = True
        return changed

    def _decide(self) -> None:
        cfg = self.config
        n = len(self.votes)
        counts = Counter(v.person_id for v in self.votes if v.person_id is not None)
        unknown = sum(1 for v in self.votes if v.person_id is None)
        best_pid, best_n = None, 0
        if counts:
            # Most votes; ties broken by mean similarity.
            best_pid = max(
                counts,
                key=lambda p: (
                    counts[p],
                    sum(v.similarity for v in self.votes if v.person_id == p) / counts[p],
                ),
            )
            best_n = counts[best_pid]
        majority = best_n * 2 > n
        names = {v.person_id: v.name for v in self.votes}

        if self.state is IdentityState.PENDING:
            first = self.votes[0]
            if best_pid is not None and best_n >= cfg.min_votes and majority:
                self._set(IdentityState.KNOWN, best_pid, names[best_pid])
            elif n == 1 and first.person_id is not None and first.similarity >= self.threshold + cfg.instant_margin:
                self._set(IdentityState.KNOWN, first.person_id, first.name)
            elif unknown >= cfg.unknown_votes and unknown * 2 > n:
                self._set(IdentityState.UNKNOWN, None, None)
        elif self.state is IdentityState.KNOWN:
            current = counts.get(self.person_id, 0) if self.person_id is not None else 0
            if best_pid != self.person_id and best_n >= cfg.min_votes and best_n > current and majority:
                self._set(IdentityState.KNOWN, best_pid, names[best_pid])
            elif unknown >= cfg.unknown_votes and unknown > 2 * current:
                # The name is no longer supported: drop it rather than keep a doubtful one.
                self._set(IdentityState.UNKNOWN, None, None)
        elif best_pid is not None and best_n >= cfg.min_votes and majority:
            self._set(IdentityState.KNOWN, best_pid, names[best_pid])

    def _set(self, state: IdentityState, person_id: str | None, name: str | None) -> None:
        self.state, self.person_id, self.name = state, person_id, name
