"""What the database knows when an estimate is made (the ETA log in ``order_timings``, kept
by the ETA consumer): a restaurant's recent preparation times and its queue, a driver's
recent pace. Wall durations are turned into world seconds with each row's ``time_scale``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

RECENT_ORDERS = 20  # a restaurant's last orders whose preparation is averaged
RECENT_DELIVERIES = 10  # a driver's last deliveries whose pace is averaged
QUEUE_WINDOW_S = 7200.0  # world seconds: older orders not picked up are not in the queue

_RESTAURANT = """
SELECT (SELECT avg(s) FROM (
          SELECT extract(epoch FROM ready_at - placed_at) * time_scale AS s FROM order_timings
          WHERE restaurant_id = %(r)s AND ready_at IS NOT NULL AND placed_at < %(now)s
          ORDER BY placed_at DESC LIMIT %(n)s) a) AS prep_recent_s,
       (SELECT count(*) FROM (
          SELECT 1 FROM order_timings
          WHERE restaurant_id = %(r)s AND ready_at IS NOT NULL AND placed_at < %(now)s
          ORDER BY placed_at DESC LIMIT %(n)s) b) AS prep_n,
       (SELECT count(*) FROM order_timings
          WHERE restaurant_id = %(r)s AND placed_at > %(since)s AND placed_at < %(now)s
            AND picked_up_at IS NULL AND delivered_at IS NULL AND cancelled_at IS NULL) AS queue,
       (SELECT avg(s) FROM (
          SELECT extract(epoch FROM assigned_at - placed_at) * time_scale AS s
          FROM order_timings WHERE region = %(region)s AND assigned_at IS NOT NULL
            AND placed_at < %(now)s
          ORDER BY placed_at DESC LIMIT %(n)s) c) AS assign_recent_s,
       (SELECT count(*) FILTER (WHERE assigned_at IS NULL) FROM order_timings
          WHERE region = %(region)s AND placed_at > %(since)s AND placed_at < %(now)s
            AND delivered_at IS NULL AND cancelled_at IS NULL) AS region_waiting,
       (SELECT count(*) FILTER (WHERE assigned_at IS NOT NULL) FROM order_timings
          WHERE region = %(region)s AND placed_at > %(since)s AND placed_at < %(now)s
            AND delivered_at IS NULL AND cancelled_at IS NULL) AS region_active
"""

_DRIVER = """
SELECT avg(extract(epoch FROM delivered_at - picked_up_at) * time_scale
           / nullif((eta_legs->>'to_customer_s')::float8
                    + coalesce((eta_legs->>'dropoff_service_s')::float8, 0), 0)) AS pace
FROM (SELECT delivered_at, picked_up_at, time_scale, eta_legs FROM order_timings
      WHERE driver_id = %s AND delivered_at IS NOT NULL AND picked_up_at IS NOT NULL
        AND eta_legs ? 'to_customer_s'
      ORDER BY delivered_at DESC LIMIT %s) d
"""


@dataclass(frozen=True)
class RestaurantFacts:
    """A restaurant's recent kitchen times (world seconds) and its queue; how long its
    region's last orders waited for a driver."""

    prep_recent_s: float | None
    prep_n: int
    queue: int
    assign_recent_s: float | None = None
    region_waiting: int = 0  # the region's orders still waiting for a driver
    region_active: int = 0  # the region's orders with a driver, not delivered yet


async def restaurant_facts(
    conn: Any, region: str, restaurant_id: str, now: datetime, time_scale: float
) -> RestaurantFacts:
    """The restaurant's last orders' preparation, its orders waiting to be picked up, and its
    region's recent time to assign (one round trip)."""
    since = now - timedelta(seconds=QUEUE_WINDOW_S / time_scale)
    cur = await conn.execute(_RESTAURANT, {
        "r": restaurant_id, "region": region, "now": now, "since": since, "n": RECENT_ORDERS,
    })  # fmt: skip
    row = await cur.fetchone()
    return RestaurantFacts(_float(row["prep_recent_s"]), int(row["prep_n"]), int(row["queue"]),
                           _float(row["assign_recent_s"]), int(row["region_waiting"]),
                           int(row["region_active"]))  # fmt: skip


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


async def driver_pace(conn: Any, driver_id: str) -> float | None:
    """The driver's recent actual / baseline time from restaurant to customer (None: no
    delivery of theirs yet on this shard)."""
    cur = await conn.execute(_DRIVER, (driver_id, RECENT_DELIVERIES))
    row = await cur.fetchone()
    return None if row is None or row["pace"] is None else float(row["pace"])
