"""Planning the search for the nearest available drivers. Pure: no I/O.

A Redis ``GEOSEARCH ... BYRADIUS r ASC COUNT n`` costs in proportion to the members inside the
circle, not to ``n``: it collects them all before sorting. With 200,000 drivers over a city a
2-mile circle holds thousands (5-90 ms of server time to scan), so the search starts with a
50 m circle and widens it (doubling) only while too few suitable drivers were found. The
rings are planned here and walked by one Lua script, in one round trip; drivers already
judged in a smaller ring are not judged again, and the answer stays nearest first because a
wider ring only adds drivers farther away.

Where drivers stand much denser than that (200,000 on the road nodes of a downtown map, as the
dispatch benchmark puts them), even 50 m holds hundreds and a ring's scan of its geohash cells
costs milliseconds. Given the region's area, the script starts smaller there: at the radius
that would hold about as many drivers as it first asks for were they ``CROWDING`` times as
dense as the region's mean (``sqrt(count * area / (CROWDING * pi * members))``, from the GEO
key's size), doubling up to the planned rings. Searches start where drivers gather, at
restaurants on the road network, not at random points. The answer is the same (the rings only
decide how much is scanned at once); sparser spots just widen sooner.
"""

from __future__ import annotations

# A few dozen drivers even at 20,000 per km2 (200,000 on a 3 km square): cheap to scan and sort.
# Measured on an idle Redis, 200,000 drivers, 10 nearest within 2 miles (server time per call):
# first ring 400 m / 100 m / 50 m: 3 km square 9.9 / 0.74 / 0.32 ms, 11 km square 0.98 / 0.24 /
# 0.16 ms, 30 km square a quarter busy 0.27 / 0.18 / 0.19 ms; one 2-mile circle 5-94 ms.
FIRST_RING_M = 50.0
MIN_RADIUS_M = 1.0
LAST_STEP = 1.5  # a ring less than this much smaller than the radius is skipped for the radius
DENSE_MIN_RING_M = 5.0  # the smallest ring started from on a dense map
# How much denser than the region's mean drivers are taken to stand around a search's point.
# On the dispatch benchmark's map (200,000 drivers on 2,415 road nodes), 10-30 m from drivers
# 9-30 times (median count against the mean's); the search's server time there, first ring
# sized at the mean density against a sixteenth of its area: 594 / 182 µs per call, p99 3.2 /
# 0.9 ms (a throwaway script, 7 Dec 2026; README, Dispatch > Benchmark, has the bench's figures).
CROWDING = 16.0


def plan_rings(radius_m: float, first_ring_m: float = FIRST_RING_M) -> list[float]:
    """The radii (metres) to try, in order: doubling from ``first_ring_m`` up to ``radius_m``
    (a last ring almost as wide as the radius would scan nearly the same circle twice)."""
    if not radius_m >= MIN_RADIUS_M:
        raise ValueError(f"the radius must be at least {MIN_RADIUS_M} m, not {radius_m}")
    rings: list[float] = []
    ring = first_ring_m
    while ring * LAST_STEP < radius_m:
        rings.append(ring)
        ring *= 2
    rings.append(radius_m)
    return rings


def first_count(limit: int) -> int:
    """How many members to ask for at first: enough that a few busy drivers do not force a retry."""
    return max(16, 4 * limit)
