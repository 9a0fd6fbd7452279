"""What the database knows when an estimate is made (the ETA log in ``order_timings``, kept
by the ETA consumer): a restaurant's recent preparation times and its queue, a driver's
recent pace. Wall durations are turned into world seconds with each row's ``time_scale``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ontheway.shared_reads import SharedReads

RECENT_ORDERS = 20  # a restaurant's last orders whose preparation is averaged
RECENT_DELIVERIES = 10  # a driver's last deliveries whose pace is averaged
QUEUE_WINDOW_S = 7200.0  # world seconds: older orders not picked up are not in the queue
REGION_FACTS_TTL_S = 5.0  # world seconds a region's facts are kept (``RegionFacts``)

KITCHEN_COLUMNS = """
       (SELECT avg(s) FROM (
          SELECT extract(epoch FROM ready_at - placed_at) * time_scale AS s FROM order_timings
          WHERE restaurant_id = %(r)s AND ready_at IS NOT NULL AND placed_at < %(now)s
          ORDER BY placed_at DESC LIMIT %(n)s) a) AS prep_recent_s,
       (SELECT count(*) FROM (
          SELECT 1 FROM order_timings
          WHERE restaurant_id = %(r)s AND ready_at IS NOT NULL AND placed_at < %(now)s
          ORDER BY placed_at DESC LIMIT %(n)s) b) AS prep_n,
       (SELECT count(*) FROM order_timings
          WHERE restaurant_id = %(r)s AND placed_at > %(since)s AND placed_at < %(now)s
            AND picked_up_at IS NULL AND delivered_at IS NULL AND cancelled_at IS NULL) AS queue
"""
"""The restaurant's part of the facts, as select-list items (parameters ``r``, ``now``,
``since``, ``n``: ``kitchen_params``), so that a caller can read them beside its own columns."""

_REGION_COLUMNS = """
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

_REGION = "SELECT" + _REGION_COLUMNS

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


def kitchen_params(
    restaurant_id: str, region: str, now: datetime, time_scale: float
) -> dict[str, Any]:
    """The parameters of ``KITCHEN_COLUMNS`` (and of the region's facts)."""
    since = now - timedelta(seconds=QUEUE_WINDOW_S / time_scale)
    return {"r": restaurant_id, "region": region, "now": now, "since": since, "n": RECENT_ORDERS}


def kitchen_from_row(row: dict[str, Any]) -> RestaurantFacts:
    """The restaurant's facts from a row holding ``KITCHEN_COLUMNS`` (no region facts)."""
    return RestaurantFacts(_float(row["prep_recent_s"]), int(row["prep_n"]), int(row["queue"]))


def _with_region(kitchen: RestaurantFacts, row: dict[str, Any]) -> RestaurantFacts:
    return replace(kitchen, assign_recent_s=_float(row["assign_recent_s"]),
                   region_waiting=int(row["region_waiting"]),
                   region_active=int(row["region_active"]))  # fmt: skip


async def kitchen_facts(
    conn: Any, region: str, restaurant_id: str, now: datetime, time_scale: float
) -> RestaurantFacts:
    """The restaurant's last orders' preparation and its orders waiting to be picked up (the
    region's facts: ``RegionFacts``)."""
    cur = await conn.execute(
        "SELECT" + KITCHEN_COLUMNS, kitchen_params(restaurant_id, region, now, time_scale)
    )
    return kitchen_from_row(await cur.fetchone())


class RegionFacts:
    """A region's facts (its recent time to assign, its orders waiting and under way), read
    at most once per ``ttl_s`` world seconds per region and process. They count the region's
    orders of the last two hours: read at every placement and re-estimate, that is a scan
    per estimate that grows with the region's traffic, and they move slowly. One read at a
    time per region; the estimates meanwhile wait for it."""

    def __init__(self, time_scale: float, ttl_s: float = REGION_FACTS_TTL_S) -> None:
        self._time_scale = time_scale
        self._read: SharedReads[str, dict[str, Any]] = SharedReads(ttl_s / time_scale)

    async def add_to(
        self,
        kitchen: RestaurantFacts,
        region: str,
        now: datetime,
        connection: Callable[[str], AbstractAsyncContextManager[Any]],
    ) -> RestaurantFacts:
        """``kitchen`` with the region's facts, read again when older than the TTL."""
        row = await self._read.get(region, lambda: self._fetch(region, now, connection))
        return _with_region(kitchen, row)

    async def _fetch(
        self,
        region: str,
        now: datetime,
        connection: Callable[[str], AbstractAsyncContextManager[Any]],
    ) -> dict[str, Any]:
        async with connection(region) as conn:
            cur = await conn.execute(_REGION, kitchen_params("", region, now, self._time_scale))
            row: dict[str, Any] = await cur.fetchone()
            return row


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


async def driver_pace(conn: Any, driver_id: str) -> float | None:
    """The driver's recent actual / baseline time from restaurant to customer (None: no
    delivery of theirs yet on this shard)."""
    cur = await conn.execute(_DRIVER, (driver_id, RECENT_DELIVERIES))
    row = await cur.fetchone()
    return None if row is None or row["pace"] is None else float(row["pace"])
