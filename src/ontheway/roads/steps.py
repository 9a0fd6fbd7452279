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
    first = segments[0]
    steps = [Step("depart", first.street, first.from_lat, first.from_lng, 0.0, 0.0)]
    previous: Segment | None = None
    for seg in segments:
        # Bearings only where a step may start: a new street, or an unnamed road.
        if previous is not None and (seg.street != previous.street or seg.street is None):
            angle = turn_angle(previous.bearing, seg.bearing)
            if seg.street != previous.street or abs(angle) >= _UNNAMED_TURN_DEG:
                steps.append(Step(turn_name(angle), seg.street, seg.from_lat, seg.from_lng, 0, 0))
        steps[-1].distance_m += seg.distance_m
        steps[-1].duration_s += seg.duration_s
        previous = seg
    last = segments[-1]
    steps.append(Step(final, None, last.to_lat, last.to_lng, 0.0, 0.0))
    return steps
