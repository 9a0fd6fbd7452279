"""Ranking candidate drivers for an order: pure, no client library.

Each candidate gets a score in [0, 1], the weighted sum of three parts, each in [0, 1]:
- travel time to the restaurant (seconds, by road): 1 for the quickest candidate's time of
  zero, falling linearly to 0 at ``horizon_s`` (the slowest candidate, at least 60 s), so the
  part compares the candidates with one another and never divides by zero;
- rating (1 to 5 stars): (rating - 1) / 4; an unrated driver counts as 3 stars;
- acceptance rate (0 to 1); unknown counts as 0.5.
The seed's weights are 0.5 / 0.3 / 0.2 (``Settings.dispatch_weights``). Ties go to the
quicker driver, then to the driver id, so the ranking is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    horizon_s = max(MIN_HORIZON_S, max(c.travel_time_s for c in candidates))
    scored = []
    for c in candidates:
        if c.travel_time_s < 0:
            raise ValueError(f"negative travel time for {c.driver_id}")
        rating = UNRATED if c.rating is None else c.rating
        accept = UNKNOWN_ACCEPTANCE if c.acceptance_rate is None else c.acceptance_rate
        score = (
            w_time * _clip(1 - c.travel_time_s / horizon_s)
            + w_rating * _clip((rating - 1) / 4)
            + w_accept * _clip(accept)
        )
        scored.append(
            Scored(c.driver_id, c.travel_time_s, c.rating, c.acceptance_rate, round(score, 9))
        )
    return sorted(scored, key=lambda s: (-s.score, s.travel_time_s, s.driver_id))
