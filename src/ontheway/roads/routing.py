"""Routes through FalkorDB's CCH index: snapping, legs, geometry and turn-by-turn steps.

A route from -> [via ...] -> to is one CCH query per leg (``db.idx.cch.query``); the query
returns the path's total weight (``time_s``, seconds) and its road ids, and the network held in
memory supplies lengths, names and shape. Durations are the CCH's own weights, so a route's
time is exactly the shortest time on the graph's current weights; distances are those of the
fastest route, in metres. Snapping offsets (point to node) are reported, not added.

Each query also returns the graph's import id: when the region was re-imported since the
network was loaded, the network is reloaded and the route asked again. The query returns the
path's nodes; the roads between them, their lengths, names and current times come from the
network in memory. The query also returns the graph's count of traffic writes, and when
another process changed the traffic since the network's weights were read, the roads under
traffic are read again first, so steps follow a change made by any process.

A matrix is searched in the process (``roads.search``) or asked of the CCH pair by pair,
whichever should cost less (``roads.matrix``). In the process, one small query first reads
the graph's import id and its count of traffic writes; when another process changed the
weights since, the roads under traffic are read again (one query) before the search, so a
matrix is always on the graph's current weights, like a route.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ontheway.connections import GraphStore
from ontheway.errors import DependencyUnavailable
from ontheway.regions import Catalog, LatLng, Region
from ontheway.roads.errors import NoRoadMap, OutsideRoadMap, SamePoint, Unreachable
from ontheway.roads.geo import haversine_m
from ontheway.roads.matrix import MatrixTimes, Reimported, refresh_weights
from ontheway.roads.network import RoadNetwork, Snap
from ontheway.roads.steps import RoadColumns, Step, steps_of_roads
from ontheway.roads.store import (
    graph_name,
    read_graph,
    read_meta,
    read_rows,
    read_version,
)
from ontheway.roads.traffic import TrafficChange, plan_write, select_roads, travel_times
from ontheway.roads.weights import write_weights

SAME_POINT_M = 1.0
# Node ids are FalkorDB's own (``roads.store`` says why): an id seek finds the ends.
# The path's nodes, not its roads: projecting relationships costs the server about 0.3 ms
# more per route (Mexico City, p50 1.42 against 1.78 ms from Python). The roads between them
# come from the network in memory, on weights the count of traffic writes says are current.
_LEG_QUERY = """
MATCH (a), (b) WHERE id(a) = $s AND id(b) = $t
CALL db.idx.cch.query({sourceNode: a, targetNode: b, relTypes: ['ROAD'], weightProp: 'time_s'})
YIELD pathWeight, path
MATCH (m:RoadMap)
RETURN m.import_id, coalesce(m.weights, 0), pathWeight, [n IN nodes(path) | id(n)]
"""


@dataclass(frozen=True)
class TrafficResult:
    """What a traffic update did (``written`` counts the padding; see ``roads.traffic``)."""

    region: str
    changed_roads: int
    written_roads: int
    full_rebuild: bool
    took_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "changed_roads": self.changed_roads,
            "written_roads": self.written_roads,
            "index": "rebuilt" if self.full_rebuild else "re-customised",
            "took_ms": round(self.took_s * 1000, 1),
        }


@dataclass(frozen=True)
class Leg:
    """The fastest way between two consecutive stops."""

    start: Snap
    end: Snap
    duration_s: float
    road_ids: list[int]
    road_times_s: list[float] = field(default_factory=list)
    distance_m: float = 0.0
    geometry: list[list[float]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "distance_m": round(self.distance_m, 1),
            "duration_s": round(self.duration_s, 1),
            "start": {"lat": self.start.lat, "lng": self.start.lng},
            "end": {"lat": self.end.lat, "lng": self.end.lng},
        }


@dataclass(frozen=True)
class Route:
    """A route through every stop in order."""

    region: str
    legs: list[Leg]
    snapped: list[Snap]

    @property
    def distance_m(self) -> float:
        return sum(leg.distance_m for leg in self.legs)

    @property
    def duration_s(self) -> float:
        return sum(leg.duration_s for leg in self.legs)

    @property
    def geometry(self) -> list[list[float]]:
        points: list[list[float]] = []
        for leg in self.legs:
            points.extend(leg.geometry[1:] if points else leg.geometry)
        return points

    @property
    def steps(self) -> list[Step]:
        return [step for leg in self.legs for step in leg.steps]

    def to_dict(self) -> dict[str, Any]:
        """The body of ``GET /api/route``."""
        return {
            "region": self.region,
            "distance_m": round(self.distance_m, 1),
            "duration_s": round(self.duration_s, 1),
            "legs": [leg.to_dict() for leg in self.legs],
            "geometry": self.geometry,
            "steps": [step.to_dict() for step in self.steps],
            "snapped": [
                {"lat": s.lat, "lng": s.lng, "distance_m": round(s.distance_m, 1)}
                for s in self.snapped
            ],
        }


class RoadService:
    """Routing over the regions' road graphs, with each region's network cached in memory."""

    def __init__(self, graphs: GraphStore | None, catalog: Catalog) -> None:
        self._graphs = graphs
        self._catalog = catalog
        self._networks: dict[str, RoadNetwork] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._matrices = MatrixTimes()

    async def network(self, region: str, *, reload: bool = False) -> RoadNetwork:
        """The region's network, loaded from its graph on first use (or when ``reload``)."""
        lock = self._locks.setdefault(region, asyncio.Lock())
        async with lock:
            cached = self._networks.get(region)
            if cached is not None and not reload:
                return cached
            db = await self._db()
            name = graph_name(region)
            version = await read_version(db, name)
            if cached is not None and version is not None and version[0] == cached.import_id:
                return cached
            # The count of traffic writes is read before the weights: a write landing
            # meanwhile leaves it behind them, and the next matrix reads the weights again.
            loaded = await read_graph(db, name)
            if loaded is None or version is None:
                self._networks.pop(region, None)
                raise NoRoadMap(
                    f"no road map has been imported for region {region!r} "
                    f"(run `ontheway roads import --region {region} FILE`)"
                )
            weights = version[1] if version[0] == loaded[0] else -1
            network = await asyncio.to_thread(RoadNetwork, *loaded, weights)
            self._networks[region] = network
            return network

    async def route(self, points: list[LatLng]) -> Route:
        """The fastest route through ``points`` in order (from, via..., to)."""
        if len(points) < 2:
            raise ValueError("a route needs at least two points")
        region = self._catalog.region_for(points[0].lat, points[0].lng).region
        names = ["from", *["via"] * (len(points) - 2), "to"]
        for i, (point, label) in enumerate(zip(points, names, strict=True)):
            if i and self._catalog.region_for(point.lat, point.lng).region != region:
                raise OutsideRoadMap(f"{label} lies in another region than from", field=label)
            if i and haversine_m(*_xy(points[i - 1]), *_xy(point)) < SAME_POINT_M:
                raise SamePoint(f"{label} is the same point as the stop before it", field=label)
        for attempt in range(2):
            network = await self.network(region, reload=attempt > 0)
            snaps = self._snap(network, points, names)
            try:
                if len(snaps) == 2:  # one leg: no task to schedule (a turn of the loop less)
                    legs = [await self.leg(network, region, *snaps)]
                else:
                    legs = await asyncio.gather(
                        *(
                            self.leg(network, region, a, b, last=i == len(snaps) - 2)
                            for i, (a, b) in enumerate(pairwise(snaps))
                        )
                    )
            except Reimported:
                continue
            return Route(region, list(legs), snaps)
        raise DependencyUnavailable(f"the road graph of {region!r} keeps changing; try again")

    async def matrix(
        self,
        origins: list[LatLng],
        destinations: list[LatLng],
        *,
        skip_off_map: bool = False,
        free_flow: bool = False,
    ) -> list[list[float | None]]:
        """Travel times in seconds from each origin (rows) to each destination (columns);
        None where no route joins them. All points must lie in one region; with
        ``skip_off_map`` an origin off the map (or outside the destinations' region) gets a
        row of None instead of ``OutsideRoadMap``. With ``free_flow``, the times every road
        has without traffic (searched in the process: they only change with the map)."""
        if not origins or not destinations:
            return [[] for _ in origins]
        first = destinations[0] if skip_off_map else origins[0]
        region = self._catalog.region_for(first.lat, first.lng)
        # Region boxes do not overlap (the catalog refuses it): inside the box is the region.
        for label, points in (("destinations", destinations), ("origins", origins)):
            checked = not (skip_off_map and label == "origins")
            if checked and not _inside(region, *_arrays(points)).all():
                raise OutsideRoadMap(f"all {label} must lie in {region.region!r}", field=label)
        for attempt in range(2):
            network = await self.network(region.region, reload=attempt > 0)
            row_nodes, col_nodes = _snap_ends(
                network, region, origins, destinations, skip_off_map=skip_off_map
            )
            sources = [a for a in row_nodes if a >= 0]
            db = await self._db()
            try:
                if free_flow:
                    found = network.free_flow_times(sources, col_nodes)
                else:
                    found = await self._matrices.times(
                        db, network, region.region, sources, col_nodes
                    )
            except Reimported:
                continue
            return [[None if a < 0 else found.get((a, b)) for b in col_nodes] for a in row_nodes]
        raise DependencyUnavailable(
            f"the road graph of {region.region!r} keeps changing; try again"
        )

    async def many_to_many(
        self, origins: list[LatLng], destinations: list[LatLng], *, free_flow: bool = False
    ) -> list[list[float | None]]:
        """The travel-time matrix (seconds) from every origin to every destination."""
        return await self.matrix(origins, destinations, free_flow=free_flow)

    async def free_flow_matrix(
        self,
        origins: list[LatLng],
        destinations: list[LatLng],
        current: list[list[float | None]],
    ) -> list[list[float | None]]:
        """The matrix of the same points at free flow, given ``current``, the one just asked
        on the roads' current times: ``current`` itself when no road of the region is under
        traffic (no second search), else a search on the free-flow times."""
        if origins:
            region = self._catalog.region_for(origins[0].lat, origins[0].lng).region
            if not (await self.network(region)).under_traffic:
                return current
        return await self.matrix(origins, destinations, free_flow=True)

    async def update_traffic(self, region: str, change: TrafficChange) -> TrafficResult:
        """Set the traffic factors ``change`` names in the region's graph; the next route
        reflects them. ``InvalidTraffic`` (naming the field) changes nothing."""
        for attempt in range(2):
            network = await self.network(region, reload=attempt > 0)
            chosen = select_roads(network.graph, change)
            plan = plan_write(network.graph, chosen)
            started = time.perf_counter()
            done = await write_weights(
                await self._db(), graph_name(region), network.import_id, plan
            )
            if done.applied:
                ids = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
                factors = np.fromiter(chosen.values(), dtype=np.float64, count=len(chosen))
                # Current only if no other process wrote since this one read the weights.
                consecutive = done.version == network.weights_version + 1
                network.set_times(
                    ids,
                    travel_times(network.graph.base_time_s[ids], factors),
                    done.version if consecutive else None,
                )
                return TrafficResult(
                    region,
                    done.changed,
                    done.written,
                    done.full_rebuild,
                    time.perf_counter() - started,
                )
        raise DependencyUnavailable(f"the road graph of {region!r} keeps changing; try again")

    async def graph_db(self) -> Any:
        """The FalkorDB client (503 when FalkorDB is not configured or down)."""
        return await self._db()

    async def _db(self) -> Any:
        if self._graphs is None:
            raise DependencyUnavailable("FalkorDB is not configured")
        return await self._graphs.db()

    @staticmethod
    def _snap(network: RoadNetwork, points: list[LatLng], labels: list[str]) -> list[Snap]:
        found = network.snap_points([p.lat for p in points], [p.lng for p in points])
        for snap, point, label in zip(found, points, labels, strict=True):
            if snap is None:
                raise OutsideRoadMap(
                    f"{label} ({point.lat}, {point.lng}) is not near any road of the map",
                    field=label,
                )
        return [snap for snap in found if snap is not None]

    async def leg(
        self, network: RoadNetwork, region: str, a: Snap, b: Snap, *, last: bool = True
    ) -> Leg:
        """The fastest way from node to node; ``Unreachable`` when there is none."""
        final = "arrive" if last else "waypoint"
        if a.node == b.node:
            return _describe(network, Leg(a, b, 0.0, []), final)
        db = await self._db()
        rows = await read_rows(db, graph_name(region), _LEG_QUERY, {"s": a.node, "t": b.node})
        if not rows:
            if await read_meta(db, graph_name(region)) != network.import_id:
                raise Reimported
            raise Unreachable(f"no route leads from ({a.lat}, {a.lng}) to ({b.lat}, {b.lng})")
        import_id, version, weight, node_ids = rows[0]
        if import_id != network.import_id or not network.has_nodes(node_ids):
            raise Reimported
        if version != network.weights_version:  # another process changed the traffic
            await refresh_weights(db, network, graph_name(region), version)
        road_ids = network.roads_along(node_ids)
        road_times = network.graph.time_s[road_ids].tolist()
        return _describe(network, Leg(a, b, weight, road_ids.tolist(), road_times), final)


def _snap_ends(
    network: RoadNetwork,
    region: Region,
    origins: list[LatLng],
    destinations: list[LatLng],
    *,
    skip_off_map: bool,
) -> tuple[list[int], list[int]]:
    """The nodes of a matrix's origins and destinations (-1: an origin off the map, with
    ``skip_off_map``); ``OutsideRoadMap`` for any other point off the map."""
    o_lat, o_lng = _arrays(origins)
    d_lat, d_lng = _arrays(destinations)
    # One search of the tree for both ends instead of one per side.
    both = network.snap_many(np.concatenate([d_lat, o_lat]), np.concatenate([d_lng, o_lng]))
    cols = both[: len(destinations)]
    rows = np.where(_inside(region, o_lat, o_lng), both[len(destinations) :], -1)
    for label, nodes, points in (("destinations", cols, destinations), ("origins", rows, origins)):
        if (nodes < 0).any() and not (skip_off_map and label == "origins"):
            point = points[int(np.argmax(nodes < 0))]
            raise OutsideRoadMap(
                f"{label} ({point.lat}, {point.lng}) is not near any road of the map",
                field=label,
            )
    return rows.tolist(), cols.tolist()


def _arrays(points: list[LatLng]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lat = np.fromiter((p.lat for p in points), dtype=np.float64, count=len(points))
    lng = np.fromiter((p.lng for p in points), dtype=np.float64, count=len(points))
    return lat, lng


def _inside(
    region: Region, lat: NDArray[np.float64], lng: NDArray[np.float64]
) -> NDArray[np.bool_]:
    box = region.bbox
    inside: NDArray[np.bool_] = (
        (lat >= box.min_lat) & (lat <= box.max_lat) & (lng >= box.min_lng) & (lng <= box.max_lng)
    )
    return inside


def _xy(point: LatLng) -> tuple[float, float]:
    return point.lat, point.lng


def _describe(network: RoadNetwork, leg: Leg, final: str) -> Leg:
    """Fill in the leg's distance, geometry and steps from the network."""
    g = network.graph
    ids = np.array(leg.road_ids, dtype=np.int64)
    src, dst = g.src[ids], g.dst[ids]
    # Whole columns at once: indexing numpy arrays one element at a time costs more than
    # the CCH query on long routes.
    roads = RoadColumns(
        from_lat=g.lat[src],
        from_lng=g.lng[src],
        to_lat=g.lat[dst],
        to_lng=g.lng[dst],
        street=network.road_names[ids],
        distance_m=g.distance_m[ids],
        duration_s=np.array(leg.road_times_s, dtype=np.float64),
        bearing_deg=network.road_bearing_deg[ids],
    )
    geometry = [[leg.start.lat, leg.start.lng]]
    geometry += np.column_stack([roads.to_lat, roads.to_lng]).tolist()
    return Leg(
        leg.start,
        leg.end,
        leg.duration_s,
        leg.road_ids,
        leg.road_times_s,
        distance_m=float(roads.distance_m.sum()),
        geometry=geometry,
        steps=steps_of_roads(roads, final),
    )
