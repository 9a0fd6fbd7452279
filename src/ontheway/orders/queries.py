"""Reads: one order, its audit trail, its state at a moment, and the lists of API.md."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from ontheway.errors import DependencyUnavailable
from ontheway.orders.audit import rebuild
from ontheway.orders.ids import created_span, region_of
from ontheway.orders.lifecycle import ACTIVE
from ontheway.orders.models import iso, order_view
from ontheway.orders.pricing import money
from ontheway.orders.store import ORDER_SELECT, ShardAccess, fetch_order

ACTIVE_STATUSES = sorted(s.value for s in ACTIVE)
T = TypeVar("T")

# The seed's 30-day summary, per day (served by orders_customer_created).
SUMMARY_SQL = """
SELECT date_trunc('day', created_at AT TIME ZONE 'UTC')::date AS order_date,
       count(*) AS total_orders,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       sum(total) AS order_value,
       avg(extract(epoch FROM delivered_at - created_at) / 60)
           FILTER (WHERE status = 'delivered') AS avg_delivery_time_mins
FROM orders
WHERE customer_id = %(customer)s AND created_at >= %(since)s
  AND (%(regions)s::text[] IS NULL OR region = ANY(%(regions)s))
GROUP BY 1
"""
RESTAURANT_ACTIVE_SQL = (
    ORDER_SELECT + " WHERE o.restaurant_id = %s AND o.status = ANY(%s) ORDER BY o.created_at"
)
DRIVER_ACTIVE_SQL = (
    ORDER_SELECT + " WHERE o.driver_id = %s AND o.status = ANY(%s) ORDER BY o.created_at"
)


class OrderQueries:
    """Reads of orders, routed by the region that ids carry."""

    def __init__(self, shards: ShardAccess):
        self.shards = shards

    async def get(self, order_id: str) -> dict[str, Any]:
        """One order's row."""
        async with self.shards.connection(region_of(order_id, "ord")) as conn:
            return await fetch_order(conn, order_id)

    async def events(self, order_id: str) -> list[dict[str, Any]]:
        """The audit trail, oldest first."""
        async with self.shards.connection(region_of(order_id, "ord")) as conn:
            cur = await conn.execute(
                "SELECT event_id, event_type, ts, data, actor FROM order_events"
                " WHERE order_id = %s AND order_created_at BETWEEN %s AND %s ORDER BY ts, seq",
                (order_id, *created_span(order_id)),
            )
            return await cur.fetchall()

    async def state_at(self, order_id: str, at: datetime | None) -> dict[str, Any] | None:
        """The order rebuilt from its events alone, as it was at ``at`` (now when None)."""
        return rebuild(await self.events(order_id), at)

    async def restaurant_active(self, restaurant_id: str) -> list[dict[str, Any]]:
        """A restaurant's active orders, oldest first."""
        async with self.shards.connection(region_of(restaurant_id, "rest")) as conn:
            cur = await conn.execute(RESTAURANT_ACTIVE_SQL, (restaurant_id, ACTIVE_STATUSES))
            return [order_view(row) for row in await cur.fetchall()]

    async def driver_active(self, driver_id: str, region: str) -> list[dict[str, Any]]:
        """A driver's active orders in its region, oldest first."""
        async with self.shards.connection(region) as conn:
            cur = await conn.execute(DRIVER_ACTIVE_SQL, (driver_id, ACTIVE_STATUSES))
            return [order_view(row) for row in await cur.fetchall()]

    async def customer_summary(
        self, customer_id: str, days: int, regions: frozenset[str] | None = None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Per day over the last ``days``: counts, average value and delivery time, and the
        regions left out because their shard is down. A customer may have ordered in several
        shards; their days are merged. ``regions`` limits it to those regions' orders (an ops
        caller's regions; None: all)."""
        since = datetime.now(UTC) - timedelta(days=days)
        wanted = None if regions is None else sorted(regions)
        asked = [r.region for r in self.shards.catalog if regions is None or r.region in regions]
        per_shard, down = await self._each_shard(
            asked, lambda shard_regions: self._summary(shard_regions[0], customer_id, since, wanted)
        )
        if down and not per_shard:
            raise down[0][1]  # nothing answered: the summary is unavailable
        unavailable = sorted(region for shard_regions, _ in down for region in shard_regions)
        merged: dict[Any, dict[str, Any]] = {}
        for rows in per_shard:
            for row in rows:
                day = merged.setdefault(
                    row["order_date"],
                    {
                        "order_date": row["order_date"],
                        "total_orders": 0,
                        "delivered": 0,
                        "cancelled": 0,
                        "_value": Decimal(0),
                        "_minutes": 0.0,
                    },
                )
                day["total_orders"] += row["total_orders"]
                day["delivered"] += row["delivered"]
                day["cancelled"] += row["cancelled"]
                day["_value"] += row["order_value"]
                if row["avg_delivery_time_mins"] is not None:
                    day["_minutes"] += float(row["avg_delivery_time_mins"]) * row["delivered"]
        days_view = [
            {
                "order_date": day["order_date"].isoformat(),
                "total_orders": day["total_orders"],
                "delivered": day["delivered"],
                "cancelled": day["cancelled"],
                "avg_order_value": str(money(day["_value"] / day["total_orders"])),
                "avg_delivery_time_mins": (
                    round(day["_minutes"] / day["delivered"], 1) if day["delivered"] else None
                ),
            }
            for day in sorted(merged.values(), key=lambda d: d["order_date"], reverse=True)
        ]
        return days_view, unavailable

    async def _summary(
        self,
        region: str,
        customer_id: str,
        since: datetime,
        regions: list[str] | None,
    ) -> list[dict[str, Any]]:
        async with self.shards.connection(region) as conn:
            cur = await conn.execute(
                SUMMARY_SQL, {"customer": customer_id, "since": since, "regions": regions}
            )
            return await cur.fetchall()

    async def active_in_regions(self, regions: list[str]) -> dict[str, Any]:
        """Active orders of several regions, shard by shard; a shard that is down is reported
        as unavailable for its regions while the others answer."""

        async def one(shard_regions: list[str]) -> list[dict[str, Any]]:
            async with self.shards.connection(shard_regions[0]) as conn:
                cur = await conn.execute(
                    ORDER_SELECT + " WHERE o.region = ANY(%s) AND o.status = ANY(%s)"
                    " ORDER BY o.created_at DESC LIMIT 1000",
                    (shard_regions, ACTIVE_STATUSES),
                )
                return [order_view(row) for row in await cur.fetchall()]

        answers, down = await self._each_shard(regions, one)
        return {
            "orders": [order for orders in answers for order in orders],
            "unavailable": [{"regions": r, "error": error.message} for r, error in down],
        }

    async def _each_shard(
        self, regions: list[str], read: Callable[[list[str]], Awaitable[T]]
    ) -> tuple[list[T], list[tuple[list[str], DependencyUnavailable]]]:
        """``read`` on each shard holding some of ``regions`` (given those of its regions),
        all at once: the answers of the shards that are up, and the regions of each shard
        that is down with its error."""
        by_shard: dict[str, list[str]] = {}
        for region in regions:
            by_shard.setdefault(self.shards.catalog.shard_for(region), []).append(region)
        results = await asyncio.gather(
            *(read(r) for r in by_shard.values()), return_exceptions=True
        )
        answers: list[T] = []
        down: list[tuple[list[str], DependencyUnavailable]] = []
        for shard_regions, result in zip(by_shard.values(), results, strict=True):
            if isinstance(result, DependencyUnavailable):
                down.append((shard_regions, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(result)
        return answers, down


def event_view(row: dict[str, Any]) -> dict[str, Any]:
    """An event as API.md shows it."""
    return {
        "event_id": str(row["event_id"]),
        "event_type": row["event_type"],
        "timestamp": iso(row["ts"]),
        "data": row["data"],
        "actor": row["actor"],
    }
