"""The browsing side: restaurants near a point and a restaurant's menu."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ontheway.errors import DependencyUnavailable, NotFound
from ontheway.orders.ids import region_of
from ontheway.orders.models import money_str
from ontheway.orders.store import ShardAccess
from ontheway.roads.delivery import Delivery, zone_answers, zones_graph
from ontheway.roads.routing import RoadService

METRES_PER_MILE = 1609.344
# Where a restaurant has no delivery zone to trust: straight-line distance at this speed.
_BASELINE_SPEED_MPS = 6.0


class RestaurantQueries:
    """Reads of restaurants and menus."""

    def __init__(
        self,
        shards: ShardAccess,
        roads: RoadService | None = None,
        zones_graph: Callable[[str], str] = zones_graph,
    ):
        self.shards = shards
        self.roads = roads
        self.zones_graph = zones_graph

    async def near(self, lat: float, lng: float, radius_mi: float) -> list[dict[str, Any]]:
        """Restaurants within ``radius_mi`` that deliver to the point, nearest first.

        As placement decides it: where the restaurant's delivery zone (by road, in FalkorDB)
        can be trusted, the zone (``travel_time_s`` is its road time to the point's cell,
        ``travel_time_by`` "road"); elsewhere its radius as the crow flies, which every zone
        lies within (``travel_time_by`` "straight_line")."""
        region = self.shards.catalog.region_for(lat, lng).region
        async with self.shards.connection(region) as conn:
            cur = await conn.execute(
                "WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography AS g)"
                " SELECT restaurant_id, name, ST_Y(location::geometry) AS lat,"
                " ST_X(location::geometry) AS lng, ST_Distance(location, p.g) AS distance_m"
                " FROM restaurants, p WHERE region = %s AND is_open"
                " AND ST_DWithin(location, p.g, LEAST(delivery_radius_m, %s))"
                " ORDER BY distance_m LIMIT 100",
                (lng, lat, region, radius_mi * METRES_PER_MILE),
            )
            rows = await cur.fetchall()
        zones = await self._zones(region, [r["restaurant_id"] for r in rows], lat, lng)
        found = []
        for r in rows:
            zone = zones.get(r["restaurant_id"])
            if zone is not None and not zone.can_deliver:
                continue
            road_s = None if zone is None else zone.travel_time_s
            found.append(
                {
                    "restaurant_id": r["restaurant_id"],
                    "name": r["name"],
                    "lat": r["lat"],
                    "lng": r["lng"],
                    "distance_m": round(r["distance_m"], 1),
                    "travel_time_s": round(
                        r["distance_m"] / _BASELINE_SPEED_MPS if road_s is None else road_s
                    ),
                    "travel_time_by": "straight_line" if road_s is None else "road",
                }
            )
        return found

    async def _zones(
        self, region: str, restaurant_ids: list[str], lat: float, lng: float
    ) -> dict[str, Delivery]:
        """The trusted zones' answers (none: no road service, no map, no zones, or FalkorDB
        unavailable; the radius then decides, as it does for placement)."""
        if self.roads is None or not restaurant_ids:
            return {}
        try:
            db = await self.roads.graph_db()
            found = await zone_answers(
                db, region, restaurant_ids, lat, lng, graph=self.zones_graph(region)
            )
        except (NotFound, DependencyUnavailable):
            return {}
        return found or {}

    async def get(self, restaurant_id: str) -> dict[str, Any]:
        """One restaurant with its menu and stock."""
        region = region_of(restaurant_id, "rest")
        async with self.shards.connection(region) as conn:
            cur = await conn.execute(
                "SELECT restaurant_id, name, region, ST_Y(location::geometry) AS lat,"
                " ST_X(location::geometry) AS lng, delivery_radius_m, prep_time_mean_s,"
                " is_open FROM restaurants WHERE restaurant_id = %s",
                (restaurant_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(
                    f"no restaurant {restaurant_id!r}",
                    field="restaurant_id",
                    code="unknown_restaurant",
                )
            cur = await conn.execute(
                "SELECT m.item_id, m.name, m.price, i.quantity FROM menu_items m"
                " JOIN inventory i USING (item_id) WHERE m.restaurant_id = %s AND m.available"
                " ORDER BY m.name",
                (restaurant_id,),
            )
            items = await cur.fetchall()
        return {
            **row,
            "items": [
                {
                    "item_id": i["item_id"],
                    "name": i["name"],
                    "price": money_str(i["price"]),
                    "available_quantity": i["quantity"],
                }
                for i in items
            ],
        }
