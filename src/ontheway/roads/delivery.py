"""Delivery zones in FalkorDB: building them from the restaurants of a region, and the one
lookup that answers "can this restaurant deliver here?".

One graph per region, ``zones:{<region>}``, apart from the road graph: a re-import or a
traffic update of the roads leaves the zones answering until they are rebuilt, and a rebuild
of the zones never touches the graph that routes use.

    (:Restaurant {id, lat, lng, radius_m, cells})
      -[:CAN_DELIVER_TO {travel_time_s, distance_m}]->(:Zone {h3})

A rebuild of a whole region writes a staging graph and swaps it in with one ``RENAME`` (as the
road import does); a rebuild of some restaurants replaces theirs in place. Restaurants come
from the region's PostgreSQL shard (read only).
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
from ontheway.roads.store import drop_graph, graph_errors, graph_exists
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
SET r.lat = row[1], r.lng = row[2], r.radius_m = row[3], r.cells = row[4]
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
_CAN_DELIVER = """
MATCH (r:Restaurant {id: $id})
OPTIONAL MATCH (r)-[e:CAN_DELIVER_TO]->(:Zone {h3: $cell})
RETURN e.travel_time_s, e.distance_m
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
    network = await roads.network(region)
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
            if replace_all or not await graph_exists(db, name):
                await g.query("CREATE INDEX FOR (r:Restaurant) ON (r.id)")
                await g.query("CREATE INDEX FOR (z:Zone) ON (z.h3)")
            rows = [
                [
                    r["restaurant_id"],
                    float(r["lat"]),
                    float(r["lng"]),
                    int(r["delivery_radius_m"]),
                    len(found[r["restaurant_id"]] or []),
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
    name = graph or zones_graph(region)
    rows: list[Any] = []
    if await graph_exists(db, name):
        with graph_errors():
            reply = await db.select_graph(name).ro_query(
                _CAN_DELIVER, {"id": restaurant_id, "cell": cell_of(lat, lng)}
            )
        rows = reply.result_set
    if not rows:
        raise NoDeliveryZone(
            f"no delivery zone for restaurant {restaurant_id!r} (unknown, or zones not built: "
            f"run `ontheway roads zones --region {region}`)",
            field="restaurant_id",
        )
    travel_s, road_m = rows[0]
    if travel_s is None:
        return Delivery(False, None, None)
    return Delivery(True, float(travel_s), float(road_m))
