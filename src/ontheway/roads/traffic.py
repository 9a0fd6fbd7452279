"""Traffic factors: which roads a request names, their new travel times, and how to write them.

A road's travel time is ``time_s = base_time_s * traffic_factor`` (seconds), rounded to the
millisecond like the imported times, so that the weight survives Cypher's text round trip and
routes stay exactly equal to Dijkstra's on the graph's weights. A factor is finite, above 0
and at most ``MAX_FACTOR`` (20: a road twenty times slower than free flow is closed in all
but name); 1 is free flow.

Roads are named by id, by street name (exact, ignoring case) or by area (every road whose
midpoint lies within a circle). Nothing here touches a database.

How the weights are written (see ``plan_write``), from what FalkorDB 4.22 does (measured on the
Mexico City extract, 193,134 roads; MEASURED.md and issue 5): a write to ``ROAD.time_s``
re-customises the CCH index inside the write query. Up to about 12,000 changed roads it takes
an incremental path that holds the graph's lock and slows sharply with size (10 roads 25 ms,
1,000 roads 37-52 s, during which every route waits); from about 13,000 it rebuilds the whole
index instead, in about 0.7 s, while routes keep being answered from the old index. So a
small change (``INCREMENTAL_MAX`` roads) is written as it is, and a larger one is padded with
unchanged roads rewritten to their own weights up to ``FULL_REBUILD_ROADS`` (or 7 % of the
roads, whichever is more: on a synthetic grid of 434,280 roads a write of 13,000 still took the
slow path for minutes, so the threshold grows with the map; 7 % is a margin over the 6.7 % that
switches on Mexico City, not yet checked on a larger map): one query, so one rebuild,
visible to the next route within a second (0.75 s on Mexico City, routes meanwhile waiting at
most about 0.3 s while the writes hold the lock). The alternatives measured worse: a copy
of the graph (``GRAPH.COPY``) with the index rebuilt there and swapped in by ``RENAME`` took
3.1 s (the copy alone 2.4 s, and it forks Redis, which fails while an AOF rewrite runs);
dropping the index, writing and recreating it took 0.6 s but routes fail in between.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ontheway.errors import InvalidInput
from ontheway.roads.geo import haversine_m_arrays
from ontheway.roads.graph import MIN_TIME_S, RoadGraph

MAX_FACTOR = 20.0
INCREMENTAL_MAX = 10
FULL_REBUILD_ROADS = 13_000
FULL_REBUILD_PERCENT = 7


class InvalidTraffic(InvalidInput):
    """A traffic change that names no road, an unknown road or street, or a bad factor."""

    code = "invalid_traffic"


@dataclass(frozen=True)
class RoadFactor:
    """One road (by id) and its new factor."""

    road_id: int
    traffic_factor: float


@dataclass(frozen=True)
class StreetFactor:
    """Every road of a street (by name) and its new factor."""

    name: str
    traffic_factor: float


@dataclass(frozen=True)
class AreaFactor:
    """Every road whose midpoint lies within ``radius_m`` metres of a point, and its factor."""

    lat: float
    lng: float
    radius_m: float
    traffic_factor: float


@dataclass(frozen=True)
class TrafficChange:
    """What one request sets: areas first, then streets, then single roads (the most specific
    choice wins when a road is named twice)."""

    roads: tuple[RoadFactor, ...] = ()
    streets: tuple[StreetFactor, ...] = ()
    areas: tuple[AreaFactor, ...] = ()


def check_factor(value: float, field: str) -> float:
    """The factor, when finite, above 0 and at most ``MAX_FACTOR``; ``InvalidTraffic`` naming
    the field otherwise."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTraffic(f"{field} must be a finite number", field=field)
    if not 0 < value <= MAX_FACTOR:
        raise InvalidTraffic(f"{field} must be above 0 and at most {MAX_FACTOR:g}", field=field)
    return float(value)


def select_roads(graph: RoadGraph, change: TrafficChange) -> dict[int, float]:
    """Road id -> factor for every road the change names; ``InvalidTraffic`` naming the field
    of the first bad entry (nothing is selected then)."""
    chosen: dict[int, float] = {}
    if not (change.roads or change.streets or change.areas):
        raise InvalidTraffic("name at least one road, street or area", field="edges")
    if change.areas:
        mid_lat = (graph.lat[graph.src] + graph.lat[graph.dst]) / 2
        mid_lng = (graph.lng[graph.src] + graph.lng[graph.dst]) / 2
    for i, area in enumerate(change.areas):
        factor = check_factor(area.traffic_factor, f"areas.{i}.traffic_factor")
        if not (math.isfinite(area.radius_m) and area.radius_m > 0):
            raise InvalidTraffic("radius_m must be above 0", field=f"areas.{i}.radius_m")
        near = haversine_m_arrays(
            np.full(len(mid_lat), area.lat), np.full(len(mid_lat), area.lng), mid_lat, mid_lng
        )
        inside = np.flatnonzero(near <= area.radius_m)
        if not len(inside):
            raise InvalidTraffic(
                f"no road of the map lies within {area.radius_m:g} m of ({area.lat}, {area.lng})",
                field=f"areas.{i}",
            )
        chosen.update(dict.fromkeys(inside.tolist(), factor))
    if change.streets:
        by_name: dict[str, list[int]] = {}
        for road_id, name in enumerate(graph.name):
            if name:
                by_name.setdefault(name.casefold(), []).append(road_id)
    for i, street in enumerate(change.streets):
        factor = check_factor(street.traffic_factor, f"streets.{i}.traffic_factor")
        roads = by_name.get(street.name.strip().casefold())
        if not roads:
            raise InvalidTraffic(
                f"no road of the map is named {street.name!r}",
                field=f"streets.{i}.name",
                code="unknown_street",
            )
        chosen.update(dict.fromkeys(roads, factor))
    for i, road in enumerate(change.roads):
        factor = check_factor(road.traffic_factor, f"edges.{i}.traffic_factor")
        if not 0 <= road.road_id < graph.road_count:
            raise InvalidTraffic(
                f"no road {road.road_id} in this map (ids run from 0 to {graph.road_count - 1})",
                field=f"edges.{i}.road_id",
                code="unknown_road",
            )
        chosen[road.road_id] = factor
    return chosen


def travel_times(
    base_time_s: NDArray[np.float64], factors: NDArray[np.float64] | float
) -> NDArray[np.float64]:
    """``base_time_s * factors`` rounded to the millisecond, never under ``MIN_TIME_S``."""
    times: NDArray[np.float64] = np.maximum(base_time_s * factors, MIN_TIME_S).round(3)
    return times


@dataclass(frozen=True)
class WritePlan:
    """The rows of one weight write: ``[road_id, traffic_factor, time_s]`` for each changed
    road, ``[road_id, None, None]`` for each road rewritten to its own weight as padding."""

    rows: list[list[float | None]]
    changed: int
    full_rebuild: bool


def plan_write(graph: RoadGraph, chosen: dict[int, float], seed: int = 0) -> WritePlan:
    """The rows to write for ``chosen``, padded (see the module docstring) so that FalkorDB
    rebuilds its index rather than re-customising it road by road under the graph's lock.
    Padding rows leave a road's weight as the graph holds it (not as this process last saw
    it), so a concurrent change made elsewhere is never undone."""
    ids = np.fromiter(chosen.keys(), dtype=np.int64, count=len(chosen))
    factors = np.fromiter(chosen.values(), dtype=np.float64, count=len(chosen))
    times = travel_times(graph.base_time_s[ids], factors)
    rows: list[list[float | None]] = [
        [int(r), float(f), float(t)] for r, f, t in zip(ids, factors, times, strict=True)
    ]
    target = pad_target(len(ids), graph.road_count)
    if target > len(ids):
        others = np.setdiff1d(np.arange(graph.road_count, dtype=np.int64), ids)
        rng = np.random.default_rng(seed)
        pad = rng.choice(others, size=min(len(others), target - len(ids)), replace=False)
        rows += [[int(r), None, None] for r in np.sort(pad)]
    return WritePlan(rows, len(ids), full_rebuild=len(ids) > INCREMENTAL_MAX)


def pad_target(changed: int, road_count: int) -> int:
    """How many roads one write should touch: as many as changed when few, else enough to make
    FalkorDB rebuild its index (capped at every road of the map)."""
    if changed <= INCREMENTAL_MAX:
        return changed
    return min(
        road_count, max(changed, FULL_REBUILD_ROADS, -(-road_count * FULL_REBUILD_PERCENT // 100))
    )


def as_change(
    roads: Iterable[tuple[int, float]] = (),
    streets: Iterable[tuple[str, float]] = (),
    areas: Iterable[tuple[float, float, float, float]] = (),
) -> TrafficChange:
    """A ``TrafficChange`` from plain tuples (the CLI's options)."""
    return TrafficChange(
        roads=tuple(RoadFactor(r, f) for r, f in roads),
        streets=tuple(StreetFactor(n, f) for n, f in streets),
        areas=tuple(AreaFactor(*a) for a in areas),
    )
