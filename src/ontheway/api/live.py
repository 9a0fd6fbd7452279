"""The dashboard's live snapshot of a region: drivers, active orders and KPIs, once a second.

Drivers come from Redis in two round trips: the region's GEO set (its members, up to
``MAX_DRIVERS``, and its size), then every member's position and status key at once. Orders
and KPIs come from the region's shard in one query each. Several sockets watching the same
region share one snapshot per interval (``LiveSnapshots``), so ten open dashboards cost the
servers what one does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from ontheway.connections import dependency_errors
from ontheway.fleet import keys
from ontheway.orders.lifecycle import ACTIVE
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog
from ontheway.shared_reads import SharedReads

MAX_DRIVERS = 20_000
"""At most this many drivers per snapshot (a page cannot show more usefully); the counts say
how many there are in all."""
MAX_ORDERS = 2000
DECIMALS = 5
ACTIVE_STATUSES = sorted(s.value for s in ACTIVE)

ACTIVE_ORDERS_SQL = """
SELECT order_id, status, driver_id,
       ST_Y(restaurant_location::geometry) AS restaurant_lat,
       ST_X(restaurant_location::geometry) AS restaurant_lng,
       ST_Y(customer_location::geometry) AS customer_lat,
       ST_X(customer_location::geometry) AS customer_lng
FROM orders
WHERE region = %(region)s AND status = ANY(%(active)s)
ORDER BY created_at DESC
LIMIT %(limit)s
"""

# Today starts at midnight in the region's own timezone. Assignment latency: from placement
# to the first DRIVER_ASSIGNED of orders assigned in the last 15 minutes (placed within a day,
# which keeps the scan to the newest partitions).
KPI_SQL = """
WITH day AS (
    SELECT date_trunc('day', now() AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS start
), today AS (
    SELECT status, count(*) AS n FROM orders, day
    WHERE region = %(region)s AND created_at >= day.start
    GROUP BY status
), assigned AS (
    SELECT extract(epoch FROM min(e.ts) - o.created_at) AS latency_s
    FROM orders o
    JOIN order_events e ON e.order_id = o.order_id AND e.order_created_at = o.created_at
    WHERE o.region = %(region)s AND o.created_at >= now() - interval '1 day'
      AND e.order_created_at >= now() - interval '1 day'
      AND e.event_type = 'DRIVER_ASSIGNED' AND e.ts >= now() - interval '15 minutes'
    GROUP BY o.order_id, o.created_at
)
SELECT
    (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) FROM today) AS orders_today,
    (SELECT count(*) FROM orders
      WHERE region = %(region)s AND status = 'delivered'
        AND delivered_at >= now() - interval '1 hour'
        AND created_at >= now() - interval '1 day') AS delivered_last_hour,
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s) FROM assigned)
        AS assignment_p50_s,
    (SELECT count(*) FROM assigned) AS assigned_recently,
    (SELECT count(*) FROM orders
      WHERE region = %(region)s AND status = ANY(%(active)s)) AS active_orders
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def region_drivers(redis: aioredis.Redis, region: str) -> tuple[list[list[Any]], int]:
    """Drivers on the region's map as ``[driver_id, lat, lng, status]`` (status available,
    busy or offline: its status key is gone), and how many the map holds in all."""
    with dependency_errors("Redis"):
        first = redis.pipeline(transaction=False)
        first.zrange(keys.locations(region), 0, MAX_DRIVERS - 1)
        first.zcard(keys.locations(region))
        members, total = await first.execute()
        if not members:
            return [], int(total)
        ids = [_text(m) for m in members]
        second = redis.pipeline(transaction=False)
        second.geopos(keys.locations(region), *ids)
        second.mget([keys.status(region, i) for i in ids])
        positions, statuses = await second.execute()
    drivers: list[list[Any]] = []
    for driver_id, position, status in zip(ids, positions, statuses, strict=True):
        if position is None:  # removed between the two round trips
            continue
        lng, lat = position
        drivers.append(
            [
                driver_id,
                round(float(lat), DECIMALS),
                round(float(lng), DECIMALS),
                _text(status) if status is not None else "offline",
            ]
        )
    return drivers, int(total)


async def active_orders(shards: ShardAccess, region: str) -> list[dict[str, Any]]:
    """The region's active orders (newest first), with the two ends of each delivery."""
    async with shards.connection(region) as conn:
        cur = await conn.execute(
            ACTIVE_ORDERS_SQL, {"region": region, "active": ACTIVE_STATUSES, "limit": MAX_ORDERS}
        )
        rows = await cur.fetchall()
    return [
        {
            "order_id": r["order_id"],
            "status": r["status"],
            "driver_id": r["driver_id"],
            "restaurant": [
                round(r["restaurant_lat"], DECIMALS),
                round(r["restaurant_lng"], DECIMALS),
            ],
            "customer": [round(r["customer_lat"], DECIMALS), round(r["customer_lng"], DECIMALS)],
        }
        for r in rows
    ]


async def order_kpis(shards: ShardAccess, region: str, timezone: str) -> dict[str, Any]:
    """Orders by status today, active orders, deliveries in the last hour, and the recent
    assignment latency (placement to first assignment)."""
    async with shards.connection(region) as conn:
        cur = await conn.execute(
            KPI_SQL, {"region": region, "tz": timezone, "active": ACTIVE_STATUSES}
        )
        row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns its one row
    p50 = row["assignment_p50_s"]
    return {
        "orders_today": dict(row["orders_today"]),
        "delivered_last_hour": int(row["delivered_last_hour"]),
        "assignment_p50_s": round(float(p50), 2) if p50 is not None else None,
        "assigned_last_15_min": int(row["assigned_recently"]),
        "active_orders": int(row["active_orders"]),
    }


async def snapshot(
    redis: aioredis.Redis, shards: ShardAccess, catalog: Catalog, region: str
) -> dict[str, Any]:
    """One live snapshot of the region (a ``{"type": "snapshot"}`` message)."""
    timezone = catalog.get(region).timezone
    (drivers, on_map), orders, kpis = await asyncio.gather(
        region_drivers(redis, region),
        active_orders(shards, region),
        order_kpis(shards, region, timezone),
    )
    counts = Counter(d[3] for d in drivers)
    kpis |= {
        "drivers_available": counts["available"],
        "drivers_busy": counts["busy"],
        "drivers_offline": counts["offline"],
        "drivers_on_map": on_map,
    }
    return {
        "type": "snapshot",
        "region": region,
        "at": round(time.time(), 3),
        "drivers": drivers,
        "drivers_truncated": on_map > len(drivers),
        "orders": orders,
        "kpis": kpis,
    }


class LiveSnapshots:
    """Per region, one snapshot at a time shared by every socket that asks within
    ``max_age_s`` of it being taken."""

    def __init__(
        self, redis: aioredis.Redis, shards: ShardAccess, catalog: Catalog, max_age_s: float
    ) -> None:
        self.redis = redis
        self.shards = shards
        self.catalog = catalog
        self._latest: SharedReads[str, dict[str, Any]] = SharedReads(max_age_s)

    async def get(self, region: str) -> dict[str, Any]:
        """The region's snapshot: a fresh one, or one taken (or being taken) just now."""
        return await self._latest.get(
            region, lambda: snapshot(self.redis, self.shards, self.catalog, region)
        )
