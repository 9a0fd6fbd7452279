"""When customers order and what: a daily demand curve and the orders it generates. Pure.

Orders arrive as a non-homogeneous Poisson process whose rate follows the time of day: a low
night, a lunch peak around 12:30 and a larger, wider dinner peak around 19:00. ``rate_per_h``
is the average over the whole day, so the peaks run at about two and a half times it. The
process is drawn by thinning (Lewis and Shedler): candidates at the peak rate, each kept with
probability rate(t) / peak. Every choice comes from one RNG seeded by the run's seed and the
region, in simulated time only, so the same seed gives the same orders whatever the timing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

_BASE = 0.2
_PEAKS = ((12.5, 1.0, 2.0), (19.0, 1.5, 2.5))  # (hour, spread in hours, height)


def _raw(hour: float) -> float:
    h = hour % 24
    return _BASE + sum(a * math.exp(-(((h - mu) / sd) ** 2) / 2) for mu, sd, a in _PEAKS)


_SAMPLES = [_raw(m / 60) for m in range(24 * 60)]
_MEAN = sum(_SAMPLES) / len(_SAMPLES)
PEAK_FACTOR = max(_SAMPLES) / _MEAN
"""The demand curve's highest value (its average over the day is 1)."""


def demand_factor(hour: float) -> float:
    """The order rate at ``hour`` (0-24, local time) as a multiple of the day's average."""
    return _raw(hour) / _MEAN


def rush_factor(hour: float) -> float:
    """How much traffic slows roads at ``hour``: 1 at night, about 1.8 at the rush hours
    (8:30 and 17:30) and 1.3 at lunch."""
    h = hour % 24
    bumps = ((8.5, 1.0, 0.8), (17.5, 1.2, 0.8), (12.5, 0.8, 0.3))
    return 1.0 + sum(a * math.exp(-(((h - mu) / sd) ** 2) / 2) for mu, sd, a in bumps)


def arrival_times(
    rng: random.Random, rate_per_h: float, start_hour: float, duration_s: float
) -> list[float]:
    """Simulated seconds (from the start) at which orders are placed."""
    if rate_per_h <= 0 or duration_s <= 0:
        return []
    peak_per_s = rate_per_h * PEAK_FACTOR * 1.0001 / 3600
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak_per_s)
        if t >= duration_s:
            return times
        hour = start_hour + t / 3600
        if rng.random() * PEAK_FACTOR * 1.0001 < demand_factor(hour):
            times.append(t)


@dataclass(frozen=True)
class PlannedOrder:
    """One order a customer will place: when, where from, what, and where to."""

    at_s: float  # simulated seconds after the start
    seq: int
    restaurant: int  # index into the region's restaurants
    customer: int  # index into the region's customers
    items: tuple[tuple[int, int], ...]  # (menu item index, quantity)
    dropoff: tuple[float, float]  # (lat, lng): a node of the road map
    tip_cents: int


def generate_orders(
    seed: int,
    region: str,
    *,
    rate_per_h: float,
    start_hour: float,
    duration_s: float,
    popularity: list[float],
    dropoffs: list[list[tuple[float, float]]],
    customers: int,
    menu_size: int = 5,
) -> list[PlannedOrder]:
    """Every order of the run in ``region``, in time order; deterministic for a seed."""
    if not popularity or customers <= 0:
        return []
    rng = random.Random(f"orders:{seed}:{region}")
    out: list[PlannedOrder] = []
    indices = list(range(len(popularity)))
    for seq, at in enumerate(arrival_times(rng, rate_per_h, start_hour, duration_s)):
        restaurant = rng.choices(indices, popularity)[0]
        lines = rng.sample(range(menu_size), rng.choice((1, 1, 2, 2, 3)))
        items = tuple((i, rng.choice((1, 1, 1, 2))) for i in sorted(lines))
        places = dropoffs[restaurant]
        dropoff = places[rng.randrange(len(places))]
        tip = rng.choice((0, 0, 100, 200, 300, 500))
        out.append(PlannedOrder(at, seq, restaurant, rng.randrange(customers), items,
                                dropoff, tip))  # fmt: skip
    return out
