"""Routes through FalkorDB's CCH index: snapping, legs, geometry and turn-by-turn steps.

A route from -> [via ...] -> to is one CCH query per leg (``db.idx.cch.query``); the query
returns the path's total weight (``time_s``, seconds) and its road ids, and the network held in
memory supplies lengths, names and shape. Durations are the CCH's own weights, so a route's
time is exactly the shortest time on the graph's current weights; distances are those of the
fastest route, in metres. Snapping offsets (point to node) are reported, not added.

Each query also returns the graph's import id: when the region was re-imported since the
network was loaded, the network is reloaded and the route asked again. It returns the roads'
current times too, so that steps follow traffic changes made by any process (the network in
memory keeps the times it was loaded with).
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
from ontheway.roads.network import RoadNetwork, Snap
from ontheway.roads.steps import Segment, Step, build_steps
from ontheway.roads.store import graph_errors, graph_name, read_graph, read_meta
from ontheway.roads.traffic import TrafficChange, plan_write, select_roads, travel_times
from ontheway.roads.weights import write_weights

SAME_POINT_M = 1.0
_LEG_QUERY = """
MATCH (m:RoadMap)
MATCH (a:Intersection {id: $s}), (b:Intersection {id: $t})
CALL db.idx.cch.query({sourceNode: a, targetNode: b, relTypes: ['ROAD'], weightProp: 'time_s'})
YIELD pathWeight, path
RETURN m.import_id, pathWeight, [r IN relationships(path) | r.id],
       [r IN relationships(path) | r.time_s]
"""

# One query for a whole matrix: one round trip, and one connection instead of one per pair.
_MATRIX_QUERY = """
UNWIND $pairs AS pair
MATCH (a:Intersection {id: pair[0]}), (b:Intersection {id: pair[1]})
CALL db.idx.cch.query({sourceNode: a, targetNode: b, relTypes: ['ROAD'], weightProp: 'time_s'})
YIELD pathWeight
RETURN pair[0], pair[1], pathWeight
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


class _Reimported(Exception):
    """The graph changed under the cached network: reload and ask again."""


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

    async def network(self, region: str, *, reload: bool = False) -> RoadNetwork:
        """The region's network, loaded from its graph on first use (or when ``reload``)."""
        lock = self._locks.setdefault(region, asyncio.Lock())
        async with lock:
            cached = self._networks.get(region)
            if cached is not None and not reload:
                return cached
            db = await self._db()
            name = graph_name(region)
            if cached is not None and await read_meta(db, name) == cached.import_id:
                return cached
            loaded = await read_graph(db, name)
            if loaded is None:
                self._networks.pop(region, None)
                raise NoRoadMap(
                    f"no road map has been imported for region {region!r} "
                    f"(run `ontheway roads import --region {region} FILE`)"
                )
            network = await asyncio.to_thread(RoadNetwork, *loaded)
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
            snaps = [self._snap(network, p, label) for p, label in zip(points, names, strict=True)]
            try:
                legs = await asyncio.gather(
                    *(
                        self.leg(network, region, a, b, last=i == len(snaps) - 2)
                        for i, (a, b) in enumerate(pairwise(snaps))
                    )
                )
            except _Reimported:
                continue
            return Route(region, list(legs), snaps)
        raise DependencyUnavailable(f"the road graph of {region!r} keeps changing; try again")

    async def matrix(
        self,
        origins: list[LatLng],
        destinations: list[LatLng],
        *,
        skip_off_map: bool = False,
    ) -> list[list[float | None]]:
        """Travel times in seconds from each origin (rows) to each destination (columns);
        None where no route joins them. All points must lie in one region; with
        ``skip_off_map`` an origin off the map (or outside the destinations' region) gets a
        row of None instead of ``OutsideRoadMap``."""
        if not origins or not destinations:
            return [[] for _ in origins]
        first = destinations[0] if skip_off_map else origins[0]
        region = self._catalog.region_for(first.lat, first.lng)
        o_lat, o_lng = _arrays(origins)
        d_lat, d_lng = _arrays(destinations)
        # Region boxes do not overlap (the catalog refuses it): inside the box is the region.
        for label, lat, lng in (("destinations", d_lat, d_lng), ("origins", o_lat, o_lng)):
            if not (skip_off_map and label == "origins") and not _inside(region, lat, lng).all():
                raise OutsideRoadMap(f"all {label} must lie in {region.region!r}", field=label)
        network = await self.network(region.region)
        cols = network.snap_many(d_lat, d_lng)
        rows = np.where(_inside(region, o_lat, o_lng), network.snap_many(o_lat, o_lng), -1)
        for label, nodes, points in (
            ("destinations", cols, destinations),
            ("origins", rows, origins),
        ):
            if (nodes < 0).any() and not (skip_off_map and label == "origins"):
                point = points[int(np.argmax(nodes < 0))]
                raise OutsideRoadMap(
                    f"{label} ({point.lat}, {point.lng}) is not near any road of the map",
                    field=label,
                )
        row_nodes, col_nodes = rows.tolist(), cols.tolist()
        pairs = sorted({(a, b) for a in set(row_nodes) if a >= 0 for b in set(col_nodes) if a != b})
        found: dict[tuple[int, int], float] = {}
        if pairs:
            graph = (await self._db()).select_graph(graph_name(region.region))
            with graph_errors():
                reply = await graph.ro_query(_MATRIX_QUERY, {"pairs": [list(p) for p in pairs]})
            found = {(int(a), int(b)): float(w) for a, b, w in reply.result_set}
        return [
            [None if a < 0 else 0.0 if a == b else found.get((a, b)) for b in col_nodes]
            for a in row_nodes
        ]

    async def many_to_many(
        self, origins: list[LatLng], destinations: list[LatLng]
    ) -> list[list[float | None]]:
        """The travel-time matrix (seconds) from every origin to every destination."""
        return await self.matrix(origins, destinations)

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
                network.graph.time_s[ids] = travel_times(network.graph.base_time_s[ids], factors)
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
    def _snap(network: RoadNetwork, point: LatLng, label: str) -> Snap:
        snap = network.snap(point.lat, point.lng)
        if snap is None:
            raise OutsideRoadMap(
                f"{label} ({point.lat}, {point.lng}) is not near any road of the map",
                field=label,
            )
        return snap

    async def leg(
        self, network: RoadNetwork, region: str, a: Snap, b: Snap, *, last: bool = True
    ) -> Leg:
        """The fastest way from node to node; ``Unreachable`` when there is none."""
        final = "arrive" if last else "waypoint"
        if a.node == b.node:
            return _describe(network, Leg(a, b, 0.0, []), final)
        db = await self._db()
        graph = db.select_graph(graph_name(region))
        with graph_errors():
            rows = (await graph.ro_query(_LEG_QUERY, {"s": a.node, "t": b.node})).result_set
        if not rows:
            if await read_meta(db, graph_name(region)) != network.import_id:
                raise _Reimported
            raise Unreachable(f"no route leads from ({a.lat}, {a.lng}) to ({b.lat}, {b.lng})")
        import_id, weight, road_ids, road_times = rows[0]
        if import_id != network.import_id or not network.has_roads(road_ids):
            raise _Reimported
        leg = Leg(a, b, float(weight), [int(r) for r in road_ids], [float(t) for t in road_times])
        return _describe(network, leg, final)


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
    columns = zip(
        g.lat[src].tolist(),
        g.lng[src].tolist(),
        g.lat[dst].tolist(),
        g.lng[dst].tolist(),
        [g.name[r] for r in leg.road_ids],
        g.distance_m[ids].tolist(),
        leg.road_times_s,
        strict=True,
    )
    segments = [Segment(*row) for row in columns]
    geometry = [[leg.start.lat, leg.start.lng]] + [[s.to_lat, s.to_lng] for s in segments]
    return Leg(
        leg.start,
        leg.end,
        leg.duration_s,
        leg.road_ids,
        leg.road_times_s,
        distance_m=float(g.distance_m[ids].sum()),
        geometry=geometry,
        steps=build_steps(segments, final),
    )
