"""Delivery zones in FalkorDB: building them from the restaurants of a region, and the one
lookup that answers "can this restaurant deliver here?".

One graph per region, ``zones:{<region>}``, apart from the road graph: a re-import or a
traffic update of the roads leaves the zones answering until they are rebuilt, and a rebuild
of the zones never touches the graph that routes use.

    (:Restaurant {id, lat, lng, radius_m, cells, on_map})
      -[:CAN_DELIVER_TO {travel_time_s, distance_m}]->(:Zone {h3})

A rebuild of a whole region writes a staging graph and swaps it in with one ``RENAME`` (as the
road import does); a rebuild of some restaurants replaces theirs in place. Restaurants come
from the region's PostgreSQL shard (read only).

    (:ZonesMeta {import_id, max_travel_s, built_at})   one node: what the zones were built on

Staleness. Whether a cell is in a zone depends on road *distances* (the radius), which traffic
never changes; only the cells' travel times (and membership when a travel-time limit was set)
follow traffic. So after a traffic change the zones are rebuilt in the background
(``refresh_zones``; about a second on the downtown San Francisco map) while placement keeps
answering from the previous ones, which are right about membership unless a limit was set.
After a re-import the road ids and nodes change: ``zone_verdict`` compares the zones'
``import_id`` with the road map's and, when they differ, answers "no zones" so that placement
falls back to the PostGIS radius until the zones are rebuilt (never a refusal from a stale map).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from falkordb.asyncio import FalkorDB

from ontheway.connections import Connections
from ontheway.errors import NotFound
from ontheway.regions import Catalog
from ontheway.roads.routing import RoadService
from ontheway.roads.store import (
    READ_VERSION,
    drop_graph,
    graph_errors,
    graph_exists,
    graph_name,
    read_rows_together,
)
from ontheway.roads.zones import ZoneCell, cell_of, distance_matrix, zone_cells

EDGE_BATCH = 5000
_RESTAURANTS = """
SELECT restaurant_id, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng,
       delivery_radius_m
FROM restaurants WHERE region = %s AND (%s::text[] IS NULL OR restaurant_id = ANY(%s))
ORDER BY restaurant_id
"""
_WRITE_RESTAURANTS = """
UNWIND $rows AS row
MERGE (r:Restaurant {id: row[0]})
SET r.lat = row[1], r.lng = row[2], r.radius_m = row[3], r.cells = row[4], r.on_map = row[5]
"""
_FORGET_RESTAURANTS = """
UNWIND $ids AS id
MATCH (r:Restaurant {id: id})-[e:CAN_DELIVER_TO]->()
DELETE e
"""
_WRITE_EDGES = """
UNWIND $rows AS row
MATCH (r:Restaurant {id: row[0]})
MERGE (z:Zone {h3: row[1]})
CREATE (r)-[:CAN_DELIVER_TO {travel_time_s: row[2], distance_m: row[3]}]->(z)
"""
_WRITE_META = """
MERGE (m:ZonesMeta)
SET m.import_id = $import_id, m.max_travel_s = $max_travel_s, m.built_at = $built_at
"""
_READ_META = "MATCH (m:ZonesMeta) RETURN m.import_id, m.max_travel_s"
_VERDICTS = """
UNWIND $ids AS id
MATCH (r:Restaurant {id: id})
OPTIONAL MATCH (r)-[e:CAN_DELIVER_TO]->(:Zone {h3: $cell})
OPTIONAL MATCH (m:ZonesMeta)
RETURN r.id, r.on_map, e.travel_time_s, e.distance_m, m.import_id
"""


class NoDeliveryZone(NotFound):
    """The restaurant has no computed zone (unknown, or zones never built for its region)."""

    code = "no_delivery_zone"


def zones_graph(region: str) -> str:
    """The FalkorDB graph of a region's delivery zones."""
    return f"zones:{{{region}}}"


@dataclass(frozen=True)
class ZonesSummary:
    """What a rebuild wrote."""

    region: str
    restaurants: int
    off_map: list[str]
    cells: int
    took_s: float


@dataclass(frozen=True)
class Delivery:
    """The answer to "can this restaurant deliver here?"."""

    can_deliver: bool
    travel_time_s: float | None
    distance_m: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "can_deliver": self.can_deliver,
            "travel_time_s": self.travel_time_s,
            "distance_m": self.distance_m,
        }


async def load_restaurants(
    conns: Connections, catalog: Catalog, region: str, ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """The region's restaurants (all, or those of ``ids``): id, lat, lng, delivery radius."""
    async with conns.shard_connection(catalog.shard_for(region)) as conn:
        cur = await conn.execute(_RESTAURANTS, (region, ids, ids))
        return list(await cur.fetchall())


async def rebuild_zones(
    roads: RoadService,
    db: FalkorDB,
    region: str,
    restaurants: list[dict[str, Any]],
    *,
    replace_all: bool = True,
    max_travel_s: float | None = None,
    graph: str | None = None,
) -> ZonesSummary:
    """Compute the zones of ``restaurants`` on the region's road map and store them: the whole
    region's zones replaced (``replace_all``) or only these restaurants'."""
    started = time.perf_counter()
    network = await roads.network(region, reload=True)  # the map as it is now (re-imports)
    name = graph or zones_graph(region)

    def compute() -> dict[str, list[ZoneCell] | None]:
        times, distances = network.graph.matrix(), distance_matrix(network.graph)
        return {
            r["restaurant_id"]: zone_cells(
                network,
                times,
                distances,
                float(r["lat"]),
                float(r["lng"]),
                float(r["delivery_radius_m"]),
                max_travel_s,
            )
            for r in restaurants
        }

    found = await asyncio.to_thread(compute)
    target = f"{name}:build:{uuid.uuid4().hex[:12]}" if replace_all else name
    try:
        with graph_errors():
            g = db.select_graph(target)
            fresh = replace_all or not await graph_exists(db, name)
            if fresh:
                await g.query("CREATE INDEX FOR (r:Restaurant) ON (r.id)")
                await g.query("CREATE INDEX FOR (z:Zone) ON (z.h3)")
            rows = [
                [
                    r["restaurant_id"],
                    float(r["lat"]),
                    float(r["lng"]),
                    int(r["delivery_radius_m"]),
                    len(found[r["restaurant_id"]] or []),
                    found[r["restaurant_id"]] is not None,
                ]
                for r in restaurants
            ]
            if rows:
                await g.query(_WRITE_RESTAURANTS, {"rows": rows})
            if not replace_all:
                await g.query(_FORGET_RESTAURANTS, {"ids": [r[0] for r in rows]})
            edges = [
                [rid, c.h3, c.travel_time_s, c.distance_m]
                for rid, cells in found.items()
                for c in cells or []
            ]
            for lo in range(0, len(edges), EDGE_BATCH):
                await g.query(_WRITE_EDGES, {"rows": edges[lo : lo + EDGE_BATCH]})
            if fresh:
                await g.query(
                    _WRITE_META,
                    {
                        "import_id": network.import_id,
                        "max_travel_s": max_travel_s,
                        "built_at": time.time(),
                    },
                )
            if replace_all:
                await db.connection.rename(target, name)
    finally:
        if replace_all:
            await drop_graph(db, target)
    return ZonesSummary(
        region=region,
        restaurants=len(restaurants),
        off_map=[rid for rid, cells in found.items() if cells is None],
        cells=len(edges),
        took_s=time.perf_counter() - started,
    )


async def can_deliver(
    db: FalkorDB, region: str, restaurant_id: str, lat: float, lng: float, graph: str | None = None
) -> Delivery:
    """Whether the restaurant delivers to (lat, lng): one lookup of the point's H3 cell."""
    row = await _zone_row(db, graph or zones_graph(region), restaurant_id, lat, lng)
    if row is None:
        raise NoDeliveryZone(
            f"no delivery zone for restaurant {restaurant_id!r} (unknown, or zones not built: "
            f"run `ontheway roads zones --region {region}`)",
            field="restaurant_id",
        )
    return _delivery(row[1], row[2])


async def zone_verdict(
    db: FalkorDB,
    region: str,
    restaurant_id: str,
    lat: float,
    lng: float,
    graph: str | None = None,
) -> Delivery | None:
    """The zone's answer for placing an order, or None when there is no zone to trust (no
    zones for the region or for this restaurant, the restaurant off the road map, no road
    map, or zones built on another import than the road map's now). The zone and the road
    map's import id are read in one round trip."""
    found = await zone_answers(db, region, [restaurant_id], lat, lng, graph)
    return None if found is None else found.get(restaurant_id)


async def zone_answers(
    db: FalkorDB,
    region: str,
    restaurant_ids: list[str],
    lat: float,
    lng: float,
    graph: str | None = None,
) -> dict[str, Delivery] | None:
    """``zone_verdict`` for several restaurants of the region at once (one round trip): the
    answer of each one whose zone can be trusted, the others absent; None when the region
    has no zones graph at all."""
    if not restaurant_ids:
        return {}
    roads, zones = await read_rows_together(
        db,
        [
            (graph_name(region), READ_VERSION, {}),
            _verdict_query(graph or zones_graph(region), restaurant_ids, lat, lng),
        ],
    )
    if zones is None:
        return None
    if not roads or not zones:
        return {}
    return {
        restaurant_id: _delivery(travel_s, road_m)
        for restaurant_id, on_map, travel_s, road_m, built_on in zones
        if on_map and built_on == roads[0][0]
    }


def _verdict_query(
    name: str, restaurant_ids: list[str], lat: float, lng: float
) -> tuple[str, str, dict[str, Any]]:
    """The zones graph's query for the restaurants and the point's cell
    (``read_rows_together``): [id, on_map, travel_time_s, distance_m, import_id] each."""
    return name, _VERDICTS, {"ids": restaurant_ids, "cell": cell_of(lat, lng)}


async def _zone_row(
    db: FalkorDB, name: str, restaurant_id: str, lat: float, lng: float
) -> list[Any] | None:
    """[on_map, travel_time_s, distance_m, import_id] for the point's cell, or None when the
    graph does not exist or does not know the restaurant (one round trip)."""
    (rows,) = await read_rows_together(db, [_verdict_query(name, [restaurant_id], lat, lng)])
    return rows[0][1:] if rows else None


def _delivery(travel_s: Any, road_m: Any) -> Delivery:
    if travel_s is None:
        return Delivery(False, None, None)
    return Delivery(True, float(travel_s), float(road_m))


async def refresh_zones(
    roads: RoadService,
    db: FalkorDB,
    conns: Connections,
    catalog: Catalog,
    region: str,
    graph: str | None = None,
) -> ZonesSummary | None:
    """Rebuild a region's zones on the current weights, with the travel limit they were built
    with; None (nothing done) when the region has no zones."""
    name = graph or zones_graph(region)
    if not await graph_exists(db, name):
        return None
    with graph_errors():
        meta = (await db.select_graph(name).ro_query(_READ_META)).result_set
    limit = meta[0][1] if meta else None
    restaurants = await load_restaurants(conns, catalog, region)
    return await rebuild_zones(
        roads,
        db,
        region,
        restaurants,
        max_travel_s=None if limit is None else float(limit),
        graph=graph,
    )
