"""The browsing side: restaurants near a point and a restaurant's menu."""

from __future__ import annotations

from typing import Any

from ontheway.errors import NotFound
from ontheway.orders.ids import region_of
from ontheway.orders.models import money_str
from ontheway.orders.store import ShardAccess

METRES_PER_MILE = 1609.344
# Until routes come from the road graph, travel time is straight-line distance at this speed.
_BASELINE_SPEED_MPS = 6.0


class RestaurantQueries:
    """Reads of restaurants and menus."""

    def __init__(self, shards: ShardAccess):
        self.shards = shards

    async def near(self, lat: float, lng: float, radius_mi: float) -> list[dict[str, Any]]:
        """Restaurants within ``radius_mi`` whose delivery zone covers the point, nearest
        first; ``travel_time_s`` is a straight-line estimate."""
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
        return [
            {
                "restaurant_id": r["restaurant_id"],
                "name": r["name"],
                "lat": r["lat"],
                "lng": r["lng"],
                "distance_m": round(r["distance_m"], 1),
                "travel_time_s": round(r["distance_m"] / _BASELINE_SPEED_MPS),
            }
            for r in rows
        ]

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
