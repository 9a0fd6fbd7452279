"""The roads area's errors, all in the one hierarchy of ``ontheway.errors``.

InvalidInput (422)
├── BadMapFile           the file is missing, empty, not OSM, truncated, or has no car roads
├── OutsideRoadMap       a point lies too far from every routable road of its region
├── SamePoint            a route from a point to itself
└── Unreachable          no route joins two points (a one-way dead end)
NotFound (404)
└── NoRoadMap            no road map has been imported for the region
"""

from __future__ import annotations

from ontheway.errors import InvalidInput, NotFound


class BadMapFile(InvalidInput):
    """An OpenStreetMap file that cannot be imported; the message says why."""

    code = "bad_map_file"

    def __init__(self, message: str, *, field: str | None = "file", code: str | None = None):
        super().__init__(message, field=field, code=code)


class OutsideRoadMap(InvalidInput):
    """A point farther than the snapping limit from every routable road."""

    code = "outside_road_map"


class SamePoint(InvalidInput):
    """A route whose start and end are the same point."""

    code = "same_point"


class Unreachable(InvalidInput):
    """No route joins the two points."""

    code = "unreachable"


class NoRoadMap(NotFound):
    """The region has no imported road map."""

    code = "no_road_map"

    def __init__(self, message: str, *, field: str | None = "region", code: str | None = None):
        super().__init__(message, field=field, code=code)
