"""OpenStreetMap tag rules for cars: which ways are roads, their direction and their speed.

Pure functions over a ``Mapping[str, str]`` of tags. Speeds are in km/h. The rules follow the
OSM wiki: a bare ``maxspeed`` number is km/h, ``mph`` and ``knots`` are converted, and a way
without a usable ``maxspeed`` drives at its road class's speed below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

KPH_PER_MPH = 1.609344
KPH_PER_KNOT = 1.852

# Typical urban driving speeds by class (km/h), used when a way has no usable maxspeed.
CLASS_SPEEDS_KPH: dict[str, float] = {
    "motorway": 90.0,
    "motorway_link": 50.0,
    "trunk": 70.0,
    "trunk_link": 45.0,
    "primary": 50.0,
    "primary_link": 40.0,
    "secondary": 45.0,
    "secondary_link": 35.0,
    "tertiary": 40.0,
    "tertiary_link": 30.0,
    "unclassified": 30.0,
    "residential": 25.0,
    "living_street": 10.0,
    "service": 15.0,
}
CAR_HIGHWAYS = frozenset(CLASS_SPEEDS_KPH)

# maxspeed words that carry a speed of their own (km/h).
_WORD_SPEEDS_KPH = {"walk": 6.0, "living_street": 10.0}
_NO_ACCESS = frozenset({"no", "private", "agricultural", "forestry", "emergency", "delivery"})
_YES_ACCESS = frozenset({"yes", "designated", "permissive", "destination"})
_ONEWAY_YES = frozenset({"yes", "true", "1"})
_ONEWAY_REVERSE = frozenset({"-1", "reverse"})
_ONEWAY_NO = frozenset({"no", "false", "0"})
_IMPLIED_ONEWAY_CLASSES = frozenset({"motorway", "motorway_link"})
_IMPLIED_ONEWAY_JUNCTIONS = frozenset({"roundabout", "circular"})
_MAXSPEED = re.compile(
    r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>km/h|kmh|kph|mph|knots)?\s*$", re.IGNORECASE
)
MIN_SPEED_KPH = 1.0
MAX_SPEED_KPH = 200.0


@dataclass(frozen=True)
class Direction:
    """Which ways a road may be driven: along its node order, against it, or both."""

    forward: bool
    backward: bool


def is_car_road(tags: Mapping[str, str]) -> bool:
    """Whether a way is a road that cars may drive on."""
    if tags.get("highway") not in CAR_HIGHWAYS or tags.get("area") == "yes":
        return False
    for key in ("motorcar", "motor_vehicle"):
        value = tags.get(key)
        if value in _YES_ACCESS:
            return True
        if value in _NO_ACCESS:
            return False
    return tags.get("access") not in _NO_ACCESS


def direction(tags: Mapping[str, str]) -> Direction | None:
    """The directions a car may drive the way in; None for reversible or unknown ``oneway``."""
    oneway = (tags.get("oneway") or "").strip().lower()
    if oneway in _ONEWAY_YES:
        return Direction(forward=True, backward=False)
    if oneway in _ONEWAY_REVERSE:
        return Direction(forward=False, backward=True)
    if oneway in _ONEWAY_NO:
        return Direction(forward=True, backward=True)
    if oneway in ("reversible", "alternating"):
        return None  # direction changes with the time of day: no fixed route may use it
    if (
        tags.get("highway") in _IMPLIED_ONEWAY_CLASSES
        or tags.get("junction") in _IMPLIED_ONEWAY_JUNCTIONS
    ):
        return Direction(forward=True, backward=False)
    return Direction(forward=True, backward=True)


def parse_maxspeed(value: str | None) -> float | None:
    """A ``maxspeed`` value in km/h, or None when it gives no usable number.

    A bare number is km/h; ``mph`` and ``knots`` are converted; of several values separated
    by ``;`` the first is taken; zero, negative and absurd (> 200 km/h) values are ignored.
    """
    if value is None:
        return None
    first = value.split(";")[0].strip().lower()
    if first in _WORD_SPEEDS_KPH:
        return _WORD_SPEEDS_KPH[first]
    match = _MAXSPEED.match(first)
    if match is None:
        return None  # "none", "signals", "RU:urban", ...: fall back to the class speed
    speed = float(match["value"])
    unit = (match["unit"] or "km/h").lower()
    if unit == "mph":
        speed *= KPH_PER_MPH
    elif unit == "knots":
        speed *= KPH_PER_KNOT
    if not MIN_SPEED_KPH <= speed <= MAX_SPEED_KPH:
        return None
    return speed


def speeds_kph(tags: Mapping[str, str]) -> tuple[float, float]:
    """The speed (km/h) along and against the way: ``maxspeed[:forward|:backward]`` or the
    road class's speed."""
    base = parse_maxspeed(tags.get("maxspeed"))
    if base is None:
        base = CLASS_SPEEDS_KPH.get(tags.get("highway", ""), CLASS_SPEEDS_KPH["unclassified"])
    forward = parse_maxspeed(tags.get("maxspeed:forward")) or base
    backward = parse_maxspeed(tags.get("maxspeed:backward")) or base
    return forward, backward


def street_name(tags: Mapping[str, str]) -> str | None:
    """The name a driver sees: ``name``, else ``ref`` (e.g. "I 880"), else None."""
    return tags.get("name") or tags.get("ref") or None
