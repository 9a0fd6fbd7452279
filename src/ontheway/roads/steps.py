"""Turn-by-turn steps from the roads of a route. Pure.

A step starts where the street changes (by name; on unnamed roads, where the road turns by
45 degrees or more) and says which way to turn there, how far to drive and for how long.
Turn angles are the change of compass bearing between the last segment before the point and
the first after it, in degrees, positive to the right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ontheway.roads.geo import bearing_deg

_UNNAMED_TURN_DEG = 45.0


@dataclass(frozen=True)
class Segment:
    """One road of a route: where it starts and ends, its street, length and time."""

    from_lat: float
    from_lng: float
    to_lat: float
    to_lng: float
    street: str | None
    distance_m: float
    duration_s: float

    @property
    def bearing(self) -> float:
        return bearing_deg(self.from_lat, self.from_lng, self.to_lat, self.to_lng)


@dataclass
class Step:
    """One instruction: turn onto ``street`` at (lat, lng), then drive ``distance_m``."""

    turn: str
    street: str | None
    lat: float
    lng: float
    distance_m: float
    duration_s: float

    @property
    def instruction(self) -> str:
        onto = self.street or "the road"
        if self.turn == "depart":
            return f"Head out on {onto}"
        if self.turn in ("arrive", "waypoint"):
            return "Arrive at your destination" if self.turn == "arrive" else "Reach the stop"
        if self.turn == "straight":
            return f"Continue onto {onto}"
        if self.turn == "uturn":
            return f"Make a U-turn onto {onto}"
        return f"Turn {self.turn.replace('_', ' ')} onto {onto}"

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["distance_m"] = round(self.distance_m, 1)
        body["duration_s"] = round(self.duration_s, 1)
        body["instruction"] = self.instruction
        return body


def turn_name(angle_deg: float) -> str:
    """The turn for a change of bearing in degrees (positive = to the right)."""
    magnitude = abs(angle_deg)
    side = "right" if angle_deg > 0 else "left"
    if magnitude < 25:
        return "straight"
    if magnitude < 60:
        return f"slight_{side}"
    if magnitude < 120:
        return side
    if magnitude < 170:
        return f"sharp_{side}"
    return "uturn"


def turn_angle(before_deg: float, after_deg: float) -> float:
    """The change of bearing from one heading to the next, in (-180, 180]."""
    angle = (after_deg - before_deg) % 360.0
    return angle - 360.0 if angle > 180.0 else angle


def build_steps(segments: Sequence[Segment], final: str = "arrive") -> list[Step]:
    """The steps of one leg; ``final`` is "arrive" or "waypoint". Empty legs give one step."""
    if not segments:
        return []

    def column(values: list[float]) -> NDArray[np.float64]:
        return np.array(values, dtype=np.float64)

    return steps_of_roads(
        RoadColumns(
            from_lat=column([s.from_lat for s in segments]),
            from_lng=column([s.from_lng for s in segments]),
            to_lat=column([s.to_lat for s in segments]),
            to_lng=column([s.to_lng for s in segments]),
            street=np.array([s.street for s in segments], dtype=object),
            distance_m=column([s.distance_m for s in segments]),
            duration_s=column([s.duration_s for s in segments]),
            bearing_deg=column([s.bearing for s in segments]),
        ),
        final,
    )


@dataclass(frozen=True)
class RoadColumns:
    """The roads of one leg in order, as columns: ends, street, length, time, bearing."""

    from_lat: NDArray[np.float64]
    from_lng: NDArray[np.float64]
    to_lat: NDArray[np.float64]
    to_lng: NDArray[np.float64]
    street: NDArray[np.object_]
    distance_m: NDArray[np.float64]
    duration_s: NDArray[np.float64]
    bearing_deg: NDArray[np.float64]


def steps_of_roads(roads: RoadColumns, final: str = "arrive") -> list[Step]:
    """``build_steps`` on columns, a whole leg at once (a route of a few hundred roads is
    described in a few tens of microseconds, where a loop over them took a few hundred)."""
    n = len(roads.distance_m)
    if not n:
        return []
    street = roads.street
    angle = (roads.bearing_deg[1:] - roads.bearing_deg[:-1]) % 360.0
    angle = np.where(angle > 180.0, angle - 360.0, angle)
    changed = street[1:] != street[:-1]
    unnamed = np.array([name is None for name in street[1:].tolist()], dtype=bool)
    # A step starts where the street changes, or where an unnamed road turns sharply.
    starts = 1 + np.flatnonzero(changed | (unnamed & (np.abs(angle) >= _UNNAMED_TURN_DEG)))
    bounds = np.concatenate([[0], starts])
    distances = np.add.reduceat(roads.distance_m, bounds).tolist()
    durations = np.add.reduceat(roads.duration_s, bounds).tolist()
    turns = ["depart"] + [turn_name(a) for a in angle[starts - 1].tolist()]
    steps = [
        Step(turn, name, lat, lng, distance, duration)
        for turn, name, lat, lng, distance, duration in zip(
            turns,
            street[bounds].tolist(),
            roads.from_lat[bounds].tolist(),
            roads.from_lng[bounds].tolist(),
            distances,
            durations,
            strict=True,
        )
    ]
    steps.append(Step(final, None, float(roads.to_lat[-1]), float(roads.to_lng[-1]), 0.0, 0.0))
    return steps
