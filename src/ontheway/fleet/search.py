"""Planning the search for the nearest available drivers. Pure: no I/O.

A Redis ``GEOSEARCH ... BYRADIUS r ASC COUNT n`` costs in proportion to the members inside the
circle, not to ``n``: it collects them all before sorting. With 200,000 drivers over a city a
2-mile circle holds thousands, so the search starts with a small circle and widens it (doubling)
only while too few suitable drivers were found. The rings are planned here and walked by one
Lua script, in one round trip; drivers already judged in a smaller ring are not judged again,
and the answer stays nearest first because a wider ring only adds drivers farther away.
"""

from __future__ import annotations

FIRST_RING_M = 400.0  # about a quarter of a mile: a few hundred drivers in a dense city
MIN_RADIUS_M = 1.0


def plan_rings(radius_m: float, first_ring_m: float = FIRST_RING_M) -> list[float]:
    """The radii (metres) to try, in order: doubling from ``first_ring_m`` up to ``radius_m``."""
    if not radius_m >= MIN_RADIUS_M:
        raise ValueError(f"the radius must be at least {MIN_RADIUS_M} m, not {radius_m}")
    rings: list[float] = []
    ring = first_ring_m
    while ring < radius_m:
        rings.append(ring)
        ring *= 2
    rings.append(radius_m)
    return rings


def first_count(limit: int) -> int:
    """How many members to ask for at first: enough that a few busy drivers do not force a retry."""
    return max(16, 4 * limit)
