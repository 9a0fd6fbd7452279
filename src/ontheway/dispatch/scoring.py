"""Ranking candidate drivers for an order: pure, no client library.

Each candidate gets a score in [0, 1], the weighted sum of three parts, each in [0, 1]:
- time to reach the restaurant (seconds): the drive by road, plus ``committed_s`` for a driver
  who still holds orders — it delivers them first (the driver's app works through its orders
  one after the other), so a driver next door with two deliveries to make is not "nearest".
  1 for a time of zero, falling linearly to 0 at ``horizon_s`` (the slowest candidate, at
  least 60 s), so the part compares the candidates with one another and never divides by zero;
- rating (1 to 5 stars): (rating - 1) / 4; an unrated driver counts as 3 stars;
- acceptance rate (0 to 1); unknown counts as 0.5.
The seed's weights are 0.5 / 0.3 / 0.2 (``Settings.dispatch_weights``). Ties go to the
quicker driver, then to the driver id, so the ranking is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

DEFAULT_WEIGHTS = (0.5, 0.3, 0.2)
UNRATED = 3.0
UNKNOWN_ACCEPTANCE = 0.5
MIN_HORIZON_S = 60.0


@dataclass(frozen=True)
class Scored:
    """A driver with its travel time to the restaurant and its score."""

    driver_id: str
    travel_time_s: float
    rating: float | None
    acceptance_rate: float | None
    score: float = 0.0
    committed_s: float = 0.0  # work the driver holds before it can head for the restaurant

    @property
    def reach_s(self) -> float:
        """When the driver can be at the restaurant: its committed work, then the drive."""
        return self.travel_time_s + self.committed_s


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def rank(
    candidates: Sequence[Scored], weights: tuple[float, float, float] = DEFAULT_WEIGHTS
) -> list[Scored]:
    """The candidates with their scores, best first. Weights need not sum to 1 but must
    not be negative or all zero."""
    if any(w < 0 for w in weights) or not any(weights):
        raise ValueError(f"weights must be non-negative and not all zero: {weights}")
    if not candidates:
        return []
    w_time, w_rating, w_accept = (w / sum(weights) for w in weights)
    horizon_s = max(MIN_HORIZON_S, max(c.reach_s for c in candidates))
    scored = []
    for c in candidates:
        if c.travel_time_s < 0 or c.committed_s < 0:
            raise ValueError(f"negative travel or committed time for {c.driver_id}")
        rating = UNRATED if c.rating is None else c.rating
        accept = UNKNOWN_ACCEPTANCE if c.acceptance_rate is None else c.acceptance_rate
        score = (
            w_time * _clip(1 - c.reach_s / horizon_s)
            + w_rating * _clip((rating - 1) / 4)
            + w_accept * _clip(accept)
        )
        scored.append(replace(c, score=round(score, 9)))
    return sorted(scored, key=lambda s: (-s.score, s.reach_s, s.driver_id))
