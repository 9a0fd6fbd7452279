"""Moving along a road: positions on a route's polyline over simulated time. Pure.

A route (the body of ``GET /api/route``, or the ``route`` message pushed to a driver at
acceptance) has one geometry for all its legs, ``[[lat, lng], ...]``, and the duration of each
leg. A driver covers a leg at an even pace over the leg's duration (which carries traffic),
so its position at a time is found by distance along the polyline.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from ontheway.roads.geo import haversine_m


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lng) points."""
    return haversine_m(a[0], a[1], b[0], b[1])


@dataclass
class Trip:
    """One leg being driven: the polyline, when it started and how long it takes (sim s)."""

    points: list[tuple[float, float]]
    start_s: float
    duration_s: float
    _cum: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a trip needs at least one point")
        cum = [0.0]
        for a, b in zip(self.points, self.points[1:], strict=False):
            cum.append(cum[-1] + distance_m(a, b))
        self._cum = cum

    @property
    def length_m(self) -> float:
        """The polyline's length."""
        return self._cum[-1]

    @property
    def end_s(self) -> float:
        """When the trip ends (simulated seconds)."""
        return self.start_s + self.duration_s

    def position(self, at_s: float) -> tuple[float, float]:
        """Where the driver is at ``at_s``: the start before it, the end after it."""
        if self.duration_s <= 0 or self.length_m <= 0 or at_s >= self.end_s:
            return self.points[-1]
        if at_s <= self.start_s:
            return self.points[0]
        target = self.length_m * (at_s - self.start_s) / self.duration_s
        i = max(1, bisect.bisect_left(self._cum, target))
        seg = self._cum[i] - self._cum[i - 1]
        f = 0.0 if seg <= 0 else (target - self._cum[i - 1]) / seg
        (a_lat, a_lng), (b_lat, b_lng) = self.points[i - 1], self.points[i]
        return a_lat + (b_lat - a_lat) * f, a_lng + (b_lng - a_lng) * f


def split_legs(route: dict[str, Any]) -> list[tuple[list[tuple[float, float]], float]]:
    """A route's legs as (polyline, duration_s): the geometry cut at each leg's end."""
    geometry = [(float(p[0]), float(p[1])) for p in route.get("geometry") or []]
    legs = route.get("legs") or []
    out: list[tuple[list[tuple[float, float]], float]] = []
    start = 0
    for n, leg in enumerate(legs):
        end = (float(leg["end"]["lat"]), float(leg["end"]["lng"]))
        cut = len(geometry) - 1
        if n < len(legs) - 1:
            cut = next((i for i in range(start, len(geometry)) if geometry[i] == end), start)
        points = geometry[start : cut + 1] or [end]
        out.append((points, float(leg["duration_s"])))
        start = cut
    return out
